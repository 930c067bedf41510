"""What ``sign.cms``, ``sign.pdf`` and ``sign.xml`` share: consent, the handle's key,
the chain, the signer's status before any dialog, one signature, the journal entry, and
errors typed for the page."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from agent.app.certs import build_chain
from agent.app.core import Display
from agent.errors import AgentError, InternalError
from agent.formats.network import NetworkSettings, choose_tsa, issuer_fingerprint
from agent.formats.revocation import Anchors, load_anchors
from agent.formats.signer_adapter import KeyAccess
from agent.formats.status import check_signer
from agent.policy.rules import Permission
from agent.protocol.dispatch import CallContext

log = logging.getLogger(__name__)


@dataclass
class FormatJob:
    """Everything a format builder needs besides its document."""

    access: KeyAccess
    chain: list[x509.Certificate]  # issuers of the signer, issuer first
    anchors: Anchors
    network: NetworkSettings
    tsa_url: str | None

    @property
    def certificate(self) -> x509.Certificate:
        return self.access.certificate


Builder = Callable[[FormatJob], Awaitable[bytes]]


def _issuer_fingerprint(cert: x509.Certificate, chain: list[x509.Certificate]) -> str | None:
    """The signer's issuing CA as ``tsa_by_issuer`` names it, when the agent has it."""
    if not chain or chain[0].subject != cert.issuer:
        return None
    return issuer_fingerprint(chain[0].public_bytes(Encoding.DER))


def _display(params: object) -> Display:
    shown = getattr(params, "display", None)
    return Display(shown.text, shown.document_name) if shown else Display()


async def run_format(ctx: CallContext, params: object, method: str, hash_name: str,
                     needs_tsa: bool, build: Builder) -> bytes:
    core = ctx.services.core
    config = getattr(ctx.services, "formats_config", None)
    network = NetworkSettings.from_config(config)
    access: KeyAccess | None = None

    async def work() -> bytes:
        nonlocal access
        await core.require(ctx, Permission.SIGN)
        _, entry = await core.entry_for(ctx, params.handle, "sign")  # type: ignore[attr-defined]
        access = KeyAccess(ctx, core, entry, _display(params))
        anchors = load_anchors(config.trust_anchors if config is not None else [])
        token_certs = [x509.load_der_x509_certificate(e.der)
                       for e in await core.stores.certificates()
                       if e.token.token_id == entry.token.token_id]
        cert = access.certificate
        chain = build_chain(cert, [*token_certs, *anchors.others, *anchors.roots])
        tsa = choose_tsa(config, ctx.origin, getattr(params, "tsa_url", None),
                         _issuer_fingerprint(cert, chain)) if needs_tsa else None
        await check_signer(cert, chain, anchors, network,
                           config.revocation if config is not None else "off")
        job = FormatJob(access, chain, anchors, network, tsa)
        try:
            return await build(job)
        except AgentError:
            raise
        except Exception:
            log.exception("%s failed inside the format library", method)
            raise InternalError("the signature could not be built") from None

    try:
        result = await core.interaction(ctx, work)
    except AgentError as exc:
        core.record(ctx, method, access.entry if access else None, hash_name,
                    access.digests if access else [], exc.reason)
        raise
    assert access is not None
    core.record(ctx, method, access.entry, hash_name, access.digests, "ok")
    return result
