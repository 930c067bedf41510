"""Certificates and revocation data: trust anchors from the configuration, chains, a
pyhanko-certvalidator context that fetches OCSP/CRL over our network settings, and the
validation data a B-LT signature embeds."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend

from agent.errors import AgentError, NetworkError
from agent.formats.network import NetworkSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Anchors:
    roots: list[x509.Certificate] = field(default_factory=list)
    others: list[x509.Certificate] = field(default_factory=list)


def _read_certificates(path: Path) -> list[x509.Certificate]:
    data = path.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


def load_anchors(paths: Iterable[Path]) -> Anchors:
    """Self-signed certificates are roots; the rest help to build paths."""
    anchors = Anchors()
    for path in paths:
        try:
            certs = _read_certificates(Path(path))
        except (OSError, ValueError):
            log.warning("trust anchor file %s is unreadable; ignored", path)
            continue
        for cert in certs:
            (anchors.roots if cert.issuer == cert.subject else anchors.others).append(cert)
    return anchors


def build_chain(cert: x509.Certificate, pool: Sequence[x509.Certificate]
                ) -> list[x509.Certificate]:
    """Issuers of ``cert`` found in ``pool``, issuer first, up to a self-signed one."""
    chain: list[x509.Certificate] = []
    current = cert
    while current.issuer != current.subject and len(chain) < 8:
        issuer = next((c for c in pool if c.subject == current.issuer), None)
        if issuer is None or issuer in chain:
            break
        chain.append(issuer)
        current = issuer
    return chain


def to_asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))


def validation_context(anchors: Anchors, extra: Iterable[x509.Certificate],
                       session: aiohttp.ClientSession, settings: NetworkSettings, *,
                       hard_fail: bool) -> ValidationContext:
    return ValidationContext(
        trust_roots=[to_asn1(c) for c in anchors.roots],
        other_certs=[to_asn1(c) for c in (*anchors.others, *extra)],
        allow_fetching=True,
        revocation_mode="hard-fail" if hard_fail else "soft-fail",
        fetcher_backend=AIOHttpFetcherBackend(session=session,
                                              per_request_timeout=settings.timeout))


@dataclass
class ValidationData:
    """What a B-LT signature carries so it can be checked after the certificates expire."""

    certificates: list[asn1_x509.Certificate] = field(default_factory=list)
    crls: list[asn1_crl.CertificateList] = field(default_factory=list)
    ocsps: list[asn1_ocsp.OCSPResponse] = field(default_factory=list)


async def collect_validation_data(context: ValidationContext,
                                  certs: Sequence[asn1_x509.Certificate]) -> ValidationData:
    """Validate each certificate's path with hard-fail revocation checking and keep the
    certificates, OCSP responses and CRLs that took.  Anything missing is NETWORK: a
    B-LT signature without its validation data would be a lie."""
    data = ValidationData()
    seen: set[bytes] = set()
    for cert in certs:
        try:
            path = await CertificateValidator(cert, validation_context=context
                                              ).async_validate_path()
        except AgentError:
            raise
        except Exception as exc:
            log.warning("validation data for %s unavailable: %s",
                        cert.subject.human_friendly, type(exc).__name__)
            raise NetworkError("validation data (OCSP/CRL) could not be gathered",
                               service="REVOCATION") from None
        for item in path:
            der = item.dump()
            if der not in seen:
                seen.add(der)
                data.certificates.append(item)
    data.crls = list(context.crls)
    data.ocsps = list(context.ocsps)
    return data


def der_certificates(items: Iterable[Any]) -> list[bytes]:
    return [c.dump() for c in items]
