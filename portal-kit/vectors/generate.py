#!/usr/bin/env python3
"""Make portal-kit/vectors/login-tokens.json: auth.login tokens (imza-auth:1) and what a
relying party's verifier must answer for each (SCHEMA.md).

It builds its own small PKI with fixed validity dates around a fixed verification time,
so the file verifies the same forever; keys are random each run, so signatures and
certificates differ from run to run while names and expectations do not.

    python portal-kit/vectors/generate.py            # (re)write login-tokens.json
    python portal-kit/vectors/generate.py --check    # the committed file has today's names
                                                     # and expectations, and parses

Tokens are made here from docs/protocol.md ("auth.login"), independently of every
verifier: the message is SHA-256(origin) || SHA-256(decoded challenge), hashed again and
signed as the JOSE algorithm says (RS* PKCS#1 v1.5, PS* PSS with MGF1 of the same hash and
a salt as long as the hash, ES* ECDSA as raw r||s of the curve's width).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import ipaddress
import json
import secrets
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "login-tokens.json"
ORIGIN = "https://portal.example.az"
OTHER_ORIGIN = "https://portal.example.az.evil.example"
LIFETIME = 300
UTC = dt.timezone.utc  # noqa: UP017 - runs on the kit's oldest Python too


def _t(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Every vector verifies at NOW; certificates are issued long before it and (but for the
# expired and not-yet-valid ones) stay valid long after.
NOW = _t("2031-05-04T10:00:00Z")
ISSUED = _t("2026-01-01T00:00:00Z")
EE_UNTIL = _t("2036-01-01T00:00:00Z")
CA_UNTIL = _t("2046-01-01T00:00:00Z")

Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass
class Issued:
    cert: x509.Certificate
    key: Key

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def b64(self) -> str:
        return base64.b64encode(self.der).decode()


def _rsa(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, bits)


def _name(common_name: str, *, person: bool = False) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "AZ")]
    if not person:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Imza Test Vectors"))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    if person:
        attrs.append(x509.NameAttribute(
            NameOID.SERIAL_NUMBER, "VEC-" + hashlib.sha256(common_name.encode()).hexdigest()[:8]))
    return x509.Name(attrs)


def _key_usage(*, digital_signature: bool = False, non_repudiation: bool = False,
               key_encipherment: bool = False, ca: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=non_repudiation,
        key_encipherment=key_encipherment, data_encipherment=False, key_agreement=False,
        key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False)


def _sign_algorithm(key: Key) -> hashes.HashAlgorithm:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def make_ca(common_name: str, key: Key, parent: Issued | None, *,
            not_after: dt.datetime = CA_UNTIL, path_length: int | None = 0,
            usage: x509.KeyUsage | None = None, usage_extension: bool = True,
            extra: x509.ExtensionType | None = None, extra_critical: bool = False,
            root_path_length: int | None = None, subject: x509.Name | None = None) -> Issued:
    """``usage``: the keyUsage instead of keyCertSign+cRLSign (``usage_extension`` False:
    none at all); ``extra``: one more extension; ``root_path_length``: the
    pathLenConstraint of a self-signed one (``path_length`` is for those with a parent);
    ``subject``: another name than ``common_name`` in the vectors' organisation."""
    subject = subject or _name(common_name)
    signer = parent.key if parent else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(parent.cert.subject if parent else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(ISSUED).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=root_path_length
                                             if parent is None else path_length),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False))
    if usage_extension:
        builder = builder.add_extension(usage or _key_usage(ca=True), critical=True)
    if extra is not None:
        builder = builder.add_extension(extra, critical=extra_critical)
    if parent is not None:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            parent.key.public_key()), critical=False)
    return Issued(builder.sign(signer, _sign_algorithm(signer)), key)


def make_person(common_name: str, key: Key, issuer: Issued, *,
                not_before: dt.datetime = ISSUED, not_after: dt.datetime = EE_UNTIL,
                usage: x509.KeyUsage | None = None,
                eku: list[x509.ObjectIdentifier] | None = None,
                usage_extensions: bool = True,
                critical: Sequence[x509.ExtensionType] = (), subject: x509.Name | None = None,
                alt_names: Sequence[x509.GeneralName] = ()) -> Issued:
    """``subject``: another name than ``common_name`` as a person; ``alt_names``: a
    (non-critical) subjectAltName."""
    rsa_key = isinstance(key, rsa.RSAPrivateKey)
    usage = usage or _key_usage(digital_signature=True, key_encipherment=rsa_key)
    if eku is None:
        eku = [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject or _name(common_name, person=True))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer.key.public_key()), critical=False))
    if usage_extensions:  # RFC 5280: without them the key is not restricted
        builder = builder.add_extension(usage, critical=True).add_extension(
            x509.ExtendedKeyUsage(eku), critical=False)
    for extension in critical:
        builder = builder.add_extension(extension, critical=True)
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names),
                                        critical=False)
    return Issued(builder.sign(issuer.key, _sign_algorithm(issuer.key)), key)


def make_crl(issuer: Issued, revoked: list[Issued], *,
             next_update: dt.datetime = EE_UNTIL) -> bytes:
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(issuer.cert.subject)
               .last_update(_t("2030-06-01T00:00:00Z"))
               .next_update(next_update)
               .add_extension(x509.CRLNumber(1), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   issuer.key.public_key()), critical=False))
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(cert.cert.serial_number)
            .revocation_date(_t("2030-03-01T00:00:00Z")).build())
    return builder.sign(issuer.key, _sign_algorithm(issuer.key)).public_bytes(
        serialization.Encoding.DER)


# --- tokens -------------------------------------------------------------------------------

_HASH = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


def new_challenge() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def message(origin: str, challenge: str) -> bytes:
    raw = base64.urlsafe_b64decode(challenge + "=" * (-len(challenge) % 4))
    return hashlib.sha256(origin.encode("ascii")).digest() + hashlib.sha256(raw).digest()


