"""A throw-away test PKI made at test time: root CA -> intermediate CA -> end entities.

Names carry Azerbaijani, Turkish and Cyrillic letters (UTF8String) on purpose, so every
layer that shows or matches a subject meets non-ASCII text. Certificate policies use the
ITU documentation arc 2.999 so no real policy OID is ever claimed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificateIssuerPublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT_NAME = "İmza Test Root CA"
INTERMEDIATE_NAME = "İmza Test Intermediate CA"
CA_ORGANIZATION = "İmza Test Xidmətləri MMC"

SIGN_POLICY_OID = x509.ObjectIdentifier("2.999.1.1")
AUTH_POLICY_OID = x509.ObjectIdentifier("2.999.1.2")

# Organisation shown on end-entity certificates, by country.
ORGANIZATIONS = {
    "AZ": "Rəqəmsal Xidmətlər MMC",
    "TR": "Örnek Kuruluş A.Ş.",
    "RU": "ООО «Тестовая Организация»",
}

PURPOSES = ("sign", "auth")

PrivateKey = CertificateIssuerPrivateKeyTypes
PublicKey = CertificateIssuerPublicKeyTypes


@dataclass(frozen=True)
class Identity:
    """One end-entity certificate and what it is for.

    Private keys of token identities are generated ON the SoftHSM token and never leave it,
    so they are not here; see ``SoftHsmBed.objects`` for where to find them.
    """

    name: str  # the key in TestPKI.identities
    cert: x509.Certificate
    key_type: str  # "RSA" or "EC"
    purpose: str  # "sign" or "auth"

    @property
    def common_name(self) -> str:
        return str(self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(Encoding.DER)


@dataclass
class CA:
    cert: x509.Certificate
    key: PrivateKey


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def validity(kind: str = "valid") -> tuple[dt.datetime, dt.datetime]:
    """Validity windows the bed uses: "valid", "expired" (ended yesterday) or
    "not_yet_valid" (starts in 30 days)."""
    t = now()
    windows = {
        "valid": (t - dt.timedelta(days=1), t + dt.timedelta(days=730)),
        "expired": (t - dt.timedelta(days=400), t - dt.timedelta(days=1)),
        "not_yet_valid": (t + dt.timedelta(days=30), t + dt.timedelta(days=760)),
    }
    return windows[kind]


def key_type_of(public_key: object) -> str:
    if isinstance(public_key, rsa.RSAPublicKey):
        return "RSA"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "EC"
    raise TypeError(f"unsupported public key type: {type(public_key).__name__}")


def _person_name(common_name: str, country: str, serial_number: str | None,
                 organization: str | None) -> x509.Name:
    # "Surname Given" is how these CNs are written; split it for SN/GN like real
    # qualified certificates do.
    surname, _, given = common_name.partition(" ")
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, country)]
    org = organization if organization is not None else ORGANIZATIONS.get(country)
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    if given:
        attrs.append(x509.NameAttribute(NameOID.SURNAME, surname))
        attrs.append(x509.NameAttribute(NameOID.GIVEN_NAME, given))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    if serial_number:
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_number))
    return x509.Name(attrs)


def _ca_name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "AZ"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, CA_ORGANIZATION),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
        encipher_only=False, decipher_only=False,
    )


def _end_entity_key_usage(purpose: str, key_type: str) -> x509.KeyUsage:
    signing = purpose == "sign"
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=signing,  # nonRepudiation: what portals look for on signing certs
        key_encipherment=not signing and key_type == "RSA",
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )


@dataclass
class TestPKI:
    root: CA
    intermediate: CA
    identities: dict[str, Identity] = field(default_factory=dict)

    __test__ = False  # not a pytest test class despite the name

    @property
    def chain(self) -> list[x509.Certificate]:
        """Issuing chain of every end-entity certificate: [intermediate, root]."""
        return [self.intermediate.cert, self.root.cert]

    def issue(self, name: str, public_key: PublicKey, *, purpose: str, common_name: str,
              country: str, serial_number: str | None,
              not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
              organization: str | None = None) -> x509.Certificate:
        """Issue an end-entity certificate from the intermediate and record it as
        ``identities[name]``. Missing dates default to the "valid" window."""
        if purpose not in PURPOSES:
            raise ValueError(f"purpose must be one of {PURPOSES}")
        key_type = key_type_of(public_key)
        default_from, default_to = validity("valid")
        issuer = self.intermediate
        builder = (
            x509.CertificateBuilder()
            .subject_name(_person_name(common_name, country, serial_number, organization))
            .issuer_name(issuer.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or default_from)
            .not_valid_after(not_after or default_to)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_end_entity_key_usage(purpose, key_type), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),
                           critical=False)
            .add_extension(_aki(issuer), critical=False)
            .add_extension(x509.CertificatePolicies([x509.PolicyInformation(
                SIGN_POLICY_OID if purpose == "sign" else AUTH_POLICY_OID, None)]),
                critical=False)
        )
        if purpose == "auth":
            builder = builder.add_extension(x509.ExtendedKeyUsage([
                ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION,
            ]), critical=False)
        cert = builder.sign(issuer.key, hashes.SHA256())
        self.identities[name] = Identity(name=name, cert=cert, key_type=key_type,
                                         purpose=purpose)
        return cert


def _aki(issuer: CA) -> x509.AuthorityKeyIdentifier:
    ski = issuer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _make_ca(common_name: str, key: PrivateKey, parent: CA | None,
             path_length: int) -> CA:
    start, _ = validity("valid")
    subject = _ca_name(common_name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(parent.cert.subject if parent else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - dt.timedelta(days=365))  # CAs outlive every end entity
        .not_valid_after(start + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
    )
    if parent is not None:
        builder = builder.add_extension(_aki(parent), critical=False).add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(
                "2.5.29.32.0"), None)]), critical=False)  # anyPolicy
    signer = parent.key if parent else key
    return CA(cert=builder.sign(signer, hashes.SHA256()), key=key)


def build_pki() -> TestPKI:
    """Root and intermediate CA (RSA-2048, SHA-256); end entities come from ``issue``."""
    root = _make_ca(ROOT_NAME, rsa.generate_private_key(65537, 2048), None, path_length=1)
    intermediate = _make_ca(INTERMEDIATE_NAME, rsa.generate_private_key(65537, 2048), root,
                            path_length=0)
    return TestPKI(root=root, intermediate=intermediate)
