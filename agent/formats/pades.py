"""PAdES baseline signatures (ETSI EN 319 142-1) with pyHanko, as an incremental update.

* B-B: ETSI.CAdES.detached signature, signing-certificate-v2, no signing-time attribute;
* B-T: plus a signature time-stamp;
* B-LT: plus a DSS with the certificates, OCSP responses and CRLs of the signer's and
  the TSA's paths;
* B-LTA: plus a document time-stamp over all of it.
"""

from __future__ import annotations

import logging
from io import BytesIO

from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.sign import fields
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.pdf_signer import PdfSignatureMetadata, PdfSigner

from agent.errors import AgentError, NetworkError, Unsupported
from agent.formats.request import FormatJob
from agent.formats.revocation import validation_context
from agent.formats.signer_adapter import CoreSigner
from agent.formats.timestamps import GuardedTimeStamper

log = logging.getLogger(__name__)

LEVELS = ("B-B", "B-T", "B-LT", "B-LTA")
DEFAULT_MD = "sha256"


async def build_pades(job: FormatJob, pdf: bytes, level: str, *, reason: str | None,
                      location: str | None, field_name: str | None) -> bytes:
    try:
        writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
    except (PdfError, ValueError, KeyError) as exc:
        raise Unsupported("the document could not be read as a PDF") from exc
    if writer.prev.encrypted:
        raise Unsupported("encrypted PDFs cannot be signed")
    if field_name is None:
        field_name = _free_field_name(writer)
    long_term = level in ("B-LT", "B-LTA")
    signer = CoreSigner(job.access, job.chain)
    out = BytesIO()
    async with job.network.session() as session:
        context = (validation_context(job.anchors, job.chain, session, job.network,
                                      hard_fail=True) if long_term else None)
        meta = PdfSignatureMetadata(
            field_name=field_name, reason=reason, location=location,
            md_algorithm=DEFAULT_MD, subfilter=fields.SigSeedSubFilter.PADES,
            embed_validation_info=long_term, validation_context=context,
            use_pades_lta=level == "B-LTA")
        stamper = None
        if level != "B-B":
            assert job.tsa_url is not None
            stamper = GuardedTimeStamper(job.tsa_url, job.network, session)
            await stamper.preflight(DEFAULT_MD)
        pdf_signer = PdfSigner(meta, signer=signer, timestamper=stamper)
        try:
            await pdf_signer.async_sign_pdf(writer, output=out)
        except AgentError:
            raise
        except SigningError as exc:
            # pyHanko reports missing revocation data for B-LT as a signing error.
            if long_term:
                log.warning("B-LT validation data unavailable: %s", exc.__class__.__name__)
                raise NetworkError("validation data (OCSP/CRL) could not be gathered",
                                   service="REVOCATION") from None
            raise
    return out.getvalue()


def _free_field_name(writer: IncrementalPdfFileWriter) -> str:
    """``Signature<n>``, the first one the document does not use yet."""
    taken = {name for name, _, _ in fields.enumerate_sig_fields(writer.prev)}
    number = 1
    while f"Signature{number}" in taken:
        number += 1
    return f"Signature{number}"