def sign(key: Key, algorithm: str, data: bytes) -> bytes:
    digest = _HASH[algorithm[2:]]()
    if algorithm.startswith("RS"):
        assert isinstance(key, rsa.RSAPrivateKey)
        return key.sign(data, padding.PKCS1v15(), digest)
    if algorithm.startswith("PS"):
        assert isinstance(key, rsa.RSAPrivateKey)
        return key.sign(data, padding.PSS(mgf=padding.MGF1(digest),
                                          salt_length=digest.digest_size), digest)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
    width = (key.curve.key_size + 7) // 8
    return r.to_bytes(width, "big") + s.to_bytes(width, "big")


def token(person: Issued, chain: list[Issued], algorithm: str, challenge: str, *,
          origin: str = ORIGIN, sign_as: str | None = None) -> dict[str, Any]:
    """``sign_as``: the algorithm really used when the label says another."""
    signature = sign(person.key, sign_as or algorithm, message(origin, challenge))
    return {"format": "imza-auth:1", "certificate": person.b64,
            "chain": [c.b64 for c in chain], "algorithm": algorithm,
            "signature": base64.b64encode(signature).decode()}


# --- the vectors --------------------------------------------------------------------------

@dataclass
class Pki:
    root: Issued
    rsa_ca: Issued
    ec_ca: Issued
    expired_ca: Issued
    other_root: Issued
    people: dict[str, Issued]
    ladder: list[Issued]  # CAs one under the other, below the root
    cas: dict[str, Issued]  # the CAs of the path-structure and revocation vectors
    big: Issued  # an unrelated CA certificate of more than the token's size bound


def _p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


_NO_CERT_SIGN = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=True,
    encipher_only=False, decipher_only=False)


def _odd_cas(root: Issued, ec_ca: Issued) -> dict[str, Issued]:
    """CAs each made to break (or just meet) one rule of SCHEMA.md's Clarifications."""
    cas = {
        "revoked": make_ca("Imza Vectors Revoked CA", _p256(), root),
        # ec_ca has pathLenConstraint 0: no CA may stand below it
        "below-path-length-0": make_ca("Imza Vectors Below-Path-Length CA", _p256(), ec_ca),
        "path-length-1": make_ca("Imza Vectors Path-Length-1 CA", _p256(), root,
                                 path_length=1),
        "no-cert-sign": make_ca("Imza Vectors No-CertSign CA", _p256(), root,
                                usage=_NO_CERT_SIGN),
        "no-key-usage": make_ca("Imza Vectors No-Key-Usage CA", _p256(), root,
                                usage_extension=False),
        "unknown-critical": make_ca("Imza Vectors Unknown-Critical CA", _p256(), root,
                                    extra=_UNKNOWN_CRITICAL, extra_critical=True),
        "stale-crl": make_ca("Imza Vectors Stale-CRL CA", _p256(), root),
        "no-crl": make_ca("Imza Vectors No-CRL CA", _p256(), root, path_length=None),
    }
    # two more anchors, whose own extensions no verifier judges (trusted as configured)
    cas["anchor-no-cert-sign"] = make_ca("Imza Vectors Anchor Without CertSign", _p256(),
                                         None, usage=_NO_CERT_SIGN)
    cas["anchor-path-length-0"] = make_ca("Imza Vectors Anchor Path-Length-0", _p256(),
                                          None, root_path_length=0)
    cas["under-anchor-path-length-0"] = make_ca("Imza Vectors Under Anchor Path-Length-0",
                                                _p256(), cas["anchor-path-length-0"])
    cas["under-path-length-1"] = make_ca("Imza Vectors Under Path-Length-1 CA", _p256(),
                                         cas["path-length-1"])
    cas["under-no-crl"] = make_ca("Imza Vectors Under No-CRL CA", _p256(), cas["no-crl"])
    return cas


# No verifier knows this one (1.3.6.1.4.1.32473: the PEN for documentation, RFC 5612).
_UNKNOWN_CRITICAL = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.32473.2"),
                                               b"\x05\x00")


# More characters than a token may hold (SCHEMA.md: 262144) in one otherwise fine
# certificate; 1.3.6.1.4.1.32473 is the PEN for documentation (RFC 5612).
_BIG_EXTENSION = x509.UnrecognizedExtension(
    x509.ObjectIdentifier("1.3.6.1.4.1.32473.1"),
    b"\x04\x83" + (200_000).to_bytes(3, "big") + b"\x00" * 200_000)


