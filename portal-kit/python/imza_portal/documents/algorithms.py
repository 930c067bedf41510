"""The names ``sign.hash`` speaks (``SHA-256``, ``RSASSA-PSS`` …), what they are in CMS,
and the check that the agent's raw signature is the one the prepared attributes need."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

from asn1crypto import algos
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from .errors import SignatureMismatch, UnsupportedAlgorithm

HashName = Literal["SHA-256", "SHA-384", "SHA-512"]
SchemeName = Literal["RSASSA-PKCS1-v1_5", "RSASSA-PSS", "ECDSA"]

HASHES: dict[str, str] = {"SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}
SCHEMES = ("RSASSA-PKCS1-v1_5", "RSASSA-PSS", "ECDSA")
_CRYPTO_HASH: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA-256": hashes.SHA256, "SHA-384": hashes.SHA384, "SHA-512": hashes.SHA512}


def hash_name(value: str) -> HashName:
    if value not in HASHES:
        raise UnsupportedAlgorithm(f"hash algorithm {value!r} is not one of "
                                   f"{', '.join(HASHES)}")
    return cast(HashName, value)


def digest(hash_algorithm: str, data: bytes) -> bytes:
    return hashlib.new(HASHES[hash_name(hash_algorithm)], data).digest()


def key_family(cert: x509.Certificate) -> Literal["RSA", "EC"]:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC"
    raise UnsupportedAlgorithm(f"keys of type {type(key).__name__} are not supported")


def choose_scheme(cert: x509.Certificate, hash_algorithm: HashName, scheme: str | None,
                  offered: Sequence[Mapping[str, Any]] | None) -> SchemeName:
    """The scheme to ask ``sign.hash`` for: the portal's choice, else the key's usual one
    (PKCS#1 v1.5 for RSA, as the agent defaults to). ``offered`` is the ``algorithms``
    list of ``certificates.select``: when given, the pair must be in it, so the portal
    learns now, not after the PIN, that the token cannot do it."""
    family = key_family(cert)
    chosen = scheme or ("ECDSA" if family == "EC" else "RSASSA-PKCS1-v1_5")
    if chosen not in SCHEMES:
        raise UnsupportedAlgorithm(f"signature scheme {chosen!r} is not one of "
                                   f"{', '.join(SCHEMES)}")
    if (chosen == "ECDSA") != (family == "EC"):
        raise UnsupportedAlgorithm(f"{chosen} does not fit the certificate's {family} key")
    if offered is not None and not any(
            a.get("scheme") == chosen and a.get("hash") == hash_algorithm for a in offered):
        raise UnsupportedAlgorithm(f"the token offers no {chosen} with {hash_algorithm} "
                                   "for this key")
    return cast(SchemeName, chosen)


def signature_mechanism(scheme: SchemeName, hash_algorithm: HashName) -> Any:
    """The CMS ``signatureAlgorithm`` for the pair (an asn1crypto SignedDigestAlgorithm).
    PSS parameters are what the agent uses: MGF1 with the same hash, salt as long as the
    hash."""
    md = HASHES[hash_algorithm]
    if scheme == "ECDSA":
        return algos.SignedDigestAlgorithm({"algorithm": f"{md}_ecdsa"})
    if scheme == "RSASSA-PKCS1-v1_5":
        return algos.SignedDigestAlgorithm({"algorithm": f"{md}_rsa"})
    size = _CRYPTO_HASH[hash_algorithm].digest_size
    params = algos.RSASSAPSSParams({
        "hash_algorithm": algos.DigestAlgorithm({"algorithm": md}),
        "mask_gen_algorithm": algos.MaskGenAlgorithm({
            "algorithm": "mgf1",
            "parameters": algos.DigestAlgorithm({"algorithm": md})}),
        "salt_length": size, "trailer_field": "trailer_field_bc"})
    return algos.SignedDigestAlgorithm({"algorithm": "rsassa_pss", "parameters": params})


def placeholder_size(cert: x509.Certificate) -> int:
    """Bytes the signature value will take at most, for sizing the PDF's placeholder."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return (key.key_size + 7) // 8
    if isinstance(key, ec.EllipticCurvePublicKey):
        return 2 * ((key.key_size + 7) // 8) + 9  # DER SEQUENCE{r, s} at its longest
    raise UnsupportedAlgorithm(f"keys of type {type(key).__name__} are not supported")


def check_signature(cert: x509.Certificate, scheme: SchemeName, hash_algorithm: HashName,
                    signed: bytes, signature: bytes) -> None:
    """The raw signature must verify over ``signed`` (the DER signed attributes) with the
    certificate's key, else nothing is assembled: a portal never ships a broken file."""
    key = cert.public_key()
    algorithm = _CRYPTO_HASH[hash_algorithm]()
    try:
        if scheme == "ECDSA":
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise SignatureMismatch("an ECDSA signature from a non-EC certificate")
            key.verify(signature, signed, ec.ECDSA(algorithm))
            return
        if not isinstance(key, rsa.RSAPublicKey):
            raise SignatureMismatch("an RSA signature from a non-RSA certificate")
        pad: padding.AsymmetricPadding = (
            padding.PKCS1v15() if scheme == "RSASSA-PKCS1-v1_5"
            else padding.PSS(mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size))
        key.verify(signature, signed, pad, algorithm)
    except (InvalidSignature, ValueError):
        raise SignatureMismatch("the signature does not verify over the prepared "
                                "attributes with the prepared certificate") from None
