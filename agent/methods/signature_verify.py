"""``signature.verify``: the ETSI-style verdict on each signature of a file a page sends.
No key, no dialog; a site needs the ``sign`` grant (checked before anything is parsed),
so an unknown page cannot use the agent as a document parser or a fetcher of OCSP/CRL
addresses a document names."""

from __future__ import annotations

from agent.app.services import Services
from agent.errors import PermissionDenied
from agent.methods.common import bound
from agent.policy.rules import Permission
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params_verify import SignatureVerifyParams, SignatureVerifyResult


async def signature_verify(app: Services, ctx: CallContext, params: SignatureVerifyParams
                           ) -> SignatureVerifyResult:
    if not app.core.allowed_without_asking(ctx, Permission.SIGN):
        raise PermissionDenied(permission=Permission.SIGN.value)
    from agent.verify.service import verify_signature

    return await verify_signature(app.formats_config, params.signature, params.data,
                                  params.format.value if params.format else None)


def register(dispatcher: Dispatcher, app: Services) -> None:
    dispatcher.register("signature.verify", SignatureVerifyParams,
                        bound(app, signature_verify))
