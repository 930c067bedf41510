"""Which private key goes with which certificate on a PKCS#11 token (pure, no I/O).

Tokens usually give a certificate and its key the same CKA_ID, but not always: some
enrolment tools write the certificate with its own id.  And many tokens hide private
keys (CKA_PRIVATE) until C_Login, while listing must never log in.  So, in order:

1. a visible private key with the certificate's CKA_ID (and its key type)  → "id"
2. a public-key object holding the certificate's public key: its CKA_ID     → "public-key"
   (if private keys are visible, one must carry that id; if none is visible and the
   object's id is the certificate's own, rule 4 names it)
3. a visible RSA private key whose modulus is the certificate's             → "public-key"
4. no private key visible at all: assume the certificate's CKA_ID          → "assumed-id"

``sign`` looks the key up again after login, and the caller verifies every signature
against the certificate, so a wrong guess fails safely.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent.keystores.base import KeyType


@dataclass(frozen=True)
class CertObject:
    der: bytes
    id: bytes
    label: str = ""


@dataclass(frozen=True)
class KeyObject:
    """A private or public key object as listed without login; unreadable fields are None."""

    id: bytes
    key_type: str | None  # "RSA", "EC", or another CKK name
    label: str = ""
    modulus: bytes | None = None
    exponent: bytes | None = None
    ec_point: bytes | None = None  # as stored: often a DER OCTET STRING around the point
    always_authenticate: bool | None = None


@dataclass(frozen=True)
class Pairing:
    cert: CertObject
    key_id: bytes | None
    key_type: KeyType | None
    always_authenticate: bool
    method: str | None  # "id", "public-key", "assumed-id" or None


@dataclass(frozen=True)
class PublicKeyNumbers:
    """The parts of a certificate's key a token object can be compared with."""

    key_type: KeyType | None
    modulus: bytes | None = None
    ec_point: bytes | None = None  # uncompressed X9.62 point


def public_key_numbers(cert: x509.Certificate) -> PublicKeyNumbers:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return PublicKeyNumbers(KeyType.RSA, modulus=int_bytes(key.public_numbers().n))
    if isinstance(key, ec.EllipticCurvePublicKey):
        point = key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return PublicKeyNumbers(KeyType.EC, ec_point=point)
    return PublicKeyNumbers(None)


def int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


def strip_zeros(data: bytes) -> bytes:
    return data.lstrip(b"\x00") or b"\x00"


def unwrap_ec_point(data: bytes) -> bytes:
    """CKA_EC_POINT → the bare X9.62 point (accepts both the DER-wrapped and bare forms).

    A bare uncompressed point also starts with 0x04, so the wrapper is taken off only when
    its length byte(s) account for exactly the rest of the data.
    """
    if len(data) >= 2 and data[0] == 0x04:
        length, offset = data[1], 2
        if length & 0x80:
            count = length & 0x7F
            length, offset = int.from_bytes(data[2:2 + count], "big"), 2 + count
        if len(data) - offset == length and length > 0:
            return data[offset:]
    return data


def same_key(obj: KeyObject, numbers: PublicKeyNumbers) -> bool:
    if numbers.modulus is not None and obj.modulus:
        return strip_zeros(obj.modulus) == strip_zeros(numbers.modulus)
    if numbers.ec_point is not None and obj.ec_point:
        return numbers.ec_point in (obj.ec_point, unwrap_ec_point(obj.ec_point))
    return False


def _key_type(name: str | None) -> KeyType | None:
    try:
        return KeyType(name) if name else None
    except ValueError:
        return None


def _fits(key: KeyObject, numbers: PublicKeyNumbers) -> bool:
    key_type = _key_type(key.key_type)
    return key_type is None or numbers.key_type is None or key_type == numbers.key_type


def pair_certificates(certs: list[CertObject], private_keys: list[KeyObject],
                      public_keys: list[KeyObject]) -> list[Pairing]:
    keys_visible = bool(private_keys)
    by_id = {key.id: key for key in private_keys if key.id}
    return [_pair_one(cert, by_id, private_keys, public_keys, keys_visible) for cert in certs]


def _pair_one(cert: CertObject, by_id: dict[bytes, KeyObject], private_keys: list[KeyObject],
              public_keys: list[KeyObject], keys_visible: bool) -> Pairing:
    try:
        numbers = public_key_numbers(x509.load_der_x509_certificate(cert.der))
    except ValueError:
        return Pairing(cert, None, None, False, None)

    def found(key: KeyObject, method: str) -> Pairing:
        return Pairing(cert, key.id, _key_type(key.key_type) or numbers.key_type,
                       bool(key.always_authenticate), method)

    # A key of another type is not the certificate's, whatever its id says: CACKey 0.7
    # reads every PIV key as RSA, also a P-256 one.
    if cert.id and cert.id in by_id and _fits(by_id[cert.id], numbers):
        return found(by_id[cert.id], "id")
    for public in public_keys:
        if public.id and same_key(public, numbers):
            if public.id in by_id:
                return found(by_id[public.id], "public-key")
            if not keys_visible and public.id != cert.id:
                return Pairing(cert, public.id, numbers.key_type, False, "public-key")
    for private in private_keys:
        if private.id and same_key(private, numbers):
            return found(private, "public-key")
    if not keys_visible and cert.id and numbers.key_type is not None:
        return Pairing(cert, cert.id, numbers.key_type, False, "assumed-id")
    return Pairing(cert, None, numbers.key_type, False, None)
