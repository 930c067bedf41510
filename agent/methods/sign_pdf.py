"""``sign.pdf``: a PAdES baseline signature (B-B, B-T, B-LT, B-LTA) as an incremental
update of the page's PDF, invisible or with a visible stamp; one confirmation + PIN
dialog naming the document."""

from __future__ import annotations

from agent.app.dialogs import PreviewKind, SignedField
from agent.app.documents import document_preview, sign_document
from agent.app.services import Services
from agent.app.signing import SignedFields, SigningRequest
from agent.formats import available_formats
from agent.formats.builds import Stamp, build_pades
from agent.formats.digests import digest_for
from agent.formats.job import FormatJob
from agent.methods.common import bound, display_of
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params import SignPdfParams
from agent.protocol.results import SignPdfResult


async def sign_pdf(app: Services, ctx: CallContext, params: SignPdfParams) -> SignPdfResult:
    choice = params.digest_algorithm.value if params.digest_algorithm is not None else None
    stamp = (Stamp(page=params.stamp.page, box=params.stamp.box, text=params.stamp.text)
             if params.stamp is not None else None)

    async def build(job: FormatJob) -> bytes:
        return await build_pades(job, params.pdf, params.level.value, reason=params.reason,
                                 location=params.location, field_name=params.field_name,
                                 stamp=stamp,
                                 digest_algorithm=digest_for(job.certificate, choice))

    request = SigningRequest(method="sign.pdf", purpose="sign", handle=params.handle,
                             display=display_of(params.display),
                             digest_algorithm=choice or "SHA-256",
                             signed_fields=signed_fields(params),
                             # The PDF as the page sent it: what the signature's byte
                             # range covers.  A visible stamp is drawn by the signing
                             # itself, so the dialog shows the document before it (the
                             # stamp's text is among the signed fields).
                             previews=document_preview(params.pdf, PreviewKind.PDF))
    pdf = await sign_document(app.core, ctx, app.formats_config, request,
                              page_tsa_url=params.tsa_url,
                              needs_tsa=params.level.value != "B-B", build=build)
    return SignPdfResult(pdf=pdf)


def signed_fields(params: SignPdfParams) -> SignedFields:
    """Every page string the signature carries, for the confirmation dialog."""
    given = ((SignedField.REASON, params.reason), (SignedField.LOCATION, params.location),
             (SignedField.STAMP_TEXT, params.stamp.text if params.stamp else None),
             (SignedField.FIELD_NAME, params.field_name))
    return tuple((name, value) for name, value in given if value is not None)


def register(dispatcher: Dispatcher, app: Services) -> None:
    if "pdf" in available_formats():
        dispatcher.register("sign.pdf", SignPdfParams, bound(app, sign_pdf))
