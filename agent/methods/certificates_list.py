"""``certificates.list``: no dialog; only for origins whose policy grants ``list``
(intranets). Never asks the user: a dialog cannot grant ``list``."""

from __future__ import annotations

from agent.app.services import Services
from agent.errors import PermissionDenied
from agent.methods.common import bound, certificate_info, to_filter
from agent.policy.rules import Permission
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params import CertificatesListParams
from agent.protocol.results import CertificatesListResult


async def certificates_list(app: Services, ctx: CallContext,
                            params: CertificatesListParams) -> CertificatesListResult:
    core = app.core
    if not core.allowed_without_asking(ctx, Permission.LIST):
        raise PermissionDenied(permission=Permission.LIST.value)
    flt = to_filter(params.filter)
    purpose = params.purpose.value
    everything = await core.stores.certificates()
    entries = core.usable(await core.matching(purpose, flt), flt)
    return CertificatesListResult(certificates=[
        certificate_info(core.handle_for(ctx, e, purpose), e, everything) for e in entries])


def register(dispatcher: Dispatcher, app: Services) -> None:
    dispatcher.register("certificates.list", CertificatesListParams,
                        bound(app, certificates_list))