def build_pki() -> Pki:
    root = make_ca("Imza Vectors Root CA", _rsa(3072), None)
    rsa_ca = make_ca("Imza Vectors RSA CA", _rsa(2048), root)
    ec_ca = make_ca("Imza Vectors EC CA", ec.generate_private_key(ec.SECP384R1()), root)
    expired_ca = make_ca("Imza Vectors Old CA", _rsa(2048), root,
                         not_after=_t("2030-01-01T00:00:00Z"))
    other_root = make_ca("Somebody Else's Root CA", _rsa(2048), None)
    p256 = ec.generate_private_key(ec.SECP256R1())
    people = {
        "rsa2048": make_person("Vektor RSA-2048", _rsa(2048), rsa_ca),
        "rsa3072": make_person("Vektor RSA-3072", _rsa(3072), rsa_ca),
        "p256": make_person("Vektor P-256", p256, ec_ca),
        "p384": make_person("Vektor P-384", ec.generate_private_key(ec.SECP384R1()), ec_ca),
        "p521": make_person("Vektor P-521", ec.generate_private_key(ec.SECP521R1()), ec_ca),
        "root-issued": make_person("Vektor Root-Issued", ec.generate_private_key(
            ec.SECP256R1()), root),
        "expired": make_person("Vektor Expired", ec.generate_private_key(ec.SECP256R1()),
                               ec_ca, not_after=_t("2030-01-01T00:00:00Z")),
        "not-yet-valid": make_person("Vektor Not-Yet-Valid", ec.generate_private_key(
            ec.SECP256R1()), ec_ca, not_before=_t("2032-01-01T00:00:00Z")),
        "revoked": make_person("Vektor Revoked", _rsa(2048), rsa_ca),
        "under-expired-ca": make_person("Vektor Old-CA", _rsa(2048), expired_ca),
        "no-client-auth": make_person("Vektor E-Mail-Only", ec.generate_private_key(
            ec.SECP256R1()), ec_ca, eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION]),
        "signing": make_person("Vektor Signing", ec.generate_private_key(ec.SECP256R1()),
                               ec_ca, usage=_key_usage(non_repudiation=True)),
        "untrusted": make_person("Vektor Untrusted", ec.generate_private_key(
            ec.SECP256R1()), other_root),
    }
    people["issued-by-end-entity"] = make_person(
        "Vektor Under-End-Entity", ec.generate_private_key(ec.SECP256R1()), people["p384"])
    people["no-usage-extensions"] = make_person(
        "Vektor No-Usage", ec.generate_private_key(ec.SECP256R1()), ec_ca,
        usage_extensions=False)
    ladder: list[Issued] = []
    for step in range(5):  # root + 4 CAs + end entity = 6 certificates: the longest path
        ladder.append(make_ca(f"Imza Vectors Ladder CA {step + 1}",
                              ec.generate_private_key(ec.SECP256R1()),
                              ladder[-1] if ladder else root, path_length=None))
    people["path-6"] = make_person("Vektor Path-6", ec.generate_private_key(ec.SECP256R1()),
                                   ladder[3])
    people["path-7"] = make_person("Vektor Path-7", ec.generate_private_key(ec.SECP256R1()),
                                   ladder[4])
    cas = _odd_cas(root, ec_ca)
    for who, ca in (("under-revoked-ca", "revoked"), ("path-length", "below-path-length-0"),
                    ("path-length-at-limit", "under-path-length-1"),
                    ("under-no-cert-sign", "no-cert-sign"),
                    ("under-no-key-usage", "no-key-usage"), ("stale-good", "stale-crl"),
                    ("stale-revoked", "stale-crl"), ("no-crl", "no-crl"),
                    ("intermediate-without-crl", "under-no-crl"),
                    ("under-anchor-no-cert-sign", "anchor-no-cert-sign"),
                    ("below-anchor-path-length-0", "under-anchor-path-length-0")):
        people[who] = make_person(f"Vektor {who.title()}", _p256(), cas[ca])
    people["unknown-critical"] = make_person("Vektor Unknown-Critical", _p256(), ec_ca,
                                             critical=[_UNKNOWN_CRITICAL])
    people["under-unknown-critical-ca"] = make_person("Vektor Under-Unknown-Critical", _p256(),
                                                      cas["unknown-critical"])
    people["critical-known"] = make_person("Vektor Critical-Known", _p256(), ec_ca, critical=[
        x509.SubjectAlternativeName([x509.RFC822Name("vektor@example.az")]),
        x509.CertificatePolicies([x509.PolicyInformation(
            x509.ObjectIdentifier("1.3.6.1.4.1.32473.3"), None)])])
    _constrained(cas, people)
    big = make_ca("Imza Vectors Big CA", _p256(), None, extra=_BIG_EXTENSION)
    return Pki(root, rsa_ca, ec_ca, expired_ca, other_root, people, ladder, cas, big)


def _bank_x(common_name: str | None = None, *, unit: str | None = None,
            organisation: str = "Bank X") -> x509.Name:
    """A name in the subtree C=AZ, O=Bank X that the name-constraint vectors permit."""
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "AZ"),
             x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation)]
    if unit is not None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    if common_name is not None:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _constraints(permitted: Sequence[x509.GeneralName] = (),
                 excluded: Sequence[x509.GeneralName] = ()) -> x509.NameConstraints:
    return x509.NameConstraints(permitted_subtrees=list(permitted) or None,
                                excluded_subtrees=list(excluded) or None)


def _constrained(cas: dict[str, Issued], people: dict[str, Issued]) -> None:
    """The CAs and certificates of the name-constraint vectors (SCHEMA.md), under two
    anchors of their own."""
    root = cas["nc-root"] = make_ca("Imza Vectors Name-Constraints Root", _p256(), None)
    cas["nc-dn"] = make_ca("Imza Vectors Bank-X Constrained CA", _p256(), root,
                           path_length=None, extra_critical=True, extra=_constraints(
                               [x509.DirectoryName(_bank_x())],
                               [x509.DirectoryName(_bank_x(unit="Fraud"))]))
    cas["nc-dn-issuing"] = make_ca("", _p256(), cas["nc-dn"],
                                   subject=_bank_x("Imza Vectors Bank-X Issuing CA"))
    cas["nc-dn-outside"] = make_ca("Imza Vectors Outside Bank-X CA", _p256(), cas["nc-dn"])
    # self-issued (a new key under the same name): not judged by the constraints above it
    cas["nc-dn-self-issued"] = make_ca("", _p256(), cas["nc-dn"],
                                       subject=cas["nc-dn"].cert.subject)
    cas["nc-email"] = make_ca("Imza Vectors Mail-Constrained CA", _p256(), root,
                              extra_critical=True, extra=_constraints(
                                  [x509.RFC822Name("bankx.az"),
                                   x509.RFC822Name(".corp.bankx.az")],
                                  [x509.RFC822Name("fraud@bankx.az")]))
    cas["nc-host"] = make_ca("Imza Vectors Host-Constrained CA", _p256(), root,
                             extra_critical=True, extra=_constraints(
                                 [x509.DNSName("bankx.az"),
                                  x509.IPAddress(ipaddress.ip_network("10.0.0.0/8"))]))
    cas["nc-anchor"] = make_ca("Imza Vectors Constrained Anchor", _p256(), None,
                               extra_critical=True, extra=_constraints(
                                   excluded=[x509.DirectoryName(x509.Name([
                                       x509.NameAttribute(NameOID.COUNTRY_NAME, "AZ")]))]))

    def person(who: str, ca: str, subject: x509.Name | None = None,
               *alt_names: x509.GeneralName) -> None:
        people[who] = make_person(f"Vektor {who.title()}", _p256(), cas[ca],
                                  subject=subject, alt_names=alt_names)

    person("nc-dn-in", "nc-dn", _bank_x("Vektor Bank-X"))
    person("nc-dn-case", "nc-dn", _bank_x("Vektor Bank-X", organisation="BANK   x"))
    person("nc-dn-out", "nc-dn")
    person("nc-dn-excluded", "nc-dn", _bank_x("Vektor Fraud", unit="Fraud"))
    person("nc-dn-prefix", "nc-dn", _bank_x("Vektor Bank-X Ltd", organisation="Bank X Ltd"))
    person("nc-dn-inherited-in", "nc-dn-issuing", _bank_x("Vektor Bank-X Inherited"))
    person("nc-dn-inherited-out", "nc-dn-issuing")
    person("nc-dn-under-outside-ca", "nc-dn-outside", _bank_x("Vektor Bank-X Under-Outside"))
    person("nc-dn-self-issued", "nc-dn-self-issued", _bank_x("Vektor Bank-X Self-Issued"))
    mail = x509.RFC822Name
    person("nc-email-in", "nc-email", None, mail("Vektor@BankX.AZ"))
    person("nc-email-domain", "nc-email", None, mail("vektor@branch.corp.bankx.az"))
    person("nc-email-out", "nc-email", None, mail("vektor@evil.az"))
    person("nc-email-host-form", "nc-email", None, mail("vektor@mail.bankx.az"))
    person("nc-email-excluded", "nc-email", None, mail("fraud@bankx.az"))
    for who, address in (("nc-email-attribute-in", "vektor@bankx.az"),
                         ("nc-email-attribute-out", "vektor@evil.az")):
        person(who, "nc-email", x509.Name([
            *_name(f"Vektor {who.title()}", person=True),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, address)]))
    person("nc-host-in", "nc-host", None, x509.DNSName("portal.bankx.az"),
           x509.IPAddress(ipaddress.ip_address("10.1.2.3")), mail("vektor@evil.az"))
    person("nc-dns-out", "nc-host", None, x509.DNSName("bankx.az.evil.az"))
    person("nc-ip-out", "nc-host", None, x509.IPAddress(ipaddress.ip_address("192.0.2.1")))
    person("nc-cn-as-dns", "nc-host", x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "AZ"),
        x509.NameAttribute(NameOID.COMMON_NAME, "evil.az")]))
    person("nc-under-anchor", "nc-anchor")


