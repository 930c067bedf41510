"""An independent verifier of Web eID authentication tokens (format ``web-eid:1.0``),
written from the public Web eID token format specification (web-eid-system-architecture-
doc, docs/web-eid-auth-token-v2-format-spec.md) and the checks its reference validator
makes.  It uses ``cryptography`` only and imports nothing from the agent, so a token it
accepts is one a relying party holding only that specification would accept.

What the specification fixes, and this module checks:

* the token is a JSON object with ``unverifiedCertificate`` (base64 DER), ``algorithm``
  (one of the nine JWA names ES/PS/RS 256/384/512), ``signature`` (base64), ``format``
  (``web-eid:`` and a version whose major number is 1) and ``appVersion`` (a URL naming
  the issuing application); the reference validator takes the token as 100 to 10 000
  characters of JSON and ignores members it does not know;
* the signed value is ``hash(origin) ‖ hash(challenge)``, ``hash`` being the hash of the
  signature algorithm itself (SHA-384 for ES384 …), ``origin`` the relying party's own
  origin and ``challenge`` the nonce **string** it issued, UTF-8 encoded, not decoded;
* the signature is made as the JWA algorithm says over that value: RS* RSASSA-PKCS1-v1_5,
  PS* RSASSA-PSS (MGF1 with the same hash, salt as long as the hash), ES* ECDSA on the
  curve of that size with the fixed-width raw ``r‖s`` signature of JWS;
* the certificate chains to a trusted root, is valid now, has the digitalSignature key
  usage and, when it lists extended key usages, client authentication among them.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID

FORMAT_PREFIX = "web-eid:"
SUPPORTED_MAJOR = 1
TOKEN_MIN_CHARS, TOKEN_MAX_CHARS = 100, 10_000
ALGORITHMS = frozenset(f"{family}{size}" for family in ("ES", "PS", "RS")
                       for size in ("256", "384", "512"))
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
# JWA (RFC 7518 §3.4): each ES algorithm names its curve, not only its hash.
_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}
_VERSION = re.compile(r"(\d+)\.(\d+)")


class TokenRejected(Exception):
    """The token does not authenticate anyone for this origin and challenge."""


def _b64(value: object, name: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise TokenRejected(f"'{name}' is missing or not a non-empty string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise TokenRejected(f"'{name}' is not standard base64") from None


def parse_token(token: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(token, str):
        if not TOKEN_MIN_CHARS <= len(token) <= TOKEN_MAX_CHARS:
            raise TokenRejected(f"a token is {TOKEN_MIN_CHARS} to {TOKEN_MAX_CHARS} characters")
        try:
            token = json.loads(token)
        except json.JSONDecodeError:
            raise TokenRejected("the token is not JSON") from None
    if not isinstance(token, Mapping):
        raise TokenRejected("the token is not a JSON object")
    return dict(token)


def _check_format(value: object) -> None:
    if not isinstance(value, str) or not value.startswith(FORMAT_PREFIX):
        raise TokenRejected(f"format {value!r} is not a {FORMAT_PREFIX} format")
    version = _VERSION.fullmatch(value[len(FORMAT_PREFIX):])
    if version is None or int(version.group(1)) != SUPPORTED_MAJOR:
        raise TokenRejected(f"format {value!r}: only major version {SUPPORTED_MAJOR}")


def _check_app_version(value: object) -> None:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise TokenRejected("'appVersion' is not a URL")


def signed_value(origin: str, challenge: str, algorithm: str) -> bytes:
    """``hash(origin) ‖ hash(challenge)`` with the algorithm's own hash."""
    def digest(data: bytes) -> bytes:
        h = hashes.Hash(_HASHES[algorithm[2:]]())
        h.update(data)
        return h.finalize()
    return digest(origin.encode("utf-8")) + digest(challenge.encode("utf-8"))


