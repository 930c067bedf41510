"""Extend the PAdES signatures of a signed PDF without their keys (ETSI EN 319 142-1),
each step an incremental update, so every earlier signature's byte range stays whole:

* B-T: a document time-stamp when some signature has no time-stamp yet (EN 319 142-1
  §5.3 lets a document time-stamp stand for the signature time-stamp); a document whose
  signatures are all time-stamped is returned as it is;
* B-LT: B-T, then a DSS revision with the certificates, OCSP responses and CRLs of every
  signer and of every TSA that time-stamped the document, asked for now;
* B-LTA: B-LT, then a document time-stamp over all of it and a DSS revision for the TSA
  that signed that one.  Asked of a B-LTA document this renews it: the earlier archive
  time-stamps' TSAs get their validation data (the B-LT step) before the new one.

pyHanko does each revision (``DocumentSecurityStore``, ``PdfTimeStamper``), as
``agent.formats.pades`` does after signing; what the validation data are is gathered by
``agent.formats.revocation`` with the job's anchors and network (hard-fail: a B-LT
without its data would be a lie).  Every signature's integrity is checked first: the
agent does not time-stamp a signature that no longer matches its document.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.signers.pdf_signer import PdfTimeStamper
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.generic_cms import validate_sig_integrity

from agent.errors import AgentError, Unsupported
from agent.formats.cades import validation_data_of
from agent.formats.document_caps import StructureCaps, check_pdf_bytes, check_pdf_trees
from agent.formats.job import KeylessJob
from agent.formats.revocation import ValidationData, as_crypto
from agent.formats.timestamps import GuardedTimeStamper

log = logging.getLogger(__name__)

# What pyHanko raises besides its own PdfError when a document is malformed (as in
# agent/formats/pades.py).  MemoryError is not here: it is TOO_LARGE.
_MALFORMED = (PdfError, ValueError, KeyError, TypeError, AssertionError, IndexError,
              AttributeError, ArithmeticError, RecursionError)
_DIGEST_STRENGTH = ("sha256", "sha384", "sha512")


async def extend_pades_here(job: KeylessJob, pdf: bytes, level: str, *,
                            caps: StructureCaps | None = None) -> bytes:
    """The PDF with its signatures at ``level`` ("B-T", "B-LT", "B-LTA"); a document
    pyHanko cannot process is UNSUPPORTED, whatever exception it chose to say so with."""
    if level not in ("B-T", "B-LT", "B-LTA"):
        raise Unsupported(f"level {level} is not a PAdES level this agent extends to")
    try:
        return await _extend(job, pdf, level, caps or StructureCaps())
    except AgentError:
        raise
    except _MALFORMED as exc:
        log.warning("PDF refused for extension: %s in the format library",
                    type(exc).__name__)
        raise Unsupported("the document could not be processed as a signed PDF") from None


@dataclass
class SignedState:
    """What the document holds: its signatures' signers and every time-stamp token."""

    signers: list[asn1_x509.Certificate] = field(default_factory=list)
    certificates: list[asn1_x509.Certificate] = field(default_factory=list)
    tokens: list[cms.ContentInfo] = field(default_factory=list)
    untimestamped: int = 0  # signatures no time-stamp covers
    md: str = "sha256"      # the strongest digest the signatures use, for new time-stamps


