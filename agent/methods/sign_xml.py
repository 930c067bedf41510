"""``sign.xml``: a XAdES baseline signature (B-B, B-T), enveloped in the page's document
or detached beside it; one confirmation + PIN dialog."""

from __future__ import annotations

from agent.formats import available_formats
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params import SignXmlParams
from agent.protocol.results import SignXmlResult


async def sign_xml(ctx: CallContext, params: SignXmlParams) -> SignXmlResult:
    from agent.formats.request import FormatJob, run_format
    from agent.formats.xades import build_xades

    async def build(job: FormatJob) -> bytes:
        return await build_xades(job, params.xml, params.level.value, params.mode.value)

    xml = await run_format(ctx, params, "sign.xml", "SHA-256",
                           params.level.value != "B-B", build)
    return SignXmlResult(xml=xml)


def register(dispatcher: Dispatcher) -> None:
    if "xml" in available_formats():
        dispatcher.register("sign.xml", SignXmlParams, sign_xml)
