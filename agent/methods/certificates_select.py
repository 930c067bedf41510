"""``certificates.select``: the native picker, naming the origin, returns one handle."""

from __future__ import annotations

from agent.methods.common import certificate_info, to_filter
from agent.policy.rules import Permission
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params import CertificatesSelectParams
from agent.protocol.results import CertificateInfo


async def certificates_select(ctx: CallContext,
                              params: CertificatesSelectParams) -> CertificateInfo:
    core = ctx.services.core

    async def pick() -> tuple[str, object]:
        await core.require(ctx, Permission.SELECT)
        return await core.choose(ctx, params.purpose.value, to_filter(params.filter))

    handle, entry = await core.interaction(ctx, pick)
    return certificate_info(handle, entry, await core.stores.certificates())


def register(dispatcher: Dispatcher) -> None:
    dispatcher.register("certificates.select", CertificatesSelectParams, certificates_select)
