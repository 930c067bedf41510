"""An independent verifier of `auth.login` tokens, written from docs/protocol.md
("auth.login") the way a relying party's server would — it imports nothing from the agent.

The signed message is ``SHA-256(origin) ‖ SHA-256(decoded challenge)`` (64 bytes), hashed
again and signed as the JOSE ``algorithm`` says: RS* = RSASSA-PKCS1-v1_5, PS* = RSASSA-PSS
(MGF1 with the same hash, salt as long as the hash), ES* = ECDSA with the raw ``r‖s``
signature of JWS.  ``origin`` is the relying party's *own* configured origin.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

TOKEN_FORMAT = "imza-auth:1"
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


class TokenRejected(Exception):
    """The login token does not prove what it should; the message says why."""


def decode_challenge(challenge: str) -> bytes:
    """base64url, ``=`` padding optional."""
    return base64.urlsafe_b64decode(challenge + "=" * (-len(challenge) % 4))


def signed_message(origin: str, challenge: str) -> bytes:
    return (hashlib.sha256(origin.encode("ascii")).digest()
            + hashlib.sha256(decode_challenge(challenge)).digest())


def _verify_signature(cert: x509.Certificate, algorithm: str, signature: bytes,
                      message: bytes) -> None:
    family, size = algorithm[:2], algorithm[2:]
    if size not in _HASHES or family not in ("RS", "PS", "ES"):
        raise TokenRejected(f"unknown algorithm {algorithm!r}")
    hash_alg = _HASHES[size]()
    key = cert.public_key()
    try:
        if family in ("RS", "PS"):
            if not isinstance(key, rsa.RSAPublicKey):
                raise TokenRejected(f"{algorithm} with a non-RSA certificate")
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15() if family == "RS"
                else padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size))
            key.verify(signature, message, pad, hash_alg)
        else:
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise TokenRejected(f"{algorithm} with a non-EC certificate")
            width = (key.curve.key_size + 7) // 8
            if len(signature) != 2 * width:
                raise TokenRejected(f"an {algorithm} signature is raw r||s of {2 * width} "
                                    f"bytes, got {len(signature)}")
            r = int.from_bytes(signature[:width], "big")
            s = int.from_bytes(signature[width:], "big")
            key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hash_alg))
    except InvalidSignature:
        raise TokenRejected("the signature does not verify for this origin and challenge"
                            ) from None


def _issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _verify_chain(cert: x509.Certificate, pool: Sequence[x509.Certificate],
                  root: x509.Certificate, now: dt.datetime) -> None:
    """Build a path from ``cert`` through ``pool`` (the token's chain and the relying
    party's own intermediates) to the trusted ``root``; every link's signature checks and
    every certificate on the path is valid now."""
    current, path = cert, [cert]
    while not _issued_by(current, root):
        issuer = next((c for c in pool if c not in path and c.subject == current.issuer
                       and _issued_by(current, c)), None)
        if issuer is None or len(path) > 8:
            raise TokenRejected(f"no path from {cert.subject.rfc4514_string()} to the "
                                "trusted root")
        path.append(issuer)
        current = issuer
    for link in [*path, root]:
        if not link.not_valid_before_utc <= now <= link.not_valid_after_utc:
            raise TokenRejected(f"{link.subject.rfc4514_string()} is not valid now")


def _has_authentication_usage(cert: x509.Certificate) -> bool:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return bool(usage.digital_signature)


def verify_login_token(token: dict[str, Any], *, origin: str, challenge: str,
                       root: x509.Certificate,
                       intermediates: Sequence[x509.Certificate] = (),
                       now: dt.datetime | None = None) -> x509.Certificate:
    """The relying party's checks (docs/protocol.md, steps 2 and 3; step 1, the challenge
    bookkeeping, is the caller's).  Returns the authenticated certificate or raises
    ``TokenRejected``."""
    if token.get("format") != TOKEN_FORMAT:
        raise TokenRejected(f"format {token.get('format')!r} is not {TOKEN_FORMAT}")
    cert = x509.load_der_x509_certificate(base64.b64decode(token["certificate"], validate=True))
    chain = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True))
             for c in token.get("chain", [])]
    _verify_chain(cert, [*chain, *intermediates], root, now or dt.datetime.now(dt.UTC))
    if not _has_authentication_usage(cert):
        raise TokenRejected("the certificate has no digitalSignature key usage")
    signature = base64.b64decode(token["signature"], validate=True)
    _verify_signature(cert, str(token["algorithm"]), signature,
                      signed_message(origin, challenge))
    return cert
