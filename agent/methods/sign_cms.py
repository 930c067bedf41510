"""``sign.cms``: a detached CAdES baseline signature (B, T, LT) over data or a hash the
page gives; one confirmation + PIN dialog, as ``sign.hash``."""

from __future__ import annotations

import hashlib

from agent.app.documents import NAME_BY_HASH, document_preview, sign_document
from agent.app.services import Services
from agent.app.signing import PreviewSource, SigningRequest, hash_previews
from agent.formats import available_formats
from agent.formats.builds import build_cades
from agent.formats.job import FormatJob
from agent.methods.common import bound, display_of
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params_cms import SignCmsParams
from agent.protocol.results import SignCmsResult


async def sign_cms(app: Services, ctx: CallContext, params: SignCmsParams) -> SignCmsResult:
    md = NAME_BY_HASH[params.hash_algorithm]
    previews: PreviewSource
    if params.hash is not None:
        digest = params.hash
        previews = hash_previews([digest])  # the page shows no content: a fingerprint
    else:
        assert params.data is not None  # the params model requires one of the two
        digest = hashlib.new(md, params.data).digest()
        previews = document_preview(params.data)  # text, a PDF's pages, or binary

    async def build(job: FormatJob) -> bytes:
        return await build_cades(job, digest, md, params.level.value)

    request = SigningRequest(method="sign.cms", purpose="sign", handle=params.handle,
                             display=display_of(params.display),
                             digest_algorithm=params.hash_algorithm.value,
                             previews=previews)
    cms = await sign_document(app.core, ctx, app.formats_config, request,
                              page_tsa_url=params.tsa_url,
                              needs_tsa=params.level.value != "B", build=build)
    return SignCmsResult(cms=cms)


def register(dispatcher: Dispatcher, app: Services) -> None:
    if "cms" in available_formats():
        dispatcher.register("sign.cms", SignCmsParams, bound(app, sign_cms))
