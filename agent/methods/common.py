"""Conversions from wire models to the use cases' values and back, shared by methods."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from cryptography.hazmat.primitives.serialization import Encoding

from agent.app import certs
from agent.app.certs import CertificateFilter
from agent.app.services import Services
from agent.app.signing import Display
from agent.keystores.base import CertificateEntry, KeyType
from agent.protocol import params as p
from agent.protocol.dispatch import CallContext
from agent.protocol.enums import HashAlgorithm, Scheme
from agent.protocol.results import Algorithm, CertificateInfo, TokenSummary

_RSA_SCHEMES = (Scheme.RSA_PKCS1_V15, Scheme.RSA_PSS)
P = TypeVar("P")
R = TypeVar("R")


def bound(app: Services, method: Callable[[Services, CallContext, P], Awaitable[R]]
          ) -> Callable[[CallContext, P], Awaitable[R]]:
    """A dispatcher handler that calls ``method`` with the agent's services."""

    async def handler(ctx: CallContext, params: P) -> R:
        return await method(app, ctx, params)

    return handler


def to_filter(flt: p.CertificateFilter) -> CertificateFilter:
    return CertificateFilter(
        issuer=flt.issuer, subject_serial_number=flt.subject_serial_number,
        key_usage=tuple(k.value for k in flt.key_usage or ()),
        extended_key_usage=tuple(flt.extended_key_usage or ()),
        include_expired=flt.include_expired)


def display_of(shown: p.Display | None) -> Display:
    return Display(shown.text, shown.document_name) if shown else Display()


def chain_for(entry: CertificateEntry, everything: list[CertificateEntry]) -> list[bytes]:
    """Issuer certificates found on the same token, from the issuer up (DER)."""
    pool = [certs.load(e.der) for e in everything
            if e.token.token_id == entry.token.token_id and e.der != entry.der]
    return [c.public_bytes(Encoding.DER) for c in certs.build_chain(certs.load(entry.der), pool)]


def algorithms_for(entry: CertificateEntry) -> list[Algorithm]:
    ec_key = entry.key is not None and entry.key.key_type is KeyType.EC
    schemes = (Scheme.ECDSA,) if ec_key else _RSA_SCHEMES
    return [Algorithm(scheme=s, hash_algorithm=h) for s in schemes for h in HashAlgorithm]


def certificate_info(handle: str, entry: CertificateEntry,
                     everything: list[CertificateEntry]) -> CertificateInfo:
    t = entry.token
    return CertificateInfo(
        handle=handle, certificate=entry.der, chain=chain_for(entry, everything),
        token=TokenSummary(label=t.label, manufacturer=t.manufacturer, model=t.model,
                           serial=t.serial),
        algorithms=algorithms_for(entry))
