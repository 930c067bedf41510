"""``sign.xml``: a XAdES baseline signature (B-B, B-T, B-LT, B-LTA), enveloped in the
page's document (where ``placement`` says, covering ``references``) or detached beside it;
one confirmation + PIN dialog."""

from __future__ import annotations

from agent.app.documents import sign_document, xml_preview
from agent.app.services import Services
from agent.app.signing import SigningRequest
from agent.formats import available_formats
from agent.formats.digests import digest_for
from agent.formats.job import FormatJob
from agent.methods.common import bound, display_of
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params_xml import SignXmlParams
from agent.protocol.results import SignXmlResult


async def sign_xml(app: Services, ctx: CallContext, params: SignXmlParams) -> SignXmlResult:
    from agent.formats.xades import build_xades  # signxml and lxml: only when asked

    async def build(job: FormatJob) -> bytes:
        placement = params.placement
        return await build_xades(
            job, params.xml, params.level.value, params.mode.value,
            digest_for(job.certificate, _choice(params)),
            placement=None if placement is None else {"parent": placement.parent,
                                                      "namespaces": dict(placement.namespaces)},
            references=None if params.references is None else list(params.references))

    request = SigningRequest(method="sign.xml", purpose="sign", handle=params.handle,
                             display=display_of(params.display),
                             digest_algorithm=_choice(params) or "SHA-256",
                             previews=xml_preview(params.xml,
                                                  enveloped=params.mode.value == "enveloped"))
    xml = await sign_document(app.core, ctx, app.formats_config, request,
                              page_tsa_url=params.tsa_url,
                              needs_tsa=params.level.value != "B-B", build=build)
    return SignXmlResult(xml=xml)


def _choice(params: SignXmlParams) -> str | None:
    return params.digest_algorithm.value if params.digest_algorithm is not None else None


def register(dispatcher: Dispatcher, app: Services) -> None:
    if "xml" in available_formats():
        dispatcher.register("sign.xml", SignXmlParams, bound(app, sign_xml))
