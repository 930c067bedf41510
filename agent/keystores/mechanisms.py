"""Pure helpers shared by every store: DigestInfo, ECDSA encodings, and the final check
that a signature verifies with the certificate it is returned with."""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from agent.errors import CertificateInvalid, InternalError, Unsupported
from agent.keystores.base import KeyType, SignMechanism
from agent.protocol.enums import EcdsaEncoding, HashAlgorithm, Scheme

# DER prefixes of DigestInfo (RFC 8017 §9.2 note 1): the hash value follows each.
_DIGEST_INFO_PREFIX = {
    HashAlgorithm.SHA256: bytes.fromhex("3031300d060960864801650304020105000420"),
    HashAlgorithm.SHA384: bytes.fromhex("3041300d060960864801650304020205000430"),
    HashAlgorithm.SHA512: bytes.fromhex("3051300d060960864801650304020305000440"),
}

_CRYPTO_HASH: dict[HashAlgorithm, type[hashes.HashAlgorithm]] = {
    HashAlgorithm.SHA256: hashes.SHA256,
    HashAlgorithm.SHA384: hashes.SHA384,
    HashAlgorithm.SHA512: hashes.SHA512,
}


def crypto_hash(alg: HashAlgorithm) -> hashes.HashAlgorithm:
    return _CRYPTO_HASH[alg]()


def digest_info(alg: HashAlgorithm, digest: bytes) -> bytes:
    check_digest(alg, digest)
    return _DIGEST_INFO_PREFIX[alg] + digest


def check_digest(alg: HashAlgorithm, digest: bytes) -> None:
    if len(digest) != alg.digest_size:
        raise Unsupported(f"a {alg.value} hash is {alg.digest_size} bytes, got {len(digest)}")


def scheme_fits_key(scheme: Scheme, key_type: KeyType) -> None:
    ok = (key_type is KeyType.EC) == (scheme is Scheme.ECDSA)
    if not ok:
        raise Unsupported(f"{scheme.value} does not work with an {key_type.value} key")


def key_type_of(cert: x509.Certificate) -> KeyType:
    pub = cert.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        return KeyType.RSA
    if isinstance(pub, ec.EllipticCurvePublicKey):
        return KeyType.EC
    raise Unsupported(f"unsupported public key type {type(pub).__name__}")


def raw_to_der(raw: bytes) -> bytes:
    """r‖s (as PKCS#11 CKM_ECDSA returns it) → DER ECDSA-Sig-Value."""
    half = len(raw) // 2
    if len(raw) % 2 or half == 0:
        raise InternalError("malformed ECDSA signature from the token")
    r = int.from_bytes(raw[:half], "big")
    s = int.from_bytes(raw[half:], "big")
    return utils.encode_dss_signature(r, s)


def der_to_raw(der: bytes, size: int) -> bytes:
    r, s = utils.decode_dss_signature(der)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def encode_ecdsa(raw: bytes, encoding: EcdsaEncoding) -> bytes:
    return raw if encoding is EcdsaEncoding.RAW else raw_to_der(raw)


def verify_with_certificate(cert: x509.Certificate, digest: bytes, signature: bytes,
                            mechanism: SignMechanism) -> None:
    """Check the signature against the certificate it will be returned with.

    This is how the agent makes sure "the key behind the handle is still the one with that
    certificate" for every token, including those whose private keys are invisible before
    login: a signature made by any other key never leaves the agent.
    """
    pub = cert.public_key()
    prehashed = utils.Prehashed(crypto_hash(mechanism.hash_algorithm))
    try:
        if mechanism.scheme is Scheme.ECDSA:
            assert isinstance(pub, ec.EllipticCurvePublicKey)
            der = (signature if mechanism.ecdsa_encoding is EcdsaEncoding.DER
                   else raw_to_der(signature))
            pub.verify(der, digest, ec.ECDSA(prehashed))
        elif mechanism.scheme is Scheme.RSA_PSS:
            assert isinstance(pub, rsa.RSAPublicKey)
            pad = padding.PSS(mgf=padding.MGF1(crypto_hash(mechanism.hash_algorithm)),
                              salt_length=mechanism.hash_algorithm.digest_size)
            pub.verify(signature, digest, pad, prehashed)
        else:
            assert isinstance(pub, rsa.RSAPublicKey)
            pub.verify(signature, digest, padding.PKCS1v15(), prehashed)
    except (InvalidSignature, ValueError, AssertionError) as exc:
        raise CertificateInvalid(
            "the key on the token does not match the certificate",
            detail="KEY_MISMATCH") from exc
