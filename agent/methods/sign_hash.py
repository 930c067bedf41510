"""``sign.hash`` and ``sign.hashes``: confirmation + PIN dialog naming the origin, then
one signature per hash (a batch shares one dialog and one PIN)."""

from __future__ import annotations

from agent.app.services import Services
from agent.app.signing import (
    KeyUse,
    SigningRequest,
    hash_previews,
    mechanism_for,
    sign_with_key,
)
from agent.methods.common import display_of
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.enums import Scheme
from agent.protocol.params import SignHashesParams, SignHashParams
from agent.protocol.results import SignHashesResult, SignHashResult


async def _sign(app: Services, ctx: CallContext, params: SignHashParams | SignHashesParams,
                method: str, digests: list[bytes]) -> tuple[list[bytes], bytes, Scheme]:
    async def produce(use: KeyUse) -> tuple[list[bytes], bytes, Scheme]:
        mechanism = mechanism_for(use.entry, params.scheme, params.hash_algorithm,
                                  params.ecdsa_encoding)
        return await use.sign(digests, mechanism), use.entry.der, mechanism.scheme

    request = SigningRequest(method=method, purpose="sign", handle=params.handle,
                             display=display_of(params.display),
                             digest_algorithm=params.hash_algorithm.value,
                             previews=hash_previews(digests))
    return await sign_with_key(app.core, ctx, request, produce)


def register(dispatcher: Dispatcher, app: Services) -> None:
    async def sign_hash(ctx: CallContext, params: SignHashParams) -> SignHashResult:
        signatures, cert, scheme = await _sign(app, ctx, params, "sign.hash", [params.hash])
        return SignHashResult(signature=signatures[0], scheme=scheme,
                              hash_algorithm=params.hash_algorithm, certificate=cert)

    async def sign_hashes(ctx: CallContext, params: SignHashesParams) -> SignHashesResult:
        signatures, cert, scheme = await _sign(app, ctx, params, "sign.hashes",
                                               list(params.hashes))
        # Our own values, already of the model's types: validating a thousand signatures
        # again cost 0.5 ms of the batch (measured), so the model is built as it is.
        return SignHashesResult.model_construct(signatures=signatures, scheme=scheme,
                                                hash_algorithm=params.hash_algorithm,
                                                certificate=cert)

    dispatcher.register("sign.hash", SignHashParams, sign_hash)
    dispatcher.register("sign.hashes", SignHashesParams, sign_hashes)
