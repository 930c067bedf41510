"""PAdES verification with pyHanko: every signature field of the document (document
time-stamps are the evidence, not signatures of a person), checked by
``ades_with_time_validation`` when the signature carries a time-stamp (with the DSS as
local knowledge), by ``ades_basic_validation`` otherwise.  A B-LTA signature that does not
pass now for a reason time can cure (its signature time-stamp's TSA certificate expired)
is judged at the POE its document time-stamps give (agent/verify/past.py).  A change
after signing that the signature does not allow fails it."""

from __future__ import annotations

from io import BytesIO
from typing import Any

from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.ades.report import AdESFailure
from pyhanko.sign.validation import EmbeddedPdfSignature, async_validate_pdf_timestamp
from pyhanko.sign.validation.ades import (
    _adobe_revinfo_archival_to_local_knowledge,
    _dss_to_local_knowledge,
    ades_basic_validation,
    ades_with_time_validation,
)
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.generic_cms import extract_tst_data_iter, message_imprint_checker
from pyhanko.sign.validation.policy_decl import LocalKnowledge
from pyhanko.sign.validation.status import PdfSignatureStatus, SignatureCoverageLevel

from agent.errors import AgentError, Unsupported
from agent.formats.document_caps import StructureCaps, check_pdf_bytes, check_pdf_trees
from agent.formats.job import KeylessJob
from agent.verify.caps import max_verified_signatures
from agent.verify.common import (
    SignatureFacts,
    Verdict,
    certificate_facts,
    chain_facts,
    embedded_revocation,
    merged,
    revocation_facts,
    validation_spec,
    verdict_of,
)
from agent.verify.past import Material, context_at, judge_at_archive, needs_past_validation

# What pyHanko raises besides PdfError on a malformed file (as agent/formats/pades.py).
_MALFORMED = (PdfError, ValueError, KeyError, TypeError, AssertionError, IndexError,
              AttributeError, ArithmeticError, RecursionError)


def _reader(pdf: bytes, caps: StructureCaps) -> PdfFileReader:
    check_pdf_bytes(pdf, caps)
    try:
        reader = PdfFileReader(BytesIO(pdf), strict=False)
        check_pdf_trees(reader.root, caps)
    except AgentError:
        raise
    except _MALFORMED as exc:
        raise Unsupported("the file could not be read as a PDF") from exc
    if reader.encrypted:
        raise Unsupported("encrypted PDFs are not verified")
    return reader


def pades_level(sig: EmbeddedPdfSignature, reader: PdfFileReader, has_dss: bool) -> str:
    """EN 319 142-1 §6: B-T a signature time-stamp, B-LT validation data in a DSS (added
    after the signature), B-LTA a document time-stamp after that."""
    try:
        next(extract_tst_data_iter(sig.signer_info, signed=False))
    except StopIteration:
        return "B-B"
    later_stamps = [t for t in reader.embedded_timestamp_signatures
                    if t.signed_revision > sig.signed_revision]
    if has_dss and later_stamps:
        return "B-LTA"
    return "B-LT" if has_dss else "B-T"


async def verify_pdf(job: KeylessJob, pdf: bytes, caps: StructureCaps
                     ) -> list[SignatureFacts]:
    reader = _reader(pdf, caps)
    try:
        signatures = list(reader.embedded_regular_signatures)
        has_dss = DocumentSecurityStore.read_dss(reader) is not None
    except AgentError:
        raise
    except Exception:  # read_dss raises NoDSSFoundError, a plain error type
        has_dss = False
    if not signatures:
        raise Unsupported("the PDF carries no signature")
    if len(signatures) > max_verified_signatures(caps):
        raise Unsupported(f"a PDF with {len(signatures)} signatures is not verified")
    reports = []
    async with job.network.session() as session:
        for sig in signatures:
            try:
                reports.append(await _verify_one(job, session, reader, sig, has_dss))
            except AgentError:
                raise
            except _MALFORMED as exc:
                raise Unsupported("a signature of the PDF could not be read") from exc
    return reports


