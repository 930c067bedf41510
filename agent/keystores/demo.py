"""The demo identity: lets a user with no token try a portal end to end.

Created once in the user data dir (``<data dir>/demo/``) and reused afterwards:

* ``demo-root-ca.pem``  — "imza-agent DEMO Root CA — not trusted" (certificate only);
* ``demo-sign.p12``     — signing certificate (nonRepudiation), RSA-2048;
* ``demo-auth.p12``     — authentication certificate (clientAuth), EC P-256.

Both files hold the holder "DEMO Vətəndaş — imza-agent" and are protected with the
documented demo PIN ``0000`` (``DEMO_PIN``).  This is not a secret: the identity is
worthless outside a demo, and every dialog marks the token as DEMO (``TokenInfo.demo``).
Two files because a PKCS#12 file carries one private key in practice (and in
``cryptography``); the demo store shows both as one token.

The demo CA's private key is generated, used to issue the two certificates and then
dropped: it is never written to disk.  Nothing needs to issue again (a new identity gets a
new CA), and a kept key would let anything reading the data dir mint certificates under a
CA that someone may have imported while trying the demo.

Creation is atomic: everything is written into a temporary directory next to ``demo/``
and renamed into place, so a crash or a second process never leaves half an identity.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.errors import InvalidHandle, PinIncorrect, PinStatus, Unsupported
from agent.keystores.base import (
    CardEvents,
    CertificateEntry,
    Credential,
    KeyRef,
    Secret,
    SecretKind,
    SignMechanism,
    StoreKind,
    StoreReport,
    TokenInfo,
    Unlock,
    sign_each,
)
from agent.keystores.pkcs12 import P12Certificate, Pkcs12Store, _FileState, decrypt_pkcs12

DEMO_PIN = "0000"
DEMO_DIR_NAME = "demo"
DEMO_STORE_ID = "demo"
DEMO_TOKEN_ID = "demo"
DEMO_TOKEN_LABEL = "DEMO Vətəndaş — imza-agent"
DEMO_HOLDER = "DEMO Vətəndaş — imza-agent"
DEMO_CA_NAME = "imza-agent DEMO Root CA — not trusted"
DEMO_ORGANIZATION = "imza-agent DEMO (not a real identity)"
CA_FILE, SIGN_FILE, AUTH_FILE = "demo-root-ca.pem", "demo-sign.p12", "demo-auth.p12"
VALIDITY = dt.timedelta(days=5 * 365)
RENEW_BEFORE = dt.timedelta(days=1)
# Few KDF rounds: the password is public anyway, and the demo store opens the files to
# list them without asking.
_KDF_ROUNDS = 2_000


@dataclass(frozen=True)
class DemoIdentity:
    p12_path: Path        # the signing identity (nonRepudiation)
    auth_p12_path: Path   # the authentication identity (clientAuth)
    ca_cert_path: Path
    password: str = field(default=DEMO_PIN, repr=False)

    @property
    def p12_paths(self) -> tuple[Path, Path]:
        return (self.p12_path, self.auth_p12_path)


def _identity_in(directory: Path) -> DemoIdentity:
    return DemoIdentity(p12_path=directory / SIGN_FILE, auth_p12_path=directory / AUTH_FILE,
                        ca_cert_path=directory / CA_FILE)


def _is_usable(directory: Path, now: dt.datetime) -> bool:
    ident = _identity_in(directory)
    if not all(p.is_file() for p in (*ident.p12_paths, ident.ca_cert_path)):
        return False
    try:
        ca = x509.load_pem_x509_certificate(ident.ca_cert_path.read_bytes())
    except (OSError, ValueError):
        return False
    # Issued together with the same validity, so the CA's end is the identity's end.
    return ca.not_valid_after_utc - RENEW_BEFORE > now


def ensure_demo_identity(data_dir: Path) -> DemoIdentity:
    """The demo identity in ``data_dir``, created on first use and reused afterwards
    (renewed only once it is about to expire)."""
    target = data_dir / DEMO_DIR_NAME
    now = dt.datetime.now(dt.UTC)
    if _is_usable(target, now):
        return _identity_in(target)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = Path(tempfile.mkdtemp(prefix=".demo-new-", dir=data_dir))
    try:
        _write_identity(staging, now)
        if target.exists():
            # Incomplete or expired: move it aside first; rename alone cannot replace a
            # non-empty directory.
            retired = Path(tempfile.mkdtemp(prefix=".demo-old-", dir=data_dir))
            with contextlib.suppress(OSError):
                os.replace(target, retired / DEMO_DIR_NAME)
            shutil.rmtree(retired, ignore_errors=True)
        try:
            os.rename(staging, target)
        except OSError:
            # Another process created it in the meantime: use theirs.
            if not _is_usable(target, now):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _identity_in(target)


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "AZ"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, DEMO_ORGANIZATION),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _key_usage(*, sign: bool, content: bool, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign, content_commitment=content, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
        crl_sign=cert_sign, encipher_only=False, decipher_only=False)


def _write_identity(directory: Path, now: dt.datetime) -> None:
    start, end = now - dt.timedelta(hours=1), now + VALIDITY
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(DEMO_CA_NAME)
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(sign=False, content=False, cert_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def issue(public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, *, signing: bool,
              ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(DEMO_HOLDER)).issuer_name(ca_name).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(sign=True, content=signing, cert_sign=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                ca_ski), critical=False)
        )
        if not signing:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        return builder.sign(ca_key, hashes.SHA256())

    encryption = (PrivateFormat.PKCS12.encryption_builder()
                  .kdf_rounds(_KDF_ROUNDS)
                  .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
                  .hmac_hash(hashes.SHA256())
                  .build(DEMO_PIN.encode("utf-8")))
    sign_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    auth_key = ec.generate_private_key(ec.SECP256R1())
    for file_name, key, signing, friendly in (
            (SIGN_FILE, sign_key, True, f"{DEMO_HOLDER} (imza / signing)"),
            (AUTH_FILE, auth_key, False, f"{DEMO_HOLDER} (giriş / authentication)")):
        cert = issue(key.public_key(), signing=signing)
        blob = pkcs12.serialize_key_and_certificates(
            name=friendly.encode("utf-8"), key=key, cert=cert, cas=[ca_cert],
            encryption_algorithm=encryption)
        _write_private(directory / file_name, blob)
    _write_private(directory / CA_FILE, ca_cert.public_bytes(serialization.Encoding.PEM))
    # ca_key goes out of scope here, never stored: see the module docstring.


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


# --- the store --------------------------------------------------------------------------

class _DemoFile(Pkcs12Store):
    """One demo .p12: listable without asking, since its password is public."""

    async def _fill_without_password(self, data: bytes, state: _FileState) -> None:
        contents = await asyncio.to_thread(decrypt_pkcs12, data, DEMO_PIN.encode("utf-8"))
        self._entries = contents.certificates  # keys dropped: they wait for login

    def _remember(self, state: _FileState, entries: tuple[P12Certificate, ...]) -> None:
        pass  # nothing to cache: the files can always be listed


class DemoStore:
    """The demo identity as one token of two certificates; ``TokenInfo.demo`` is set.

    Login still asks for the (documented) demo PIN, so the user sees the real flow: a PIN,
    as on a token, though the files underneath take it as their password.  It never locks.
    """

    kind: StoreKind = StoreKind.DEMO
    store_id: str = DEMO_STORE_ID
    card_events: CardEvents | None = None

    def __init__(self, identity: DemoIdentity) -> None:
        self.identity = identity
        self._files = [_DemoFile(p, cache_dir=p.parent) for p in identity.p12_paths]

    def _token(self) -> TokenInfo:
        return TokenInfo(store_id=self.store_id, token_id=DEMO_TOKEN_ID,
                         label=DEMO_TOKEN_LABEL, manufacturer="imza-agent (DEMO)",
                         model="DEMO PKCS#12", serial="DEMO", kind=self.kind,
                         pin=PinStatus(min_length=len(DEMO_PIN), max_length=len(DEMO_PIN)),
                         secret=SecretKind.PIN, unlock=Unlock.ISSUER.value, demo=True)

    @staticmethod
    def _check(token_id: str) -> None:
        if token_id != DEMO_TOKEN_ID:
            raise InvalidHandle("no such token in the demo store")

    async def tokens(self) -> list[TokenInfo]:
        for f in self._files:
            if not await f.tokens():
                return []
        return [self._token()]

    async def certificates(self, token: TokenInfo) -> list[CertificateEntry]:
        self._check(token.token_id)
        info = self._token()
        out: list[CertificateEntry] = []
        for f in self._files:
            for inner in await f.tokens():
                out.extend(self._rewrap(info, e) for e in await f.certificates(inner))
        # The CA appears in both files: list it once.
        seen: set[bytes] = set()
        unique = []
        for e in out:
            digest = hashlib.sha256(e.der).digest()
            if digest not in seen:
                seen.add(digest)
                unique.append(e)
        return unique

    def _rewrap(self, info: TokenInfo, e: CertificateEntry) -> CertificateEntry:
        key = (KeyRef(store_id=self.store_id, token_id=DEMO_TOKEN_ID, key_id=e.key.key_id,
                      key_type=e.key.key_type)
               if e.key else None)
        return CertificateEntry(der=e.der, token=info, label=e.label, key=key,
                                pairing=e.pairing)

    @staticmethod
    def _check_pin(credential: Credential) -> None:
        if not isinstance(credential, Secret):
            raise Unsupported("the demo token has no PIN pad")
        if credential.reveal() != DEMO_PIN.encode("utf-8"):
            raise PinIncorrect(PinStatus(min_length=len(DEMO_PIN),
                                         max_length=len(DEMO_PIN)))

    async def login(self, token: TokenInfo, credential: Credential) -> None:
        self._check(token.token_id)
        self._check_pin(credential)
        for f in self._files:
            for inner in await f.tokens():
                await f.login(inner, credential)

    async def logout(self, token: TokenInfo) -> None:
        self._check(token.token_id)
        for f in self._files:
            for inner in await f.tokens():
                await f.logout(inner)

    async def sign(self, key: KeyRef, digest: bytes, mechanism: SignMechanism,
                   credential: Credential | None = None) -> bytes:
        if key.store_id != self.store_id:
            raise InvalidHandle("the key is not in the demo store")
        self._check(key.token_id)
        if credential is not None:
            self._check_pin(credential)
        for f in self._files:
            for inner in await f.tokens():
                for e in await f.certificates(inner):
                    if e.key is not None and e.key.key_id == key.key_id:
                        return await f.sign(e.key, digest, mechanism, credential)
        raise InvalidHandle("the demo identity has no such key")

    async def sign_many(self, key: KeyRef, digests: Sequence[bytes], mechanism: SignMechanism,
                        credential: Credential | None = None) -> list[bytes]:
        return await sign_each(self, key, digests, mechanism, credential)

    async def diagnostics(self) -> StoreReport:
        return StoreReport("demo", {"directory": str(self.identity.p12_path.parent),
                                    "caCertificate": str(self.identity.ca_cert_path)})

    async def close(self) -> None:
        for f in self._files:
            await f.close()

    def __repr__(self) -> str:
        return f"DemoStore({str(self.identity.p12_path.parent)!r})"
