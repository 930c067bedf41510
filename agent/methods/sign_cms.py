"""``sign.cms``: a detached CAdES baseline signature (B, T, LT, LTA) over data or a hash
the page gives; one confirmation + PIN dialog, as ``sign.hash``.  Given an existing
signature, the new one joins it as a parallel signer or countersigns one of its signers
(that signature is read in a document worker, never here)."""

from __future__ import annotations

import hashlib
from typing import Any

from agent.app.documents import NAME_BY_HASH, document_preview, sign_document
from agent.app.services import Services
from agent.app.signing import PreviewSource, SigningRequest, hash_previews
from agent.formats import available_formats
from agent.formats.job import FormatJob
from agent.methods.common import bound, display_of
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params_cms import SignCmsParams
from agent.protocol.results import SignCmsResult


def _previews(params: SignCmsParams, digest: bytes | None) -> PreviewSource:
    if params.data is not None:
        return document_preview(params.data)  # text, a PDF's pages, or binary
    if digest is not None:
        return hash_previews([digest])  # the page shows no content: a fingerprint
    # A countersignature, or a parallel signature over an attached signature's content:
    # the document the user is shown is the signature itself, by its fingerprint.
    assert params.signature is not None
    return hash_previews([hashlib.sha256(params.signature).digest()])


async def sign_cms(app: Services, ctx: CallContext, params: SignCmsParams) -> SignCmsResult:
    md = NAME_BY_HASH[params.hash_algorithm]
    digest: bytes | None = params.hash
    if params.data is not None:
        digest = hashlib.new(md, params.data).digest()
    args: dict[str, Any] = {"data_digest": digest, "digest_algorithm": md,
                            "level": params.level.value}
    if params.signature is not None:
        # The worker checks the data against the existing signers' message-digests, with
        # their algorithms: it needs the data itself when the page sent it.
        args |= {"signature": params.signature, "data": params.data,
                 "counter_sign": params.counter_sign}

    async def build(job: FormatJob) -> bytes:
        from agent.formats.isolation import build_isolated

        return await build_isolated("cms", job, args)

    request = SigningRequest(method="sign.cms", purpose="sign", handle=params.handle,
                             display=display_of(params.display),
                             digest_algorithm=params.hash_algorithm.value,
                             previews=_previews(params, digest))
    cms = await sign_document(app.core, ctx, app.formats_config, request,
                              page_tsa_url=params.tsa_url,
                              needs_tsa=params.level.value != "B", build=build)
    return SignCmsResult(cms=cms)


def register(dispatcher: Dispatcher, app: Services) -> None:
    if "cms" in available_formats():
        dispatcher.register("sign.cms", SignCmsParams, bound(app, sign_cms))