def _verify_signature(cert: x509.Certificate, algorithm: str, signature: bytes,
                      value: bytes) -> None:
    hash_alg = _HASHES[algorithm[2:]]()
    key = cert.public_key()
    try:
        if algorithm[:2] in ("RS", "PS"):
            if not isinstance(key, rsa.RSAPublicKey):
                raise TokenRejected(f"{algorithm} with a non-RSA certificate")
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15() if algorithm[:2] == "RS"
                else padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size))
            key.verify(signature, value, pad, hash_alg)
            return
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
                key.curve, _CURVES[algorithm]):
            raise TokenRejected(f"{algorithm} needs a key on {_CURVES[algorithm].name}")
        width = (key.curve.key_size + 7) // 8
        if len(signature) != 2 * width:
            raise TokenRejected(f"an {algorithm} signature is r||s of {2 * width} bytes, "
                                f"got {len(signature)}")
        r = int.from_bytes(signature[:width], "big")
        s = int.from_bytes(signature[width:], "big")
        key.verify(encode_dss_signature(r, s), value, ec.ECDSA(hash_alg))
    except InvalidSignature:
        raise TokenRejected("the signature does not verify for this origin and challenge"
                            ) from None


def _issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _verify_chain(cert: x509.Certificate, intermediates: Sequence[x509.Certificate],
                  roots: Sequence[x509.Certificate], now: dt.datetime) -> None:
    """A path from ``cert`` through the relying party's intermediates (the token carries
    none) to one of its roots, every certificate on it valid now."""
    current, path = cert, [cert]
    while True:
        root = next((r for r in roots if _issued_by(current, r)), None)
        if root is not None:
            path.append(root)
            break
        issuer = next((c for c in intermediates if c not in path
                       and c.subject == current.issuer and _issued_by(current, c)), None)
        if issuer is None or len(path) > 8:
            raise TokenRejected("the certificate does not chain to a trusted root")
        path.append(issuer)
        current = issuer
    for link in path:
        if not link.not_valid_before_utc <= now <= link.not_valid_after_utc:
            raise TokenRejected(f"{link.subject.rfc4514_string()} is not valid now")


def _check_purpose(cert: x509.Certificate) -> None:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise TokenRejected("the certificate has no key usage") from None
    if not usage.digital_signature:
        raise TokenRejected("the certificate's key usage lacks digitalSignature")
    try:
        extended = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return  # digitalSignature alone: an authentication certificate
    if ExtendedKeyUsageOID.CLIENT_AUTH not in list(extended):
        raise TokenRejected("the certificate is not for client authentication")


def verify_web_eid_token(token: str | Mapping[str, Any], *, origin: str, challenge: str,
                         roots: Sequence[x509.Certificate],
                         intermediates: Sequence[x509.Certificate] = (),
                         now: dt.datetime | None = None) -> x509.Certificate:
    """Check ``token`` (its JSON text or the parsed object) against the relying party's own
    ``origin`` and the ``challenge`` it issued to this session; return the authenticated
    certificate or raise ``TokenRejected``.  Keeping challenges single-use and fresh is the
    caller's part."""
    fields = parse_token(token)
    _check_format(fields.get("format"))
    algorithm = fields.get("algorithm")
    if algorithm not in ALGORITHMS:
        raise TokenRejected(f"algorithm {algorithm!r} is not one of {sorted(ALGORITHMS)}")
    _check_app_version(fields.get("appVersion"))
    try:
        cert = x509.load_der_x509_certificate(
            _b64(fields.get("unverifiedCertificate"), "unverifiedCertificate"))
    except ValueError as exc:
        raise TokenRejected(f"'unverifiedCertificate' is not a certificate: {exc}") from None
    signature = _b64(fields.get("signature"), "signature")
    _check_purpose(cert)
    _verify_chain(cert, intermediates, roots, now or dt.datetime.now(dt.UTC))
    _verify_signature(cert, str(algorithm), signature,
                      signed_value(origin, challenge, str(algorithm)))
    return cert
