"""Verify an ``auth.login`` token (``imza-auth:1``, docs/protocol.md) on the portal's
server, in the order portal-kit/vectors/SCHEMA.md fixes, so every verifier of the kit gives
the same error for the same token.

    store = ChallengeStore()
    verifier = LoginVerifier("https://portal.example.az", anchors=[root_certificate])
    challenge = store.issue(session_id)          # send it to the page
    login = verifier.verify(token, challenge=challenge, store=store, session=session_id)
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .certpath import build_path, check_authentication_usage, check_validity
from .challenges import ChallengeBackend, ChallengeStore, decode_challenge
from .clock import Clock, system_clock
from .errors import ErrorCode, LoginError
from .revocation import OcspTransport, Status, crl_status, http_post, ocsp_status

__all__ = ["ChallengeBackend", "ChallengeStore", "ErrorCode", "LoginError", "LoginVerifier",
           "VerifiedLogin", "signed_message"]

TOKEN_FORMAT = "imza-auth:1"
# Bounds a page cannot make the verifier work past (SCHEMA.md): chain members, and the
# characters of the token's strings (format, certificate, algorithm, signature, chain).
MAX_CHAIN = 16
MAX_TOKEN_CHARS = 256 * 1024
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
# JOSE (RFC 7518 3.4): each ES algorithm has its own curve.
_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")


@dataclass(frozen=True)
class VerifiedLogin:
    """Who logged in: map ``subject`` (or its serialNumber attribute) to the portal's user."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # the verified path after the certificate
    subject: str  # RFC 4514
    serial_number: int
    issuer: str  # RFC 4514
    sha256: str  # lowercase hex fingerprint of the certificate's DER

    @property
    def subject_serial_number(self) -> str | None:
        """The subject's serialNumber attribute (2.5.4.5): often a personal ID number."""
        values = self.certificate.subject.get_attributes_for_oid(
            x509.NameOID.SERIAL_NUMBER)
        return str(values[0].value) if values else None


def signed_message(origin: str, challenge: str) -> bytes:
    """``SHA-256(origin) || SHA-256(decoded challenge)``: the 64 bytes the agent signs."""
    return (hashlib.sha256(origin.encode("ascii")).digest()
            + hashlib.sha256(decode_challenge(challenge)).digest())


class LoginVerifier:
    """``origin``: this portal's own origin (``https://host[:port]``), never a value from
    the request. ``anchors``: trusted root (or intermediate) certificates. ``crls``:
    revocation lists of the issuers (refresh them; build a new verifier). ``ocsp``: True to
    ask the OCSP responder in each certificate, or an ``OcspTransport`` to do the asking.
    ``require_revocation``: refuse (REVOCATION_UNKNOWN) when neither gives a status."""

    def __init__(self, origin: str, anchors: Sequence[x509.Certificate],
                 crls: Sequence[x509.CertificateRevocationList] = (),
                 ocsp: bool | OcspTransport = False, clock: Clock | None = None,
                 *, require_revocation: bool = False) -> None:
        if not anchors:
            raise ValueError("a LoginVerifier needs at least one trust anchor")
        self.origin = origin
        self.anchors = tuple(anchors)
        self.crls = tuple(crls)
        self._ocsp: OcspTransport | None = (
            http_post if ocsp is True else None if ocsp is False else ocsp)
        self._clock = clock or system_clock
        self.require_revocation = require_revocation

    def verify(self, token: Any, *, challenge: str, store: ChallengeBackend,
               session: str = "") -> VerifiedLogin:
        """``token``: the JSON value the page posted; ``challenge``: the one this session
        was issued (from the server's session, not from the request)."""
        cert, chain, algorithm, signature = _parse(token)
        store.consume(challenge, session)
        _check_algorithm(algorithm, cert)
        _check_signature(cert, algorithm, signature, signed_message(self.origin, challenge))
        path = build_path(cert, chain, self.anchors)
        now = self._clock()
        check_validity(path, now)
        check_authentication_usage(cert)
        self._check_revocation(path, now)
        return VerifiedLogin(
            certificate=cert, chain=tuple(path[1:]), subject=cert.subject.rfc4514_string(),
            serial_number=cert.serial_number, issuer=cert.issuer.rfc4514_string(),
            sha256=hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest())

    def _check_revocation(self, path: Sequence[x509.Certificate], now: dt.datetime) -> None:
        """A configured CRL that lists any certificate on the path (a revoked intermediate
        CA included) refuses the login; the status the portal may require is the end
        entity's."""
        statuses = [crl_status(child, issuer, self.crls, now)
                    for child, issuer in itertools.pairwise(path)]
        if Status.REVOKED in statuses:
            raise LoginError(ErrorCode.CERT_REVOKED, "the certificate is revoked" if
                             statuses[0] is Status.REVOKED else "an issuing CA is revoked")
        cert = path[0]
        # a path of one: the certificate is itself an anchor (pinned); nobody to ask.
        issuer = path[1] if len(path) > 1 else None
        status = statuses[0] if statuses else Status.UNKNOWN
        if issuer is not None and self._ocsp is not None:
            online = ocsp_status(cert, issuer, now, self._ocsp)
            if online is not Status.UNKNOWN:
                status = online
        if status is Status.REVOKED:
            raise LoginError(ErrorCode.CERT_REVOKED, "the certificate is revoked")
        if status is Status.UNKNOWN and self.require_revocation:
            raise LoginError(ErrorCode.REVOCATION_UNKNOWN,
                             "no revocation status could be had for the certificate")


