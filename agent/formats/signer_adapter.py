"""The one door from the format libraries to the user's key.

pyHanko and signxml want to "sign bytes" whenever they like; the agent must show exactly
one confirmation + PIN dialog per request.  ``KeyAccess`` hands out one signature per
request through ``AgentCore.sign_digests`` and refuses a second, so a library that
signed twice would fail loudly instead of asking the user again.  Size estimates
(pyHanko's ``dry_run``) get a placeholder and never reach the key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pyhanko.sign.signers.pdf_cms import Signer
from pyhanko_certvalidator.registry import SimpleCertificateStore

from agent.app.core import AgentCore, Display
from agent.errors import InternalError, Unsupported
from agent.keystores.base import CertificateEntry, EcdsaEncoding, HashAlgorithm
from agent.protocol.dispatch import CallContext

# pyHanko's digest names ↔ the agent's.
HASH_BY_NAME = {"sha256": HashAlgorithm.SHA256, "sha384": HashAlgorithm.SHA384,
                "sha512": HashAlgorithm.SHA512}
NAME_BY_HASH = {v: k for k, v in HASH_BY_NAME.items()}


@dataclass
class KeyAccess:
    """One request's single use of the key behind a handle."""

    ctx: CallContext
    core: AgentCore
    entry: CertificateEntry
    display: Display
    action: str = "sign"
    digests: list[bytes] = field(default_factory=list)  # what was signed, for the journal

    async def sign_digest(self, digest: bytes, hash_alg: HashAlgorithm,
                          encoding: EcdsaEncoding = EcdsaEncoding.DER) -> bytes:
        if self.digests:
            raise InternalError("the format asked for a second signature in one request")
        self.digests.append(digest)
        mechanism = self.core.mechanism_for(self.entry, None, hash_alg, encoding)
        [signature] = await self.core.sign_digests(self.ctx, self.entry, self.action,
                                                   [digest], mechanism, self.display)
        return signature

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.entry.der)


def hash_for_name(name: str) -> HashAlgorithm:
    try:
        return HASH_BY_NAME[name.lower()]
    except KeyError:
        raise Unsupported(f"digest algorithm {name} is not supported") from None


def placeholder_signature(cert: x509.Certificate) -> bytes:
    """Bytes as long as the longest real signature of this key, for size estimates."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return bytes((key.key_size + 7) // 8)
    if isinstance(key, ec.EllipticCurvePublicKey):
        coordinate = (key.key_size + 7) // 8
        body = 2 * (2 + coordinate + 1)  # two INTEGERs, each maybe with a leading zero
        return bytes(body + (2 if body < 128 else 3))
    raise Unsupported("only RSA and EC keys can sign")


class CoreSigner(Signer):
    """A pyHanko CMS signer whose raw signature comes from ``KeyAccess``.

    pyHanko passes the DER of the signed attributes; we hash them with the requested
    digest and have the token sign that hash."""

    def __init__(self, access: KeyAccess, chain: list[x509.Certificate]) -> None:
        def to_asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
            from cryptography.hazmat.primitives.serialization import Encoding

            return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))

        super().__init__(
            signing_cert=asn1_x509.Certificate.load(access.entry.der),
            cert_registry=SimpleCertificateStore.from_certs([to_asn1(c) for c in chain]),
            embed_roots=True)
        self.access = access
        self._placeholder = placeholder_signature(access.certificate)

    async def async_sign_raw(self, data: bytes, digest_algorithm: str,
                             dry_run: bool = False) -> bytes:
        if dry_run:
            return self._placeholder
        hash_alg = hash_for_name(digest_algorithm)
        digest = hashlib.new(NAME_BY_HASH[hash_alg], data).digest()
        return await self.access.sign_digest(digest, hash_alg)


def describe(value: Any) -> str:
    """A short, secret-free name for an exception, for logs."""
    return type(value).__name__
