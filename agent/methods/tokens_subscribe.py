"""``tokens.subscribe``: the tokens now, then ``tokens.changed`` whenever they change."""

from __future__ import annotations

from agent.app.services import Services
from agent.methods.common import bound
from agent.policy.rules import Permission
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params import NoParams
from agent.protocol.results import TokenList


async def tokens_subscribe(app: Services, ctx: CallContext, params: NoParams) -> TokenList:
    core = app.core
    await core.interaction(ctx, lambda: core.require(ctx, Permission.TOKENS))
    return await core.subscribe(ctx)


def register(dispatcher: Dispatcher, app: Services) -> None:
    dispatcher.register("tokens.subscribe", NoParams, bound(app, tokens_subscribe))