def _sha256(issued: Issued) -> str:
    return hashlib.sha256(issued.der).hexdigest()


def _garbage_b64() -> str:
    return base64.b64encode(b"\x30\x82\x01\x00 this is not a certificate").decode()


def vectors(pki: Pki) -> list[dict[str, Any]]:
    p = pki.people
    chain_of = {"no-usage-extensions": [pki.ec_ca],
                "rsa2048": [pki.rsa_ca], "rsa3072": [pki.rsa_ca], "p256": [pki.ec_ca],
                "p384": [pki.ec_ca], "p521": [pki.ec_ca], "root-issued": [],
                "expired": [pki.ec_ca], "not-yet-valid": [pki.ec_ca], "revoked": [pki.rsa_ca],
                "under-expired-ca": [pki.expired_ca], "no-client-auth": [pki.ec_ca],
                "signing": [pki.ec_ca], "untrusted": [pki.other_root]}
    out: list[dict[str, Any]] = []

    def add(name: str, description: str, make: Callable[[str], Any], *,
            error: str | None = None, person: str | None = None,
            issued_ago: int | None = 30, used: bool = False,
            now: dt.datetime = NOW, require_revocation: bool = False) -> None:
        challenge = new_challenge()
        expect: dict[str, Any] = ({"valid": False, "error": error} if error else
                                  {"valid": True, "certificateSha256": _sha256(p[person or ""])})
        out.append({
            "name": name, "description": description, "now": _rfc3339(now), "origin": ORIGIN,
            "challenge": challenge,
            "challengeIssuedAt": (None if issued_ago is None
                                  else _rfc3339(now - dt.timedelta(seconds=issued_ago))),
            "challengeUsed": used, "token": make(challenge), "expect": expect})
        if require_revocation:
            out[-1]["requireRevocation"] = True

    def good(who: str, algorithm: str, **kw: Any) -> Callable[[str], dict[str, Any]]:
        return lambda c: token(p[who], chain_of[who], algorithm, c, **kw)

    # valid: every algorithm the agent emits, on the key type it needs
    for algorithm, who in (("RS256", "rsa2048"), ("RS384", "rsa3072"), ("RS512", "rsa3072"),
                           ("PS256", "rsa2048"), ("PS384", "rsa3072"), ("PS512", "rsa3072"),
                           ("ES256", "p256"), ("ES384", "p384"), ("ES512", "p521")):
        add(f"{algorithm.lower()}-{who}-valid",
            f"A valid {algorithm} token from a {who} certificate.", good(who, algorithm),
            person=who)
    add("valid-chain-with-root", "The chain carries the intermediate and the root too.",
        lambda c: token(p["p256"], [pki.ec_ca, pki.root], "ES256", c), person="p256")
    add("valid-root-issued-without-chain",
        "A certificate the anchor issued itself, with no chain member at all.",
        lambda c: {k: v for k, v in token(p["root-issued"], [], "ES256", c).items()
                   if k != "chain"}, person="root-issued")
    add("valid-challenge-at-lifetime", "The challenge was issued exactly the lifetime ago.",
        good("p256", "ES256"), person="p256", issued_ago=LIFETIME)

    # malformed fields
    add("malformed-not-an-object", "The token is a JSON string.", lambda c: "imza-auth:1",
        error="MALFORMED")
    add("malformed-array", "The token is a JSON array.", lambda c: [good("p256", "ES256")(c)],
        error="MALFORMED")
    add("malformed-null", "The token is JSON null.", lambda c: None, error="MALFORMED")
    for field in ("format", "certificate", "algorithm", "signature"):
        add(f"malformed-missing-{field}", f"The token has no {field}.",
            lambda c, f=field: {k: v for k, v in good("p256", "ES256")(c).items() if k != f},
            error="MALFORMED")
    add("malformed-certificate-not-text", "The certificate is a number.",
        lambda c: {**good("p256", "ES256")(c), "certificate": 12345}, error="MALFORMED")
    add("malformed-certificate-bad-base64", "The certificate is not base64.",
        lambda c: {**good("p256", "ES256")(c), "certificate": "%%% not base64 %%%"},
        error="MALFORMED")
    add("malformed-certificate-base64url",
        "The certificate is base64url (- and _), not standard base64.",
        lambda c: {**good("p256", "ES256")(c), "certificate": _urlsafe(p["p256"])},
        error="MALFORMED")
    add("malformed-signature-line-break", "The signature's base64 has a line break in it.",
        lambda c: _split_signature(good("rsa2048", "RS256")(c)), error="MALFORMED")
    add("malformed-signature-unpadded", "The signature's base64 lacks its = padding.",
        lambda c: _unpadded(good("p256", "ES256")(c)), error="MALFORMED")
    add("malformed-certificate-garbage", "The certificate is base64 of bytes that are no "
        "certificate.", lambda c: {**good("p256", "ES256")(c), "certificate": _garbage_b64()},
        error="MALFORMED")
    add("malformed-signature-bad-base64", "The signature is not base64.",
        lambda c: {**good("p256", "ES256")(c), "signature": "not*base64!"}, error="MALFORMED")
    add("malformed-chain-not-array", "The chain is a string, not an array.",
        lambda c: {**good("p256", "ES256")(c), "chain": pki.ec_ca.b64}, error="MALFORMED")
    add("malformed-chain-member-not-text", "A chain member is an object.",
        lambda c: {**good("p256", "ES256")(c), "chain": [{"der": pki.ec_ca.b64}]},
        error="MALFORMED")
    add("malformed-chain-member-garbage", "A chain member is no certificate.",
        lambda c: {**good("p256", "ES256")(c), "chain": [pki.ec_ca.b64, _garbage_b64()]},
        error="MALFORMED")
    add("malformed-before-challenge", "A malformed token with a challenge never issued: "
        "MALFORMED is checked first.", lambda c: {**good("p256", "ES256")(c), "chain": 7},
        error="MALFORMED", issued_ago=None)

    # format
    add("unsupported-format", "The format is a future version.",
        lambda c: {**good("p256", "ES256")(c), "format": "imza-auth:2"},
        error="UNSUPPORTED_FORMAT")
    add("unsupported-format-web-eid", "The format is web-eid:1.0.",
        lambda c: {**good("p256", "ES256")(c), "format": "web-eid:1.0"},
        error="UNSUPPORTED_FORMAT")
    add("unsupported-format-before-challenge", "An unsupported format on a replayed "
        "challenge: the format is checked first.",
        lambda c: {**good("p256", "ES256")(c), "format": "imza-auth"},
        error="UNSUPPORTED_FORMAT", used=True)

    # the challenge
    add("challenge-unknown", "The verifier never issued this challenge.",
        good("p256", "ES256"), error="CHALLENGE_UNKNOWN", issued_ago=None)
    add("challenge-used", "The challenge was already consumed (a replay).",
        good("p256", "ES256"), error="CHALLENGE_USED", used=True)
    add("challenge-expired", "The challenge was issued one second more than the lifetime "
        "ago.", good("p256", "ES256"), error="CHALLENGE_EXPIRED", issued_ago=LIFETIME + 1)
    add("challenge-used-and-expired", "Used and expired: CHALLENGE_USED comes first.",
        good("p256", "ES256"), error="CHALLENGE_USED", issued_ago=3600, used=True)
    add("challenge-before-certificate", "A replayed challenge with an untrusted "
        "certificate: the challenge is checked first.", good("untrusted", "ES256"),
        error="CHALLENGE_USED", used=True)

    # algorithm label
    add("algorithm-unknown", "The label is not a JOSE algorithm the agent emits.",
        lambda c: {**good("p256", "ES256")(c), "algorithm": "HS256"},
        error="ALGORITHM_MISMATCH")
    add("algorithm-lowercase", "The label is es256 (labels are case-sensitive).",
        lambda c: {**good("p256", "ES256")(c), "algorithm": "es256"},
        error="ALGORITHM_MISMATCH")
    add("algorithm-es384-on-p256", "ES384 names P-384; the key is P-256.",
        good("p256", "ES384", sign_as="ES256"), error="ALGORITHM_MISMATCH")
    add("algorithm-es256-on-p384", "ES256 names P-256; the key is P-384.",
        good("p384", "ES256", sign_as="ES384"), error="ALGORITHM_MISMATCH")
    add("algorithm-rs256-on-ec", "An RSA algorithm on an EC key.",
        good("p256", "RS256", sign_as="ES256"), error="ALGORITHM_MISMATCH")
    add("algorithm-es256-on-rsa", "An EC algorithm on an RSA key.",
        good("rsa2048", "ES256", sign_as="RS256"), error="ALGORITHM_MISMATCH")
    add("algorithm-before-certificate", "A wrong label on an untrusted certificate: the label "
        "is checked first.", good("untrusted", "RS256", sign_as="ES256"),
        error="ALGORITHM_MISMATCH")

    # the signature
    add("wrong-origin", "The agent made the token for another origin.",
        good("p256", "ES256", origin=OTHER_ORIGIN), error="SIGNATURE_INVALID")
    add("wrong-origin-rsa", "The agent made the token for another origin (RSA).",
        good("rsa2048", "PS256", origin="http://portal.example.az"),
        error="SIGNATURE_INVALID")
    add("other-challenge", "The token signs another challenge than this session's.",
        lambda c: token(p["p256"], chain_of["p256"], "ES256", new_challenge()),
        error="SIGNATURE_INVALID")
    add("tampered-signature-ec", "One bit of the signature is flipped.",
        lambda c: _flip(good("p384", "ES384")(c)), error="SIGNATURE_INVALID")
    add("tampered-signature-rsa", "One bit of the signature is flipped.",
        lambda c: _flip(good("rsa2048", "RS256")(c)), error="SIGNATURE_INVALID")
    add("rs256-label-on-ps256-signature", "A PSS signature labelled PKCS#1 v1.5.",
        good("rsa2048", "RS256", sign_as="PS256"), error="SIGNATURE_INVALID")
    add("ps256-label-on-rs256-signature", "A PKCS#1 v1.5 signature labelled PSS.",
        good("rsa2048", "PS256", sign_as="RS256"), error="SIGNATURE_INVALID")
    add("rs384-label-on-rs256-signature", "Signed with SHA-256, labelled SHA-384.",
        good("rsa3072", "RS384", sign_as="RS256"), error="SIGNATURE_INVALID")
    add("es256-signature-der-encoded", "An ECDSA signature in DER, not raw r||s.",
        lambda c: _der_signature(good("p256", "ES256")(c), 32), error="SIGNATURE_INVALID")
    add("es256-signature-truncated", "A raw signature one byte short.",
        lambda c: _resize(good("p256", "ES256")(c), -1), error="SIGNATURE_INVALID")
    add("es512-signature-128-bytes", "An ES512 signature of 2x64 bytes (P-521 is 66 wide).",
        lambda c: _es512_short(good("p521", "ES512")(c)), error="SIGNATURE_INVALID")
    add("signature-empty", "The signature is empty.",
        lambda c: {**good("rsa2048", "RS256")(c), "signature": ""},
        error="SIGNATURE_INVALID")
    add("signature-before-certificate", "A bad signature from an expired certificate: the "
        "signature is checked first.", good("expired", "ES256", origin=OTHER_ORIGIN),
        error="SIGNATURE_INVALID")

    # the certificate's path
    add("untrusted-root", "The certificate chains to a root the portal does not trust.",
        good("untrusted", "ES256"), error="CERT_UNTRUSTED")
    add("missing-intermediate", "The chain lacks the issuing CA.",
        lambda c: token(p["p256"], [], "ES256", c), error="CERT_UNTRUSTED")
    add("wrong-intermediate", "The chain holds another CA than the issuer.",
        lambda c: token(p["p256"], [pki.rsa_ca], "ES256", c), error="CERT_UNTRUSTED")
    add("untrusted-before-validity", "An untrusted certificate outside its validity: "
        "CERT_UNTRUSTED comes first.", lambda c: token(p["expired"], [], "ES256", c),
        error="CERT_UNTRUSTED")
    add("valid-chain-with-extra-certificate", "The chain also holds an unrelated certificate.",
        lambda c: token(p["p256"], [p["p384"], pki.ec_ca], "ES256", c), person="p256")
    add("issued-by-end-entity", "The issuer on the chain is an end entity (cA false), "
        "itself under the trusted CA.",
        lambda c: token(p["issued-by-end-entity"], [p["p384"], pki.ec_ca], "ES256", c),
        error="CERT_UNTRUSTED")

    add("path-of-six-certificates", "Root, four CAs and the end entity: the longest path.",
        lambda c: token(p["path-6"], list(reversed(pki.ladder[:4])), "ES256", c),
        person="path-6")
    add("path-of-seven-certificates", "Root, five CAs and the end entity: one too many.",
        lambda c: token(p["path-7"], list(reversed(pki.ladder)), "ES256", c),
        error="CERT_UNTRUSTED")

    # validity
    second = dt.timedelta(seconds=1)
    add("valid-at-first-second", "Now is the first second of every certificate's validity.",
        good("p256", "ES256"), person="p256", now=ISSUED)
    add("not-yet-valid-a-second-early", "One second before the validity starts.",
        good("p256", "ES256"), error="CERT_NOT_YET_VALID", now=ISSUED - second)
    add("valid-at-last-second", "Now is the certificate's notAfter.",
        good("p256", "ES256"), person="p256", now=EE_UNTIL)
    add("expired-a-second-late", "One second after the certificate's notAfter.",
        good("p256", "ES256"), error="CERT_EXPIRED", now=EE_UNTIL + second)
    add("certificate-expired", "The certificate expired before now.",
        good("expired", "ES256"), error="CERT_EXPIRED")
    add("certificate-not-yet-valid", "The certificate becomes valid after now.",
        good("not-yet-valid", "ES256"), error="CERT_NOT_YET_VALID")
    add("intermediate-expired", "The issuing CA expired before now.",
        good("under-expired-ca", "RS256"), error="CERT_EXPIRED")

    # usage
    add("no-client-auth", "The extended key usage lacks clientAuth.",
        good("no-client-auth", "ES256"), error="CERT_NOT_FOR_AUTH")
    add("signing-certificate", "A nonRepudiation-only signing certificate used for login.",
        good("signing", "ES256"), error="CERT_NOT_FOR_AUTH")
    add("valid-without-usage-extensions", "No keyUsage nor extendedKeyUsage: unrestricted.",
        good("no-usage-extensions", "ES256"), person="no-usage-extensions")

    # revocation
    add("certificate-revoked", "The issuer's CRL lists the certificate.",
        good("revoked", "RS256"), error="CERT_REVOKED")
    add("certificate-revoked-ps", "The issuer's CRL lists the certificate (PS256).",
        good("revoked", "PS256"), error="CERT_REVOKED")
    _more_vectors(pki, add)
    return out


