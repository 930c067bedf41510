"""What the demo portal's server checks, written the way any relying party would: from
docs/protocol.md alone, with `cryptography`, importing nothing from the agent (a portal
developer may copy this file as it is; tests/test_demo_portal.py holds it to that).

* ``verify_login``: an ``auth.login`` token proves control of an authentication key for
  *this portal's own origin* and the challenge it issued.
  It also checks that the certificate chains to one of the portal's trust anchors and
  is valid now.

The declaration's CAdES signature is checked with pyHanko instead (verify_cms.py).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

_JOSE_HASH: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


class Rejected(Exception):
    """The evidence does not prove what it should; the message is safe to show."""


def b64decode(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise Rejected(f"{what} is missing")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise Rejected(f"{what} is not base64") from None


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _certificate(text: Any, what: str) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(b64decode(text, what))
    except ValueError:
        raise Rejected(f"{what} is not a certificate") from None


def _signed_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def check_chain(cert: x509.Certificate, offered: Sequence[x509.Certificate],
                anchors: Sequence[x509.Certificate], now: dt.datetime | None = None) -> None:
    """A path from ``cert`` through ``offered`` to one of ``anchors``, all valid now.
    (A production portal would also check revocation: OCSP or CRL.)"""
    now = now or dt.datetime.now(dt.UTC)
    path = [cert]
    while True:
        current = path[-1]
        anchor = next((a for a in anchors if a.subject == current.issuer
                       and _signed_by(current, a)), None)
        if anchor is not None:
            path.append(anchor)
            break
        issuer = next((c for c in offered if c not in path and c.subject == current.issuer
                       and _signed_by(current, c)), None)
        if issuer is None or len(path) > 6:
            raise Rejected("the certificate is not issued by a CA this portal trusts")
        path.append(issuer)
    for link in path:
        if not link.not_valid_before_utc <= now <= link.not_valid_after_utc:
            raise Rejected(f"{link.subject.rfc4514_string()} is not valid now")


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def _verify(cert: x509.Certificate, signature: bytes, data: bytes, *, family: str,
            hash_alg: hashes.HashAlgorithm, prehashed: bool, raw_ecdsa: bool) -> None:
    key = cert.public_key()
    algorithm: Any = Prehashed(hash_alg) if prehashed else hash_alg
    try:
        if family in ("RS", "PS"):
            if not isinstance(key, rsa.RSAPublicKey):
                raise Rejected("an RSA signature from a non-RSA certificate")
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15() if family == "RS"
                else padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size))
            key.verify(signature, data, pad, algorithm)
            return
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise Rejected("an ECDSA signature from a non-EC certificate")
        if raw_ecdsa:
            width = (key.curve.key_size + 7) // 8
            if len(signature) != 2 * width:
                raise Rejected("a raw ECDSA signature of the wrong length")
            signature = encode_dss_signature(int.from_bytes(signature[:width], "big"),
                                             int.from_bytes(signature[width:], "big"))
        key.verify(signature, data, ec.ECDSA(algorithm))
    except InvalidSignature:
        raise Rejected("the signature does not verify") from None


def verify_login(token: Any, *, own_origin: str, challenge: str,
                 anchors: Sequence[x509.Certificate]) -> x509.Certificate:
    """Steps 2 and 3 of docs/protocol.md "auth.login" (the caller did step 1: the
    challenge is the one issued to this session, unused and fresh)."""
    if not isinstance(token, dict) or token.get("format") != "imza-auth:1":
        raise Rejected("not an imza-auth:1 token")
    cert = _certificate(token.get("certificate"), "the certificate")
    chain = [_certificate(c, "a chain certificate") for c in token.get("chain") or []]
    check_chain(cert, chain, anchors)
    usage = _key_usage(cert)
    if usage is None or not usage.digital_signature:
        raise Rejected("the certificate is not for authentication")
    algorithm = str(token.get("algorithm", ""))
    family, size = algorithm[:2], algorithm[2:]
    if family not in ("RS", "PS", "ES") or size not in _JOSE_HASH:
        raise Rejected("unknown signature algorithm")
    # The message binds the challenge to OUR origin: a token made for another site fails.
    message = (hashlib.sha256(own_origin.encode("ascii")).digest()
               + hashlib.sha256(b64url_decode(challenge)).digest())
    _verify(cert, b64decode(token.get("signature"), "the signature"), message,
            family=family, hash_alg=_JOSE_HASH[size](), prehashed=False, raw_ecdsa=True)
    return cert


def describe(cert: x509.Certificate) -> dict[str, str]:
    """Name and personal number of the certificate's holder, for the page."""
    def attribute(oid: x509.ObjectIdentifier) -> str:
        values = cert.subject.get_attributes_for_oid(oid)
        return str(values[0].value) if values else ""

    return {"name": attribute(x509.NameOID.COMMON_NAME),
            "serialNumber": attribute(x509.NameOID.SERIAL_NUMBER),
            "issuer": cert.issuer.rfc4514_string()}
