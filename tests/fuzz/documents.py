"""What the document targets share: a throwaway signer and a ``FormatJob`` whose key
stops the build when it is reached (everything before the PIN has then run)."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.formats.anchors import Anchors
from agent.formats.job import FormatJob
from agent.formats.network import NetworkSettings


class ReachedTheKey(Exception):
    """The document was accepted and prepared; the builder asked for the signature."""


async def _stop_at_the_key(digest: bytes, digest_algorithm: str, *,
                           ecdsa_raw: bool = False) -> bytes:
    raise ReachedTheKey()


def _certificate() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fuzz Signer")])
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .sign(key, hashes.SHA256()))


def stopping_job() -> FormatJob:
    """A B-B job (no network) for a fresh self-signed signer."""
    return FormatJob(sign=_stop_at_the_key, certificate=_certificate(), chain=[],
                     anchors=Anchors(), network=NetworkSettings(timeout=5.0), tsa_url=None,
                     document_name="fuzz.xml")
