"""A certificate as the doctor shows it: holder, names, validity, key usages, pairing."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.keystores.base import CertificateEntry

_NAME_KEYS = {
    NameOID.SERIAL_NUMBER: "serialNumber", NameOID.GIVEN_NAME: "GN", NameOID.SURNAME: "SN",
    NameOID.TITLE: "title", NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.ORGANIZATION_IDENTIFIER: "organizationIdentifier", NameOID.PSEUDONYM: "pseudonym",
}
_KEY_USAGE_BITS = (
    ("digital_signature", "digitalSignature"), ("content_commitment", "nonRepudiation"),
    ("key_encipherment", "keyEncipherment"), ("data_encipherment", "dataEncipherment"),
    ("key_agreement", "keyAgreement"), ("key_cert_sign", "keyCertSign"),
    ("crl_sign", "cRLSign"),
)
_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth", ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.SMARTCARD_LOGON: "smartcardLogon",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
    x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.12"): "documentSigning (Microsoft)",
    x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36"): "documentSigning",
    x509.ObjectIdentifier("1.2.840.113583.1.1.5"): "pdfAuthenticDocuments (Adobe)",
}


def name_string(name: x509.Name) -> str:
    return name.rfc4514_string(_NAME_KEYS)


def _key_description(cert: x509.Certificate) -> str:
    pub = cert.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        return f"RSA-{pub.key_size}"
    if isinstance(pub, ec.EllipticCurvePublicKey):
        return f"EC {pub.curve.name}"
    return type(pub).__name__


def certificate_dict(entry: CertificateEntry, now: dt.datetime) -> dict[str, Any]:
    base: dict[str, Any] = {
        "storeId": entry.token.store_id, "tokenId": entry.token.token_id,
        "tokenLabel": entry.token.label, "label": entry.label, "demo": entry.token.demo,
        "pairing": entry.pairing or "none",
        "keyId": entry.key.key_id if entry.key else None,
        "alwaysAuthenticate": entry.key.always_authenticate if entry.key else False,
        "sha256": hashlib.sha256(entry.der).hexdigest(),
    }
    try:
        cert = x509.load_der_x509_certificate(entry.der)
    except ValueError as exc:
        return {**base, "error": f"cannot parse the certificate: {exc}"}
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        key_usage: list[str] | None = [
            label for attr, label in _KEY_USAGE_BITS if getattr(ku, attr)]
    except x509.ExtensionNotFound:
        key_usage = None
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        ext_key_usage: list[str] | None = [
            _EKU_NAMES.get(oid, oid.dotted_string) for oid in eku]
    except x509.ExtensionNotFound:
        ext_key_usage = None
    return {
        **base,
        "holder": str(cns[0].value) if cns else None,
        "subject": name_string(cert.subject), "issuer": name_string(cert.issuer),
        "serialHex": f"{cert.serial_number:x}",
        "notBefore": not_before.isoformat(), "notAfter": not_after.isoformat(),
        "expired": now > not_after, "notYetValid": now < not_before,
        "keyUsage": key_usage, "extendedKeyUsage": ext_key_usage,
        "publicKey": _key_description(cert),
        "selfSigned": cert.subject == cert.issuer,
    }
