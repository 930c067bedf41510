"""Certificate facts the methods need: purpose, filters, validity, how a person sees it.

Signing and authentication certificates are told apart by key usage so that the two sets
never overlap: the contract promises that an authentication key is never usable through
``sign.*`` and a signing key never through ``auth.login``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.app.dialogs import CertificateChoice
from agent.keystores.base import CertificateEntry

KEY_USAGE_NAMES = ("digitalSignature", "nonRepudiation", "keyEncipherment",
                   "dataEncipherment", "keyAgreement", "keyCertSign", "cRLSign")
_KU_ATTR = {"digitalSignature": "digital_signature", "nonRepudiation": "content_commitment",
            "keyEncipherment": "key_encipherment", "dataEncipherment": "data_encipherment",
            "keyAgreement": "key_agreement", "keyCertSign": "key_cert_sign",
            "cRLSign": "crl_sign"}


@lru_cache(maxsize=512)
def load(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


def fingerprint(der: bytes) -> str:
    return load(der).fingerprint(hashes.SHA256()).hex()


def key_usages(cert: x509.Certificate) -> set[str]:
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return set()
    return {name for name, attr in _KU_ATTR.items() if getattr(ku, attr)}


def extended_key_usages(cert: x509.Certificate) -> set[str]:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return set()
    return {oid.dotted_string for oid in eku}


def purpose_of(cert: x509.Certificate) -> str | None:
    """"sign" (non-repudiation), "auth" (digital signature for client auth), or None."""
    usages = key_usages(cert)
    if "nonRepudiation" in usages:
        return "sign"
    if "digitalSignature" in usages:
        ekus = extended_key_usages(cert)
        auth_ekus = {ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string,
                     ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE.dotted_string}
        if not ekus or ekus & auth_ekus:
            return "auth"
    return None


def _name_attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    attrs = name.get_attributes_for_oid(oid)
    return str(attrs[0].value) if attrs else None


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


def holder(cert: x509.Certificate) -> str:
    return (_name_attr(cert.subject, NameOID.COMMON_NAME) or cert.subject.rfc4514_string())


def issuer_name(cert: x509.Certificate) -> str:
    return (_name_attr(cert.issuer, NameOID.COMMON_NAME) or cert.issuer.rfc4514_string())


def validity_problem(cert: x509.Certificate, now: datetime | None = None) -> str | None:
    now = now or datetime.now(UTC)
    if now < cert.not_valid_before_utc:
        return "not_yet_valid"
    if now > cert.not_valid_after_utc:
        return "expired"
    return None


@dataclass(frozen=True)
class CertificateFilter:
    issuer: str | None = None
    subject_serial_number: str | None = None
    key_usage: tuple[str, ...] = ()
    extended_key_usage: tuple[str, ...] = ()
    include_expired: bool = False

    @property
    def narrows(self) -> bool:
        """True when the page asked for particular certificates (``include_expired``
        only widens the list)."""
        return bool(self.issuer or self.subject_serial_number is not None
                    or self.key_usage or self.extended_key_usage)

    def matches(self, cert: x509.Certificate) -> bool:
        if self.issuer and self.issuer.casefold() not in cert.issuer.rfc4514_string().casefold():
            return False
        if self.subject_serial_number is not None and (
                _name_attr(cert.subject, NameOID.SERIAL_NUMBER) != self.subject_serial_number):
            return False
        if not set(self.key_usage) <= key_usages(cert):
            return False
        return set(self.extended_key_usage) <= extended_key_usages(cert)


def candidates(entries: list[CertificateEntry], purpose: str,
               flt: CertificateFilter) -> list[CertificateEntry]:
    """Entries with a private key, of the purpose, matching the filter (validity aside)."""
    out = []
    for entry in entries:
        if entry.key is None:
            continue
        cert = load(entry.der)
        if purpose_of(cert) == purpose and flt.matches(cert):
            out.append(entry)
    return out


def choice_for(entry: CertificateEntry, now: datetime | None = None) -> CertificateChoice:
    cert = load(entry.der)
    problem = validity_problem(cert, now)
    return CertificateChoice(
        holder=holder(cert), issuer=issuer_name(cert), serial_hex=f"{cert.serial_number:X}",
        not_before=cert.not_valid_before_utc.date().isoformat(),
        not_after=cert.not_valid_after_utc.date().isoformat(),
        token_label=entry.token.label, usable=problem is None, unusable_reason=problem,
        demo=entry.token.demo, reader=entry.token.reader)
