"""A PKCS#12 file as citizens get them: RSA signing key, its certificate and the chain,
protected with PBES2 (PBKDF2-SHA256, AES-256-CBC) and a SHA-256 MAC."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12

from .pki import Identity, TestPKI

PASSWORD = "p12-şifrə-1"
IDENTITY_NAME = "p12_sign"
COMMON_NAME = "ŞİMŞEK Gülşen"
FILE_NAME = "şimşek-imza.p12"
# Enough PBKDF2 rounds to be a realistic file, few enough that each open stays cheap.
KDF_ROUNDS = 10_000


@dataclass
class Pkcs12Bed:
    path: Path
    password: str
    identity: Identity
    key: rsa.RSAPrivateKey  # test-only: a real agent never sees a key outside the file
    chain: list[x509.Certificate]  # [intermediate, root], also inside the file

    def __repr__(self) -> str:  # no password in assertion output
        return f"Pkcs12Bed(path={self.path!r}, identity={self.identity.name!r})"


def build_pkcs12(tmp: Path, pki: TestPKI) -> Pkcs12Bed:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = pki.issue(IDENTITY_NAME, key.public_key(), purpose="sign", common_name=COMMON_NAME,
                     country="TR", serial_number="TUR-12345678901")
    encryption = (
        PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(KDF_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(PASSWORD.encode("utf-8"))
    )
    blob = pkcs12.serialize_key_and_certificates(
        name=COMMON_NAME.encode("utf-8"), key=key, cert=cert, cas=pki.chain,
        encryption_algorithm=encryption,
    )
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / FILE_NAME
    path.write_bytes(blob)
    path.chmod(0o600)
    return Pkcs12Bed(path=path, password=PASSWORD, identity=pki.identities[IDENTITY_NAME],
                     key=key, chain=list(pki.chain))