def read_state(pdf: bytes, caps: StructureCaps) -> SignedState:
    """The document's signatures, each checked intact; UNSUPPORTED when there is none
    or one no longer matches its document."""
    check_pdf_bytes(pdf, caps)  # before pyHanko allocates for what the file claims
    reader = PdfFileReader(BytesIO(pdf), strict=False)
    if reader.encrypted:
        raise Unsupported("encrypted PDFs cannot be extended")
    check_pdf_trees(reader.root, caps)  # before pyHanko walks them without a bound
    state = SignedState()
    signatures, doc_timestamps = [], []
    for embedded in reader.embedded_signatures:
        if embedded.sig_object_type == "/DocTimeStamp":
            doc_timestamps.append(embedded)
        else:
            signatures.append(embedded)
    if not signatures:
        raise Unsupported("the document has no signature to extend")
    last_doc_timestamp = max((t.signed_revision for t in doc_timestamps), default=-1)
    for embedded in signatures:
        intact, valid = validate_sig_integrity(embedded.signer_info, embedded.signer_cert,
                                               "data", embedded.compute_digest())
        if not (intact and valid):
            raise Unsupported(f"the signature {embedded.field_name!r} does not match the "
                              "document: it cannot be extended")
        state.signers.append(embedded.signer_cert)
        state.certificates += [c.chosen for c in embedded.signed_data["certificates"] or []
                               if c.name == "certificate"]
        token = signature_timestamp(embedded.signer_info)
        if token is not None:
            state.tokens.append(token)
        elif embedded.signed_revision > last_doc_timestamp:
            state.untimestamped += 1
        md = str(embedded.md_algorithm).lower()
        if md in _DIGEST_STRENGTH and \
                _DIGEST_STRENGTH.index(md) > _DIGEST_STRENGTH.index(state.md):
            state.md = md
    state.tokens += [cms.ContentInfo({"content_type": "signed_data",
                                      "content": t.signed_data}) for t in doc_timestamps]
    return state


def signature_timestamp(signer_info: cms.SignerInfo) -> cms.ContentInfo | None:
    for attribute in signer_info["unsigned_attrs"] or []:
        if attribute["type"].native == "signature_time_stamp_token":
            token: cms.ContentInfo = attribute["values"][0]
            return token
    return None


async def _extend(job: KeylessJob, pdf: bytes, level: str, caps: StructureCaps) -> bytes:
    state = read_state(pdf, caps)
    needs_stamp = state.untimestamped > 0 or level == "B-LTA"
    if level == "B-T" and not needs_stamp:
        return pdf  # every signature is time-stamped already: nothing to add
    if needs_stamp and job.tsa_url is None:
        raise Unsupported("this level needs a time-stamping service (tsaUrl)")
    async with job.network.session() as session:
        stamper = GuardedTimeStamper(job.tsa_url, job.network, session) \
            if job.tsa_url is not None else None
        if state.untimestamped:
            assert stamper is not None
            pdf, token = await add_document_timestamp(stamper, pdf, state.md)
            state.tokens.append(token)
        if level == "B-T":
            return pdf
        # After the time-stamps (D2 of issue 14): answers newer than what they cover.
        data = await validation_data(job, session, state.signers, state.tokens,
                                     state.certificates)
        pdf = add_dss(pdf, data)
        if level == "B-LT":
            return pdf
        assert stamper is not None
        pdf, token = await add_document_timestamp(stamper, pdf, state.md)
        return add_dss(pdf, await validation_data(job, session, [], [token], []))


async def add_document_timestamp(stamper: GuardedTimeStamper, pdf: bytes, md: str
                                 ) -> tuple[bytes, cms.ContentInfo]:
    """A document time-stamp revision, and its token."""
    writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
    out = BytesIO()
    await PdfTimeStamper(stamper).async_timestamp_pdf(writer, md, output=out)
    stamped = out.getvalue()
    reader = PdfFileReader(BytesIO(stamped), strict=False)
    newest = reader.embedded_signatures[-1]
    token = cms.ContentInfo({"content_type": "signed_data", "content": newest.signed_data})
    return stamped, token


def add_dss(pdf: bytes, data: ValidationData) -> bytes:
    """A DSS revision with ``data`` (merged with a DSS the document has)."""
    writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
    DocumentSecurityStore.supply_dss_in_writer(writer, None, certs=data.certificates,
                                               ocsps=data.ocsps, crls=data.crls)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


async def validation_data(job: KeylessJob, session: Any,
                          signers: list[asn1_x509.Certificate],
                          tokens: list[cms.ContentInfo],
                          certificates: list[asn1_x509.Certificate]) -> ValidationData:
    """Every signer's and every token's TSA's validation data, asked for anew (the CAdES
    builder's gathering, given this job's anchors and network instead of a key's)."""
    return await validation_data_of(job.anchors, job.network, session, _unique(signers),
                                    as_crypto(_unique(certificates)), tokens)


def _unique(certs: list[asn1_x509.Certificate]) -> list[asn1_x509.Certificate]:
    seen: set[bytes] = set()
    out = []
    for cert in certs:
        der = cert.dump()
        if der not in seen:
            seen.add(der)
            out.append(cert)
    return out
