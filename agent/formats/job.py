"""What a format builder is given besides its document: a way to sign one digest, the
signer's certificate and chain, validation material and the network to reach services.

Builders know nothing of the protocol, the dialogs or the policy: the signing use case
(``agent.app.documents``) builds a ``FormatJob`` and hands it over.  The builders run in
a document worker process (``agent.formats.isolation``); ``sign`` is always called in the
daemon, which owns the dialogs and the token — the worker sends it the digest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cryptography import x509

from agent.formats.anchors import Anchors
from agent.formats.network import NetworkSettings


class DigestSigner(Protocol):
    async def confirm(self) -> None:
        """Show the confirmation + PIN dialog and log in to the token, before the builder
        takes its signing time (D3: the signing-time attribute is the time the user
        signed, not the time the request arrived).  Calling ``__call__`` without it
        confirms first; calling it twice is a no-op."""
        ...

    async def __call__(self, digest: bytes, digest_algorithm: str, *,
                       ecdsa_raw: bool = False) -> bytes:
        """Sign a precomputed hash (``digest_algorithm``: "sha256", "sha384",
        "sha512") with the user's key: DER ECDSA unless ``ecdsa_raw`` (r‖s), PKCS#1 v1.5
        for RSA.  May be called once per job."""
        ...


async def confirm(sign: DigestSigner) -> None:
    """``sign.confirm()``.  A bare coroutine function standing in for the signer (a test's
    or a bench's software key, which has no dialog) has nothing to confirm."""
    confirm_first = getattr(sign, "confirm", None)
    if confirm_first is not None:
        await confirm_first()


@dataclass(frozen=True)
class FormatJob:
    sign: DigestSigner
    certificate: x509.Certificate
    chain: list[x509.Certificate]  # issuers of the signer, issuer first
    anchors: Anchors
    network: NetworkSettings
    tsa_url: str | None            # None unless the level needs a time-stamp
    document_name: str | None = None  # the page's name for the document (XAdES detached URI)


@dataclass(frozen=True)
class KeylessJob:
    """What a job that uses no key is given (``signature.extend``, ``signature.verify``):
    the trust anchors, the network to reach TSA/OCSP/CRL services and, for a level that
    adds a time-stamp, the TSA.  It runs in a document worker like a ``FormatJob``."""

    anchors: Anchors
    network: NetworkSettings
    tsa_url: str | None = None
