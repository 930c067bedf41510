"""Pairing certificates with private keys on a PKCS#11 token (pure, no token needed)."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from agent.keystores.base import KeyType
from agent.keystores.pkcs11.pairing import (
    CertObject,
    KeyObject,
    pair_certificates,
    public_key_numbers,
    same_key,
    unwrap_ec_point,
)

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_EC_KEY = ec.generate_private_key(ec.SECP256R1())


def _cert_der(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Əliyev Rəşad")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(Encoding.DER)


RSA_CERT = _cert_der(RSA_KEY)
EC_CERT = _cert_der(EC_KEY)


def _modulus(key: rsa.RSAPrivateKey) -> bytes:
    n = key.public_key().public_numbers().n
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def _point(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def _wrapped(point: bytes) -> bytes:
    return bytes([0x04, len(point)]) + point  # DER OCTET STRING, as CKA_EC_POINT holds it


def test_same_cka_id_pairs_by_id() -> None:
    cert = CertObject(RSA_CERT, b"\x01", "sign")
    private = KeyObject(b"\x01", "RSA", always_authenticate=True)
    [pair] = pair_certificates([cert], [private], [])
    assert (pair.key_id, pair.method, pair.key_type) == (b"\x01", "id", KeyType.RSA)
    assert pair.always_authenticate is True


def test_public_key_object_bridges_a_mismatched_id() -> None:
    cert = CertObject(EC_CERT, b"cert-id")
    decoy = KeyObject(b"decoy", "EC", ec_point=_wrapped(_point(OTHER_EC_KEY)))
    public = KeyObject(b"key-id", "EC", ec_point=_wrapped(_point(EC_KEY)))
    privates = [KeyObject(b"decoy", "EC"), KeyObject(b"key-id", "EC")]
    [pair] = pair_certificates([cert], privates, [decoy, public])
    assert (pair.key_id, pair.method) == (b"key-id", "public-key")


def test_public_key_match_used_while_private_keys_are_hidden() -> None:
    cert = CertObject(EC_CERT, b"cert-id")
    public = KeyObject(b"key-id", "EC", ec_point=_wrapped(_point(EC_KEY)))
    [pair] = pair_certificates([cert], [], [public])
    assert (pair.key_id, pair.method, pair.key_type) == (b"key-id", "public-key", KeyType.EC)


def test_rsa_private_key_found_by_modulus() -> None:
    cert = CertObject(RSA_CERT, b"cert-id")
    private = KeyObject(b"key-id", "RSA", modulus=b"\x00" + _modulus(RSA_KEY))
    [pair] = pair_certificates([cert], [KeyObject(b"other", "RSA", modulus=b"\x05"), private],
                               [])
    assert (pair.key_id, pair.method) == (b"key-id", "public-key")


def test_hidden_private_keys_mean_assumed_id() -> None:
    rsa_cert = CertObject(RSA_CERT, b"\x0a")
    ec_cert = CertObject(EC_CERT, b"\x0b")
    # The public key object has the certificate's own id: still only an assumption.
    public = KeyObject(b"\x0b", "EC", ec_point=_wrapped(_point(EC_KEY)))
    pairs = pair_certificates([rsa_cert, ec_cert], [], [public])
    assert [(p.key_id, p.method, p.key_type) for p in pairs] == [
        (b"\x0a", "assumed-id", KeyType.RSA), (b"\x0b", "assumed-id", KeyType.EC)]


def test_no_key_when_visible_keys_do_not_match() -> None:
    cert = CertObject(EC_CERT, b"cert-id")
    private = KeyObject(b"other-id", "EC")
    public = KeyObject(b"other-id", "EC", ec_point=_wrapped(_point(OTHER_EC_KEY)))
    [pair] = pair_certificates([cert], [private], [public])
    assert (pair.key_id, pair.method) == (None, None)


def test_certificate_without_id_and_hidden_keys_has_no_key() -> None:
    [pair] = pair_certificates([CertObject(RSA_CERT, b"")], [], [])
    assert pair.key_id is None and pair.method is None


def test_garbage_certificate_is_kept_without_key() -> None:
    [pair] = pair_certificates([CertObject(b"not a certificate", b"\x01")],
                               [KeyObject(b"\x01", "RSA")], [])
    assert pair.key_id is None


def test_ec_point_both_encodings() -> None:
    point = _point(EC_KEY)
    assert unwrap_ec_point(_wrapped(point)) == point
    assert unwrap_ec_point(point) == point  # a bare point starts with 0x04 too
    numbers = public_key_numbers(x509.load_der_x509_certificate(EC_CERT))
    assert same_key(KeyObject(b"", "EC", ec_point=point), numbers)
    assert same_key(KeyObject(b"", "EC", ec_point=_wrapped(point)), numbers)
    assert not same_key(KeyObject(b"", "EC", ec_point=_point(OTHER_EC_KEY)), numbers)
