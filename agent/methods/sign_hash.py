"""``sign.hash`` and ``sign.hashes``: confirmation + PIN dialog naming the origin, then
one signature per hash (a batch shares one dialog and one PIN)."""

from __future__ import annotations

from agent.app.core import Display
from agent.errors import AgentError
from agent.policy.rules import Permission
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params import SignHashesParams, SignHashParams
from agent.protocol.results import SignHashesResult, SignHashResult


async def _sign(ctx: CallContext, params: SignHashParams | SignHashesParams,
                method: str, digests: list[bytes]) -> tuple[list[bytes], bytes, object]:
    core = ctx.services.core
    entry = None
    try:
        async def work() -> tuple[list[bytes], bytes, object]:
            nonlocal entry
            await core.require(ctx, Permission.SIGN)
            _, entry = await core.entry_for(ctx, params.handle, "sign")
            mechanism = core.mechanism_for(entry, params.scheme, params.hash_algorithm,
                                           params.ecdsa_encoding)
            shown = params.display or None
            display = Display(shown.text, shown.document_name) if shown else Display()
            signatures = await core.sign_digests(ctx, entry, "sign", digests, mechanism,
                                                 display)
            return signatures, entry.der, mechanism.scheme

        result = await core.interaction(ctx, work)
    except AgentError as exc:
        core.record(ctx, method, entry, params.hash_algorithm.value, digests, exc.reason)
        raise
    core.record(ctx, method, entry, params.hash_algorithm.value, digests, "ok")
    return result


async def sign_hash(ctx: CallContext, params: SignHashParams) -> SignHashResult:
    signatures, cert, scheme = await _sign(ctx, params, "sign.hash", [params.hash])
    return SignHashResult(signature=signatures[0], scheme=scheme,
                          hash_algorithm=params.hash_algorithm, certificate=cert)


async def sign_hashes(ctx: CallContext, params: SignHashesParams) -> SignHashesResult:
    signatures, cert, scheme = await _sign(ctx, params, "sign.hashes", list(params.hashes))
    return SignHashesResult(signatures=signatures, scheme=scheme,
                            hash_algorithm=params.hash_algorithm, certificate=cert)


def register(dispatcher: Dispatcher) -> None:
    dispatcher.register("sign.hash", SignHashParams, sign_hash)
    dispatcher.register("sign.hashes", SignHashesParams, sign_hashes)
