"""``tokens.subscribe``: the tokens now, then ``tokens.changed`` whenever they change."""

from __future__ import annotations

from agent.policy.rules import Permission
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params import NoParams
from agent.protocol.results import TokenList


async def tokens_subscribe(ctx: CallContext, params: NoParams) -> TokenList:
    core = ctx.services.core
    await core.interaction(ctx, lambda: core.require(ctx, Permission.TOKENS))
    current = await core.subscribe(ctx)
    ctx.on_close(lambda: core.watchers.discard(ctx))
    return current


def register(dispatcher: Dispatcher) -> None:
    dispatcher.register("tokens.subscribe", NoParams, tokens_subscribe)