Add = Callable[..., None]


def _more_vectors(pki: Pki, add: Add) -> None:
    """The rules the three verifiers once read differently (SCHEMA.md, Clarifications)."""
    p, cas = pki.people, pki.cas

    def under(who: str, *chain: Issued) -> Callable[[str], dict[str, Any]]:
        return lambda c: token(p[who], list(chain), "ES256", c)

    # path structure: cA, pathLenConstraint, keyCertSign of every CA taken from the chain
    add("path-length-exceeded", "A CA stands below a CA whose pathLenConstraint is 0.",
        under("path-length", cas["below-path-length-0"], pki.ec_ca), error="CERT_UNTRUSTED")
    add("valid-path-length-at-limit", "One CA below a CA whose pathLenConstraint is 1.",
        under("path-length-at-limit", cas["under-path-length-1"], cas["path-length-1"]),
        person="path-length-at-limit")
    add("ca-without-keycertsign", "The issuing CA has a keyUsage without keyCertSign.",
        under("under-no-cert-sign", cas["no-cert-sign"]), error="CERT_UNTRUSTED")
    add("valid-ca-without-key-usage", "The issuing CA has no keyUsage extension at all.",
        under("under-no-key-usage", cas["no-key-usage"]), person="under-no-key-usage")
    add("valid-anchor-without-keycertsign", "The anchor that issued the certificate has a "
        "keyUsage without keyCertSign: anchors are trusted as configured.",
        under("under-anchor-no-cert-sign"), person="under-anchor-no-cert-sign")
    add("valid-below-anchor-path-length-0", "A CA stands below an anchor whose "
        "pathLenConstraint is 0: anchors are trusted as configured.",
        under("below-anchor-path-length-0", cas["under-anchor-path-length-0"]),
        person="below-anchor-path-length-0")

    add("unknown-critical-extension", "The certificate has a critical extension no "
        "verifier knows.", under("unknown-critical", pki.ec_ca), error="CERT_UNTRUSTED")
    add("ca-with-unknown-critical-extension", "The issuing CA has a critical extension no "
        "verifier knows.", under("under-unknown-critical-ca", cas["unknown-critical"]),
        error="CERT_UNTRUSTED")
    add("valid-critical-known-extensions", "The certificate has a critical "
        "subjectAltName and certificatePolicies, which every verifier knows.",
        under("critical-known", pki.ec_ca), person="critical-known")

    # size bounds, MALFORMED before anything else is looked at
    unrelated = [pki.rsa_ca, pki.expired_ca, pki.other_root, *pki.ladder,
                 *(p[k] for k in ("rsa2048", "rsa3072", "p384", "p521", "root-issued",
                                  "expired", "not-yet-valid", "revoked"))]
    assert len(unrelated) >= 16
    add("valid-chain-of-sixteen", "The chain holds 16 certificates, the issuer among them.",
        under("p256", pki.ec_ca, *unrelated[:15]), person="p256")
    add("chain-too-long", "The chain holds 17 certificates, the issuer among them.",
        under("p256", pki.ec_ca, *unrelated[:16]), error="MALFORMED")
    add("token-too-large", "The chain carries an unrelated certificate so large that the "
        "token's text passes 262144 characters.", under("p256", pki.ec_ca, pki.big),
        error="MALFORMED")

    # revocation along the path, and a CRL past its nextUpdate
    add("revoked-intermediate", "The root's CRL lists the issuing CA; the CA's own CRL does "
        "not list the certificate.", under("under-revoked-ca", cas["revoked"]),
        error="CERT_REVOKED")
    add("revoked-on-outdated-crl", "The issuer's CRL, past its nextUpdate, lists the "
        "certificate.", under("stale-revoked", cas["stale-crl"]), error="CERT_REVOKED")
    add("outdated-crl-is-no-information", "The issuer's only CRL is past its nextUpdate and "
        "does not list the certificate; revocation status is required.",
        under("stale-good", cas["stale-crl"]), error="REVOCATION_UNKNOWN",
        require_revocation=True)
    add("outdated-crl-without-requirement", "The same, revocation status not required.",
        under("stale-good", cas["stale-crl"]), person="stale-good")
    add("require-revocation-no-crl", "No configured CRL is the issuer's; revocation status "
        "is required.", under("no-crl", cas["no-crl"]), error="REVOCATION_UNKNOWN",
        require_revocation=True)
    add("require-revocation-current-crl", "The issuer's current CRL does not list the "
        "certificate; revocation status is required.", lambda c: token(
            p["p256"], [pki.ec_ca], "ES256", c), person="p256", require_revocation=True)
    add("require-revocation-intermediate-unknown", "Required status is the end entity's: "
        "no CRL speaks for the intermediate CA, its issuing CA's current CRL for the "
        "certificate.", under("intermediate-without-crl", cas["under-no-crl"], cas["no-crl"]),
        person="intermediate-without-crl", require_revocation=True)
    _name_constraint_vectors(pki, add)


