"""PAdES verification with pyHanko: every signature field of the document (document
time-stamps are the evidence, not signatures of a person), checked by
``ades_lta_validation`` when the signature or the document carries a time-stamp (it uses
the DSS and the document time-stamps as proof of existence), by ``ades_basic_validation``
otherwise.  A change after signing that the signature does not allow fails it."""

from __future__ import annotations

from io import BytesIO
from typing import Any

from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.ades.report import AdESFailure, AdESPassed
from pyhanko.sign.validation import EmbeddedPdfSignature
from pyhanko.sign.validation.ades import (
    _adobe_revinfo_archival_to_local_knowledge,
    _dss_to_local_knowledge,
    ades_basic_validation,
    ades_lta_validation,
    ades_with_time_validation,
)
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.generic_cms import extract_tst_data_iter
from pyhanko.sign.validation.policy_decl import PdfSignatureValidationSpec
from pyhanko.sign.validation.status import PdfSignatureStatus

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
        result = await ades_with_time_validation(
            sig.signed_data, spec, raw_digest=digest, extra_status_kwargs=integrity,
            status_cls=PdfSignatureStatus)
        if level == "B-LTA" and result.ades_subindic is not AdESPassed.OK:
            # EN 319 102-1 §5.6.3.4: the past validation over the evidence record (the
            # document time-stamps) is for a signature that does not pass at the current
            # time.  pyHanko's LTA process runs it for a passing one too and then asks
            # for proof of existence of every CA certificate, which fails signatures
            # that are fine now; so it is asked only when it can change the answer.
            result = await ades_lta_validation(sig, PdfSignatureValidationSpec(spec))
    status = result.api_status
    verdict = verdict_of(result.ades_subindic, status, result.failure_msg, claimed)
    if isinstance(status, PdfSignatureStatus) and status.docmdp_ok is False:
        verdict = Verdict.of(AdESFailure.HASH_FAILURE,
                             "the document was changed after signing in a way the "
                             "signature does not allow")
    timestamp = getattr(getattr(status, "timestamp_validity", None), "timestamp", None)
    coverage = getattr(status, "coverage", None)
    signer = getattr(status, "signing_cert", None) or _signer_cert(sig)
    return SignatureFacts(
        format="pdf", level=f"PAdES-{level}", verdict=verdict,
        signer=certificate_facts(signer) if signer is not None else None,
        claimed_signing_time=claimed, timestamp_time=timestamp,
        best_signature_time=getattr(result, "best_signature_time", None),
        chain=chain_facts(getattr(status, "validation_path", None)),
        revocation=revocation_facts(status, local, verdict), field_name=sig.field_name,
        coverage=coverage.name if coverage is not None else None)


def _signer_cert(sig: EmbeddedPdfSignature) -> Any:
    try:
        return sig.signer_cert
    except Exception:  # the verdict says why the signer is unknown
        return None
