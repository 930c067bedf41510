"""Conversions the certificate and signing methods share."""

from __future__ import annotations

from cryptography.hazmat.primitives.serialization import Encoding

from agent.app import certs
from agent.app.certs import CertificateFilter
from agent.keystores.base import (
    CertificateEntry,
    HashAlgorithm,
    KeyType,
    Scheme,
)
from agent.protocol import params as p
from agent.protocol.results import Algorithm, CertificateInfo, TokenSummary

_RSA_SCHEMES = (Scheme.RSA_PKCS1_V15, Scheme.RSA_PSS)


def to_filter(flt: p.CertificateFilter) -> CertificateFilter:
    return CertificateFilter(
        issuer=flt.issuer, subject_serial_number=flt.subject_serial_number,
        key_usage=tuple(k.value for k in flt.key_usage or ()),
        extended_key_usage=tuple(flt.extended_key_usage or ()),
        include_expired=flt.include_expired)


def chain_for(entry: CertificateEntry, everything: list[CertificateEntry]) -> list[bytes]:
    """Issuer certificates found on the same token, from the issuer up (DER)."""
    pool = [certs.load(e.der) for e in everything
            if e.token.token_id == entry.token.token_id and e.der != entry.der]
    return [c.public_bytes(Encoding.DER) for c in certs.build_chain(certs.load(entry.der), pool)]


def algorithms_for(entry: CertificateEntry) -> list[Algorithm]:
    assert entry.key is not None
    schemes = (Scheme.ECDSA,) if entry.key.key_type is KeyType.EC else _RSA_SCHEMES
    return [Algorithm(scheme=s, hash_algorithm=h) for s in schemes for h in HashAlgorithm]


def certificate_info(handle: str, entry: CertificateEntry,
                     everything: list[CertificateEntry]) -> CertificateInfo:
    t = entry.token
    return CertificateInfo(
        handle=handle, certificate=entry.der, chain=chain_for(entry, everything),
        token=TokenSummary(label=t.label, manufacturer=t.manufacturer, model=t.model,
                           serial=t.serial),
        algorithms=algorithms_for(entry))