def _name_constraint_vectors(pki: Pki, add: Add) -> None:
    """nameConstraints of the CAs on the path (SCHEMA.md, Clarifications)."""
    p, cas = pki.people, pki.cas

    def under(who: str, *chain: str) -> Callable[[str], dict[str, Any]]:
        return lambda c: token(p[who], [cas[ca] for ca in chain], "ES256", c)

    def ok(name: str, description: str, who: str, *chain: str) -> None:
        add(name, description, under(who, *chain), person=who)

    def refused(name: str, description: str, who: str, *chain: str) -> None:
        add(name, description, under(who, *chain), error="CERT_UNTRUSTED")

    # directoryName: the subject within C=AZ, O=Bank X, outside its OU=Fraud
    ok("valid-name-constraints-permitted-dn", "The CA permits the subtree C=AZ, O=Bank X; "
       "the subject is in it.", "nc-dn-in", "nc-dn")
    ok("valid-name-constraints-dn-case-and-spaces", "The subject's O is BANK   x: "
       "RDNs compare without case and with runs of spaces as one.", "nc-dn-case", "nc-dn")
    refused("name-constraints-outside-permitted-dn", "The CA permits C=AZ, O=Bank X; the "
            "subject has no O.", "nc-dn-out", "nc-dn")
    refused("name-constraints-dn-attribute-prefix", "The CA permits C=AZ, O=Bank X; the "
            "subject's O is Bank X Ltd (RDNs compare whole).", "nc-dn-prefix", "nc-dn")
    refused("name-constraints-excluded-dn", "The CA excludes C=AZ, O=Bank X, OU=Fraud; the "
            "subject is in it.", "nc-dn-excluded", "nc-dn")
    ok("valid-name-constraints-inherited", "A CA under the constrained CA issued the "
       "certificate; both subjects are in C=AZ, O=Bank X.", "nc-dn-inherited-in",
       "nc-dn-issuing", "nc-dn")
    refused("name-constraints-inherited-from-upper-ca", "The constraint of the CA above "
            "the issuing CA binds the certificate too: its subject is outside.",
            "nc-dn-inherited-out", "nc-dn-issuing", "nc-dn")
    refused("name-constraints-intermediate-outside", "The issuing CA's own subject is "
            "outside the constraint of the CA above it.", "nc-dn-under-outside-ca",
            "nc-dn-outside", "nc-dn")
    ok("valid-name-constraints-self-issued-exempt", "The issuing CA is self-issued (a new "
       "key of the constrained CA, whose name is outside its own constraint): not judged.",
       "nc-dn-self-issued", "nc-dn-self-issued", "nc-dn")

    # rfc822Name: host bankx.az, domain .corp.bankx.az, mailbox fraud@bankx.az excluded
    ok("valid-name-constraints-email", "The CA permits mail at bankx.az; the "
       "subjectAltName has Vektor@BankX.AZ (compared without case).", "nc-email-in",
       "nc-email")
    ok("valid-name-constraints-email-domain", "The CA permits mail in .corp.bankx.az; the "
       "address is at branch.corp.bankx.az.", "nc-email-domain", "nc-email")
    refused("name-constraints-email-outside", "The CA permits mail at bankx.az; the "
            "address is at evil.az.", "nc-email-out", "nc-email")
    refused("name-constraints-email-host-form", "The CA permits mail at the host bankx.az, "
            "which does not cover mail.bankx.az.", "nc-email-host-form", "nc-email")
    refused("name-constraints-email-excluded-mailbox", "The CA excludes the mailbox "
            "fraud@bankx.az; the certificate has it.", "nc-email-excluded", "nc-email")
    ok("valid-name-constraints-email-attribute", "No subjectAltName: the subject's "
       "emailAddress, vektor@bankx.az, is judged.", "nc-email-attribute-in", "nc-email")
    refused("name-constraints-email-attribute-outside", "No subjectAltName: the subject's "
            "emailAddress, vektor@evil.az, is judged.", "nc-email-attribute-out", "nc-email")

    # dNSName and iPAddress
    ok("valid-name-constraints-dns-and-ip", "The CA permits bankx.az and 10.0.0.0/8; the "
       "names are portal.bankx.az, 10.1.2.3 and an e-mail address (no mail constraint).",
       "nc-host-in", "nc-host")
    refused("name-constraints-dns-outside", "The CA permits bankx.az; the DNS name is "
            "bankx.az.evil.az.", "nc-dns-out", "nc-host")
    refused("name-constraints-ip-outside", "The CA permits 10.0.0.0/8; the address is "
            "192.0.2.1.", "nc-ip-out", "nc-host")
    refused("name-constraints-cn-judged-as-dns", "No subjectAltName: the subject's CN, "
            "evil.az, is judged as a DNS name (as the JDK does).", "nc-cn-as-dns", "nc-host")

    ok("valid-name-constraints-on-anchor-not-applied", "The anchor excludes C=AZ; its own "
       "nameConstraints are not applied (anchors are trusted as configured).",
       "nc-under-anchor")