# --- the token's fields -------------------------------------------------------------------

def _b64(value: str, what: str) -> bytes:
    """Standard base64 with padding (RFC 4648 section 4), nothing else."""
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise LoginError(ErrorCode.MALFORMED, f"{what} is not base64") from None


def _certificate(value: str, what: str) -> x509.Certificate:
    der = _b64(value, what)
    try:
        cert = x509.load_der_x509_certificate(der)
        # cryptography parses extensions on first use: touch them here, so a broken
        # extension is MALFORMED now (as in Java and Node), not a ValueError mid-path.
        _ = cert.extensions
    except ValueError:
        raise LoginError(ErrorCode.MALFORMED, f"{what} is not a DER certificate") from None
    return cert


def _parse(token: Any) -> tuple[x509.Certificate, list[x509.Certificate], str, bytes]:
    if not isinstance(token, dict):
        raise LoginError(ErrorCode.MALFORMED, "the token is not a JSON object")
    for name in ("format", "certificate", "algorithm", "signature"):
        if not isinstance(token.get(name), str):
            raise LoginError(ErrorCode.MALFORMED, f"the token's {name} is missing or not text")
    raw_chain = token.get("chain", [])
    if not isinstance(raw_chain, list) or not all(isinstance(c, str) for c in raw_chain):
        raise LoginError(ErrorCode.MALFORMED, "the token's chain is not a list of text")
    if len(raw_chain) > MAX_CHAIN:
        raise LoginError(ErrorCode.MALFORMED, f"the token's chain has more than {MAX_CHAIN} "
                         "certificates")
    texts = [token[n] for n in ("format", "certificate", "algorithm", "signature")]
    if sum(len(text) for text in [*texts, *raw_chain]) > MAX_TOKEN_CHARS:
        raise LoginError(ErrorCode.MALFORMED, f"the token is larger than {MAX_TOKEN_CHARS} "
                         "characters")
    cert = _certificate(token["certificate"], "the certificate")
    chain = [_certificate(c, f"chain[{i}]") for i, c in enumerate(raw_chain)]
    signature = _b64(token["signature"], "the signature")
    if token["format"] != TOKEN_FORMAT:
        raise LoginError(ErrorCode.UNSUPPORTED_FORMAT,
                         f"the token's format is not {TOKEN_FORMAT}")
    return cert, chain, token["algorithm"], signature


# --- the signature ------------------------------------------------------------------------

def _check_algorithm(algorithm: str, cert: x509.Certificate) -> None:
    if algorithm not in ALGORITHMS:
        raise LoginError(ErrorCode.ALGORITHM_MISMATCH, f"unknown algorithm {algorithm!r}")
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):  # a key type no algorithm here fits
        raise LoginError(ErrorCode.ALGORITHM_MISMATCH,
                         f"{algorithm} does not fit the certificate's key") from None
    if algorithm[:2] in ("RS", "PS"):
        if not isinstance(key, rsa.RSAPublicKey):
            raise LoginError(ErrorCode.ALGORITHM_MISMATCH,
                             f"{algorithm} needs an RSA certificate")
    elif not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != _CURVES[algorithm]:
        raise LoginError(ErrorCode.ALGORITHM_MISMATCH,
                         f"{algorithm} needs a {_CURVES[algorithm]} certificate")


def _check_signature(cert: x509.Certificate, algorithm: str, signature: bytes,
                     message: bytes) -> None:
    hash_algorithm = _HASHES[algorithm[2:]]()
    key = cert.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15() if algorithm.startswith("RS") else padding.PSS(
                    mgf=padding.MGF1(hash_algorithm), salt_length=hash_algorithm.digest_size))
            key.verify(signature, message, pad, hash_algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            width = (key.curve.key_size + 7) // 8
            if len(signature) != 2 * width:
                raise InvalidSignature
            r = int.from_bytes(signature[:width], "big")
            s = int.from_bytes(signature[width:], "big")
            key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hash_algorithm))
        else:  # _check_algorithm let only RSA and EC keys through
            raise InvalidSignature
    except InvalidSignature:
        raise LoginError(ErrorCode.SIGNATURE_INVALID,
                         "the signature does not verify for this origin and challenge"
                         ) from None
