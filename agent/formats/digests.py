"""The digest a signature uses: the page's choice (``digestAlgorithm``) or, by default, one
as strong as the key (issue 14, D6).  Light on purpose: the daemon checks the page's
choice and lists the choices in ``agent.info`` without importing a format library."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

# What sign.pdf and sign.xml accept, by their protocol names → the builders' names.
DIGEST_CHOICES = {"SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}


def default_digest(cert: x509.Certificate) -> str:
    """P-384 → sha384, P-521 → sha512, anything else (P-256, RSA) → sha256: a hash weaker
    than the key would waste the key's strength (ETSI TS 119 312 pairs them so)."""
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.key_size >= 521:
            return "sha512"
        if key.curve.key_size >= 384:
            return "sha384"
    return "sha256"


def digest_for(cert: x509.Certificate, choice: str | None) -> str:
    """The builders' name for the page's ``digestAlgorithm`` (already validated against
    ``DIGEST_CHOICES``), or the key's default."""
    if choice is None:
        return default_digest(cert)
    return DIGEST_CHOICES.get(choice, choice.lower())