def _urlsafe(issued: Issued) -> str:
    text = base64.urlsafe_b64encode(issued.der).decode()
    while "-" not in text and "_" not in text:  # (astronomically rare) make it tell
        text = base64.urlsafe_b64encode(issued.der + b"\xfb\xef").decode()
    return text


def _split_signature(tok: dict[str, Any]) -> dict[str, Any]:
    text = tok["signature"]
    return {**tok, "signature": text[:64] + "\n" + text[64:]}


def _unpadded(tok: dict[str, Any]) -> dict[str, Any]:
    text = tok["signature"]
    assert text.endswith("="), "a 64-byte signature is padded in base64"
    return {**tok, "signature": text.rstrip("=")}


def _signature_bytes(tok: dict[str, Any]) -> bytes:
    return base64.b64decode(tok["signature"])


def _with_signature(tok: dict[str, Any], signature: bytes) -> dict[str, Any]:
    return {**tok, "signature": base64.b64encode(signature).decode()}


def _flip(tok: dict[str, Any]) -> dict[str, Any]:
    sig = bytearray(_signature_bytes(tok))
    sig[len(sig) // 2] ^= 0x01
    return _with_signature(tok, bytes(sig))


def _resize(tok: dict[str, Any], by: int) -> dict[str, Any]:
    sig = _signature_bytes(tok)
    return _with_signature(tok, sig[:by] if by < 0 else sig + b"\x00" * by)


def _der_signature(tok: dict[str, Any], width: int) -> dict[str, Any]:
    sig = _signature_bytes(tok)
    r, s = int.from_bytes(sig[:width], "big"), int.from_bytes(sig[width:], "big")
    return _with_signature(tok, encode_dss_signature(r, s))


def _es512_short(tok: dict[str, Any]) -> dict[str, Any]:
    """r and s cut to their low 64 bytes each: the width a careless port might use."""
    sig = _signature_bytes(tok)
    return _with_signature(tok, sig[2:66] + sig[68:132])


def build() -> dict[str, Any]:
    pki = build_pki()
    cas = pki.cas
    crls = [make_crl(pki.root, [cas["revoked"]]), make_crl(pki.rsa_ca, [pki.people["revoked"]]),
            make_crl(pki.ec_ca, []), make_crl(pki.expired_ca, []),
            *(make_crl(ca, []) for ca in pki.ladder),
            *(make_crl(cas[k], []) for k in ("revoked", "below-path-length-0", "path-length-1",
                                              "under-path-length-1", "no-cert-sign",
                                              "no-key-usage", "under-no-crl",
                                              "unknown-critical")),
            # past its nextUpdate: a portal that forgot to refresh it
            make_crl(cas["stale-crl"], [pki.people["stale-revoked"]],
                     next_update=_t("2031-01-01T00:00:00Z"))]
    return {
        "format": "imza-login-vectors:1",
        "generator": "portal-kit/vectors/generate.py",
        "origin": ORIGIN,
        "challengeLifetimeSeconds": LIFETIME,
        "anchors": [pki.root.b64, pki.cas["anchor-no-cert-sign"].b64,
                    pki.cas["anchor-path-length-0"].b64, pki.cas["nc-root"].b64,
                    pki.cas["nc-anchor"].b64],
        "crls": [base64.b64encode(c).decode() for c in crls],
        "vectors": vectors(pki),
    }


def outline(data: dict[str, Any]) -> list[tuple[str, bool, str | None]]:
    """What stays the same from run to run: names and expected outcomes."""
    return [(v["name"], v["expect"]["valid"], v["expect"].get("error"),
             bool(v.get("requireRevocation"))) for v in data["vectors"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="compare the committed file's names and expectations")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    fresh = build()
    names = [v["name"] for v in fresh["vectors"]]
    assert len(names) == len(set(names)), "vector names must be unique"
    if args.check:
        committed = json.loads(args.output.read_text(encoding="utf-8"))
        if outline(committed) != outline(fresh):
            print(f"{args.output} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        print(f"{args.output}: {len(names)} vectors, up to date")
        return 0
    args.output.write_text(json.dumps(fresh, indent=1, ensure_ascii=False) + "\n",
                           encoding="utf-8")
    print(f"wrote {len(names)} vectors to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
