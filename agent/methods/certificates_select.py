"""``certificates.select``: the native picker, naming the origin, returns one handle."""

from __future__ import annotations

from agent.app.services import Services
from agent.keystores.base import CertificateEntry
from agent.methods.common import bound, certificate_info, to_filter
from agent.policy.rules import Permission
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params import CertificatesSelectParams
from agent.protocol.results import CertificateInfo


async def certificates_select(app: Services, ctx: CallContext,
                              params: CertificatesSelectParams) -> CertificateInfo:
    core = app.core

    async def pick() -> tuple[str, CertificateEntry]:
        await core.require(ctx, Permission.SELECT)
        return await core.choose(ctx, params.purpose.value, to_filter(params.filter))

    handle, entry = await core.interaction(ctx, pick)
    return certificate_info(handle, entry, await core.stores.certificates())


def register(dispatcher: Dispatcher, app: Services) -> None:
    dispatcher.register("certificates.select", CertificatesSelectParams,
                        bound(app, certificates_select))