async def _verify_one(job: KeylessJob, session: Any, reader: PdfFileReader,
                      sig: EmbeddedPdfSignature, has_dss: bool) -> SignatureFacts:
    level = pades_level(sig, reader, has_dss)
    # The DSS and Adobe's revocation attribute read the way pyHanko's LTA process reads
    # them (its helpers; the with-time process does not read them itself).
    local = merged(embedded_revocation(sig.signed_data), _dss_to_local_knowledge(reader),
                   _adobe_revinfo_archival_to_local_knowledge(sig))
    spec = validation_spec(job.anchors, job.network, session, local)
    sig.compute_integrity_info()
    claimed = sig.self_reported_timestamp
    result: Any
    digest, integrity = sig.compute_digest(), sig.summarise_integrity_info()
    if level == "B-B":
        result = await ades_basic_validation(
            sig.signed_data, spec, raw_digest=digest, extra_status_kwargs=integrity,
            status_cls=PdfSignatureStatus)
    else:
        # Not pyHanko's ``ades_lta_validation``: its past validation answers NO_POE on a
        # fresh B-LTA (it wants a POE for every CA certificate's status) and turns a
        # revoked signer's TOTAL-FAILED into INDETERMINATE; see agent/verify/past.py.
        result = await ades_with_time_validation(
            sig.signed_data, spec, raw_digest=digest, extra_status_kwargs=integrity,
            status_cls=PdfSignatureStatus)
    status = result.api_status
    verdict = verdict_of(result.ades_subindic, status, result.failure_msg, claimed)
    if isinstance(status, PdfSignatureStatus) and status.docmdp_ok is False:
        verdict = Verdict.of(AdESFailure.HASH_FAILURE,
                             "the document was changed after signing in a way the "
                             "signature does not allow")
    timestamp = getattr(getattr(status, "timestamp_validity", None), "timestamp", None)
    coverage = getattr(status, "coverage", None)
    signer = getattr(status, "signing_cert", None) or _signer_cert(sig)
    facts = SignatureFacts(
        format="pdf", level=f"PAdES-{level}", verdict=verdict,
        signer=certificate_facts(signer) if signer is not None else None,
        claimed_signing_time=claimed, timestamp_time=timestamp,
        best_signature_time=getattr(result, "best_signature_time", None),
        chain=chain_facts(getattr(status, "validation_path", None)),
        revocation=revocation_facts(status, local, verdict), field_name=sig.field_name,
        coverage=coverage.name if coverage is not None else None)
    intact = bool(getattr(status, "intact", False) and getattr(status, "valid", False))
    if level == "B-LTA" and needs_past_validation(verdict) and intact and signer is not None:
        await _long_term(job, session, reader, sig, facts, local, signer)
    return facts


def _material(sig: EmbeddedPdfSignature, local: LocalKnowledge) -> Material:
    """The signature's certificates and the DSS's (and Adobe attribute's) data."""
    certs = [c.chosen for c in sig.signed_data["certificates"] or ()
             if c.name == "certificate"]
    ocsps = {o.ocsp_response_data.dump(): o.ocsp_response_data for o in local.known_ocsps}
    crls = {c.crl_data.dump(): c.crl_data for c in local.known_crls}
    return Material(certs=[*certs, *local.known_certs], crls=list(crls.values()),
                    ocsps=list(ocsps.values()))


async def _archive_times(job: KeylessJob, session: Any, reader: PdfFileReader,
                         sig: EmbeddedPdfSignature, material: Material) -> list[Any]:
    """The times of the document time-stamps after ``sig`` that hold now (intact, valid,
    trusted, over their whole revision: which holds the signature, its time-stamp and
    the DSS), validated by pyHanko.  One that does not hold proves nothing."""
    times = []
    for stamp in reader.embedded_timestamp_signatures:
        if stamp.signed_revision <= sig.signed_revision:
            continue
        try:
            status = await async_validate_pdf_timestamp(
                stamp, validation_context=context_at(job, session, None, material))
        except (SignatureValidationError, *_MALFORMED):
            continue
        whole = status.coverage is not None and \
            status.coverage >= SignatureCoverageLevel.ENTIRE_REVISION
        if status.intact and status.valid and status.trusted and whole:
            times.append(status.timestamp)
    return times


async def _long_term(job: KeylessJob, session: Any, reader: PdfFileReader,
                     sig: EmbeddedPdfSignature, facts: SignatureFacts,
                     local: LocalKnowledge, signer: Any) -> None:
    """EN 319 102-1 §5.6.3 for PDF, the document time-stamps as the evidence record: the
    signature judged at the POE the oldest that holds now gives (agent/verify/past.py)."""
    material = _material(sig, local)
    times = await _archive_times(job, session, reader, sig, material)
    if not times:
        return
    stamp = next(extract_tst_data_iter(sig.signer_info, signed=False), None)
    past = await judge_at_archive(job, session, min(times), stamp,
                                  message_imprint_checker(sig.signer_info), signer,
                                  facts.claimed_signing_time, material)
    facts.verdict, facts.best_signature_time = past.verdict, past.moment
    facts.timestamp_time = past.timestamp or facts.timestamp_time
    facts.chain = chain_facts(past.path)
    facts.revocation = {**facts.revocation, **past.revocation}


def _signer_cert(sig: EmbeddedPdfSignature) -> Any:
    try:
        return sig.signer_cert
    except Exception:  # the verdict says why the signer is unknown
        return None
