"""``sign.cms``: a detached CAdES baseline signature (B-B, B-T, B-LT) over data or a hash
the page gives; one confirmation + PIN dialog, as ``sign.hash``."""

from __future__ import annotations

import hashlib

from agent.formats import available_formats
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params import SignCmsParams
from agent.protocol.results import SignCmsResult


async def sign_cms(ctx: CallContext, params: SignCmsParams) -> SignCmsResult:
    from agent.formats.cades import build_cades
    from agent.formats.request import FormatJob, run_format
    from agent.formats.signer_adapter import NAME_BY_HASH

    hash_alg = params.hash_algorithm
    if params.hash is not None:
        digest = params.hash
    else:
        assert params.data is not None
        digest = hashlib.new(NAME_BY_HASH[hash_alg], params.data).digest()

    async def build(job: FormatJob) -> bytes:
        return await build_cades(job, digest, hash_alg, params.level.value)

    cms = await run_format(ctx, params, "sign.cms", hash_alg.value,
                           params.level.value != "B", build)
    return SignCmsResult(cms=cms)


def register(dispatcher: Dispatcher) -> None:
    if "cms" in available_formats():
        dispatcher.register("sign.cms", SignCmsParams, sign_cms)
