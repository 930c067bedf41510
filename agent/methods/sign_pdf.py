"""``sign.pdf``: a PAdES baseline signature (B-B, B-T, B-LT, B-LTA) as an incremental
update of the page's PDF, invisible or with a visible stamp; one confirmation + PIN
dialog naming the document."""

from __future__ import annotations

from agent.formats import available_formats
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params import SignPdfParams
from agent.protocol.results import SignPdfResult


async def sign_pdf(ctx: CallContext, params: SignPdfParams) -> SignPdfResult:
    from agent.formats.pades import DEFAULT_MD, build_pades
    from agent.formats.request import FormatJob, run_format
    from agent.formats.signer_adapter import hash_for_name

    async def build(job: FormatJob) -> bytes:
        return await build_pades(job, params.pdf, params.level.value, reason=params.reason,
                                 location=params.location, field_name=params.field_name,
                                 stamp=params.stamp)

    pdf = await run_format(ctx, params, "sign.pdf", hash_for_name(DEFAULT_MD).value,
                           params.level.value != "B-B", build)
    return SignPdfResult(pdf=pdf)


def register(dispatcher: Dispatcher) -> None:
    if "pdf" in available_formats():
        dispatcher.register("sign.pdf", SignPdfParams, sign_pdf)
