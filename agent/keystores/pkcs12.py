"""PKCS#12 (.p12/.pfx) files as key stores: one file is one token.

Listing never asks for the password.  Certificates inside a PKCS#12 file are usually
encrypted too, so the store remembers them (public data only) after the first successful
unlock, in ``<data dir>/p12-cache/``.  Until then the token says ``needs_unlock`` and
lists what the cache holds, which may be nothing.  A cache entry is named by a hash of
the file's path and records a hash of the file's content: a replaced or removed file
drops it, so the agent never offers a certificate the file no longer holds.

The decrypted private key lives in memory only, from ``login`` until ``logout``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from agent import paths
from agent.errors import (
    InvalidHandle,
    LoginRequired,
    PinIncorrect,
    PinStatus,
    TokenNotPresent,
    Unsupported,
)
from agent.keystores.base import (
    CardEvents,
    CertificateEntry,
    Credential,
    KeyRef,
    KeyType,
    Secret,
    SecretKind,
    SignMechanism,
    StoreKind,
    StoreReport,
    TokenInfo,
    Unlock,
    sign_each,
)
from agent.keystores.mechanisms import (
    check_digest,
    crypto_hash,
    der_to_raw,
    key_type_of,
    scheme_fits_key,
    verify_with_certificate,
)
from agent.protocol.enums import EcdsaEncoding, Scheme

CACHE_DIR_NAME = "p12-cache"
_CACHE_VERSION = 1
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class P12Certificate:
    """One certificate of a PKCS#12 file; ``key_id`` is set when the file holds its key."""

    der: bytes
    label: str
    key_id: str | None
    key_type: KeyType | None


@dataclass(frozen=True)
class P12Contents:
    certificates: tuple[P12Certificate, ...]
    keys: dict[str, PrivateKey]  # key_id → private key; empty when only listing


def key_id_of(cert: x509.Certificate) -> str:
    """A stable local key id: a hash of the public key, so it is the same before and
    after unlocking, and across re-reads of the same file."""
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()[:40]


def common_name(cert: x509.Certificate) -> str | None:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else None
    return value if isinstance(value, str) else None


def _password_candidates(password: bytes) -> list[bytes | None]:
    # An empty password may mean "no password" (NULL) or "empty string"; tools differ.
    return [None, b""] if not password else [password]


def _looks_like_pkcs12(data: bytes) -> bool:
    try:
        pfx = asn1_pkcs12.Pfx.load(data)
        pfx.native  # noqa: B018 - forces a full parse of the outer structure
    except Exception:
        return False
    return True


def decrypt_pkcs12(data: bytes, password: bytes) -> P12Contents:
    """Decrypt a PKCS#12 file and pair its private key with its certificate.

    Raises PinIncorrect (files have no retry counter, so an empty PinStatus) for a wrong
    password and Unsupported for data that is not PKCS#12 at all.
    """
    loaded = None
    for candidate in _password_candidates(password):
        try:
            loaded = pkcs12.load_pkcs12(data, candidate)
            break
        except ValueError:
            continue
    if loaded is None:
        if not _looks_like_pkcs12(data):
            raise Unsupported("the file is not a PKCS#12 file")
        raise PinIncorrect(PinStatus(), "wrong password for the PKCS#12 file")

    all_certs = ([loaded.cert] if loaded.cert else []) + list(loaded.additional_certs)
    key = loaded.key if isinstance(loaded.key, PrivateKey) else None
    key_spki = (key.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
                if key is not None else None)
    entries: list[P12Certificate] = []
    keys: dict[str, PrivateKey] = {}
    for item in all_certs:
        cert = item.certificate
        spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
        label = (item.friendly_name.decode("utf-8", "replace") if item.friendly_name
                 else common_name(cert) or cert.subject.rfc4514_string())
        paired = key is not None and spki == key_spki
        key_id = key_id_of(cert) if paired else None
        if paired and key_id is not None and key is not None:
            keys[key_id] = key
        entries.append(P12Certificate(
            der=cert.public_bytes(serialization.Encoding.DER), label=label, key_id=key_id,
            key_type=key_type_of(cert) if paired else None))
    # Keyed certificates first: they are what a user picks from.
    entries.sort(key=lambda e: e.key_id is None)
    return P12Contents(tuple(entries), keys)


def sign_digest(key: PrivateKey, digest: bytes, mechanism: SignMechanism) -> bytes:
    """Sign a precomputed hash with an in-memory key, with the same mechanisms (and the
    same output encodings) as a token."""
    check_digest(mechanism.hash_algorithm, digest)
    prehashed = Prehashed(crypto_hash(mechanism.hash_algorithm))
    if mechanism.scheme is Scheme.ECDSA:
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise Unsupported("ECDSA needs an EC key")
        der = key.sign(digest, ec.ECDSA(prehashed))
        if mechanism.ecdsa_encoding is EcdsaEncoding.RAW:
            return der_to_raw(der, (key.curve.key_size + 7) // 8)
        return der
    if not isinstance(key, rsa.RSAPrivateKey):
        raise Unsupported(f"{mechanism.scheme.value} needs an RSA key")
    if mechanism.scheme is Scheme.RSA_PSS:
        pad: padding.AsymmetricPadding = padding.PSS(
            mgf=padding.MGF1(crypto_hash(mechanism.hash_algorithm)),
            salt_length=mechanism.hash_algorithm.digest_size)
    else:
        pad = padding.PKCS1v15()
    return key.sign(digest, pad, prehashed)


# --- the certificate cache --------------------------------------------------------------

class CertificateCache:
    """Public certificates of PKCS#12 files, remembered across runs.

    One JSON file per PKCS#12 path (named by a hash of the path) records the hash of the
    content it was read from; entries for other content are stale and are deleted.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self._dir = directory

    @property
    def directory(self) -> Path:
        if self._dir is None:
            self._dir = paths.sub_dir(CACHE_DIR_NAME)
        return self._dir

    def _file(self, p12_path: Path) -> Path:
        name = hashlib.sha256(str(p12_path).encode("utf-8")).hexdigest()[:32]
        return self.directory / f"{name}.json"

    def load(self, p12_path: Path, content_hash: str) -> tuple[P12Certificate, ...] | None:
        file = self._file(p12_path)
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if (data.get("version") != _CACHE_VERSION or data.get("path") != str(p12_path)
                or data.get("contentSha256") != content_hash):
            self.drop(p12_path)
            return None
        try:
            return tuple(
                P12Certificate(der=base64.b64decode(e["der"]), label=e["label"],
                               key_id=e["keyId"],
                               key_type=KeyType(e["keyType"]) if e["keyType"] else None)
                for e in data["entries"])
        except (KeyError, TypeError, ValueError):
            self.drop(p12_path)
            return None

    def store(self, p12_path: Path, content_hash: str,
              entries: tuple[P12Certificate, ...]) -> None:
        data = {
            "version": _CACHE_VERSION, "path": str(p12_path), "contentSha256": content_hash,
            "entries": [{"der": base64.b64encode(e.der).decode("ascii"), "label": e.label,
                         "keyId": e.key_id,
                         "keyType": e.key_type.value if e.key_type else None}
                        for e in entries],
        }
        file = self._file(p12_path)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, ensure_ascii=False)
            os.replace(tmp, file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def drop(self, p12_path: Path) -> None:
        with contextlib.suppress(OSError):
            self._file(p12_path).unlink()


# --- the store --------------------------------------------------------------------------

@dataclass(frozen=True)
class _FileState:
    content_hash: str
    stat_key: tuple[int, int, int]  # (inode, size, mtime_ns): a cheap "did it change?"


def _read_file(path: Path) -> tuple[bytes, _FileState]:
    try:
        data = path.read_bytes()
        st = path.stat()
    except FileNotFoundError as exc:
        raise TokenNotPresent("the PKCS#12 file is not there") from exc
    except OSError as exc:
        # No path in the error: a page may see it (``doctor`` names the file).
        raise TokenNotPresent(f"the PKCS#12 file cannot be read: {exc.strerror}") from exc
    return data, _FileState(hashlib.sha256(data).hexdigest(),
                            (st.st_ino, st.st_size, st.st_mtime_ns))


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class Pkcs12Store:
    """One PKCS#12 file as a key store holding one token.

    The user types the file's password; nothing counts wrong tries, so the file never
    locks (``Unlock.ISSUER`` only names who could help).  Files know no card events.
    """

    kind: StoreKind = StoreKind.PKCS12
    card_events: CardEvents | None = None

    def __init__(self, path: Path, label: str | None = None, *,
                 cache_dir: Path | None = None) -> None:
        self.path = Path(path).expanduser().resolve()
        self.label = label or self.path.name
        self.store_id = "pkcs12:" + hashlib.sha256(
            str(self.path).encode("utf-8")).hexdigest()[:16]
        self._cache = CertificateCache(cache_dir)
        self._lock = asyncio.Lock()
        self._state: _FileState | None = None       # content the entries below came from
        self._entries: tuple[P12Certificate, ...] | None = None
        self._keys: dict[str, PrivateKey] = {}       # only between login and logout

    # -- what a subclass may change

    @property
    def token_id(self) -> str:
        return str(self.path)

    def _token_info(self, needs_unlock: bool) -> TokenInfo:
        return TokenInfo(store_id=self.store_id, token_id=self.token_id, label=self.label,
                         manufacturer="PKCS#12 file", model="PKCS#12", serial="",
                         kind=self.kind, pin=PinStatus(), secret=SecretKind.PASSWORD,
                         unlock=Unlock.ISSUER.value, needs_unlock=needs_unlock)

    async def _fill_without_password(self, data: bytes, state: _FileState) -> None:
        """Learn the certificates without the user: from the on-disk cache."""
        self._entries = self._cache.load(self.path, state.content_hash)

    def _remember(self, state: _FileState, entries: tuple[P12Certificate, ...]) -> None:
        self._cache.store(self.path, state.content_hash, entries)

    # -- state

    def _forget(self, *, drop_cache: bool) -> None:
        self._keys.clear()
        self._entries = None
        self._state = None
        if drop_cache:
            self._cache.drop(self.path)

    async def _refresh(self) -> bool:
        """Bring the listing in line with the file; False when the file is gone."""
        key = _stat_key(self.path)
        if key is None:
            self._forget(drop_cache=True)
            return False
        if self._state is not None and self._state.stat_key == key:
            return True
        try:
            data, state = await asyncio.to_thread(_read_file, self.path)
        except TokenNotPresent:
            self._forget(drop_cache=True)
            return False
        if self._state is not None:
            if self._state.content_hash == state.content_hash:
                self._state = state  # touched, not changed
                return True
            # Replaced: what we knew (and any unlocked key) belongs to the old file.
            self._forget(drop_cache=True)
        self._state = state
        await self._fill_without_password(data, state)
        return True

    def _check_token(self, token_id: str) -> None:
        if token_id != self.token_id:
            raise InvalidHandle("no such token in this store")

    # -- KeyStore

    async def tokens(self) -> list[TokenInfo]:
        async with self._lock:
            if not await self._refresh():
                return []
            return [self._token_info(needs_unlock=self._entries is None and not self._keys)]

    async def certificates(self, token: TokenInfo) -> list[CertificateEntry]:
        self._check_token(token.token_id)
        async with self._lock:
            if not await self._refresh():
                raise TokenNotPresent("the PKCS#12 file is not there")
            info = self._token_info(needs_unlock=self._entries is None and not self._keys)
            return [self._entry(info, e) for e in self._entries or ()]

    def _entry(self, info: TokenInfo, e: P12Certificate) -> CertificateEntry:
        key = (KeyRef(store_id=self.store_id, token_id=info.token_id, key_id=e.key_id,
                      key_type=e.key_type)
               if e.key_id is not None and e.key_type is not None else None)
        return CertificateEntry(der=e.der, token=info, label=e.label, key=key,
                                pairing="public-key" if key else None)

    async def _unlock(self, credential: Credential) -> tuple[_FileState, P12Contents]:
        if not isinstance(credential, Secret):
            raise Unsupported("a PKCS#12 file has no PIN pad")
        data, state = await asyncio.to_thread(_read_file, self.path)
        contents = await asyncio.to_thread(decrypt_pkcs12, data, credential.reveal())
        if self._state is not None and self._state.content_hash != state.content_hash:
            self._forget(drop_cache=True)
        self._state = state
        self._entries = contents.certificates
        # A read-only data dir costs only the listing before the next unlock.
        with contextlib.suppress(OSError):
            self._remember(state, contents.certificates)
        return state, contents

    async def login(self, token: TokenInfo, credential: Credential) -> None:
        self._check_token(token.token_id)
        async with self._lock:
            try:
                _, contents = await self._unlock(credential)
            except TokenNotPresent:
                self._forget(drop_cache=True)
                raise
            self._keys = dict(contents.keys)

    async def logout(self, token: TokenInfo) -> None:
        self._check_token(token.token_id)
        async with self._lock:
            self._keys.clear()

    async def sign(self, key: KeyRef, digest: bytes, mechanism: SignMechanism,
                   credential: Credential | None = None) -> bytes:
        if key.store_id != self.store_id:
            raise InvalidHandle("the key is not in this store")
        self._check_token(key.token_id)
        scheme_fits_key(mechanism.scheme, key.key_type)
        check_digest(mechanism.hash_algorithm, digest)
        async with self._lock:
            current = _stat_key(self.path)
            # A changed file: the key in memory may not be the one the file holds now.
            if (current is None or (self._state is not None
                                    and current != self._state.stat_key)) \
                    and not await self._refresh():
                raise TokenNotPresent("the PKCS#12 file is not there")
            private = self._keys.get(key.key_id)
            if private is None and credential is not None:
                # Per-operation secret: decrypt for this one signature, keep nothing.
                _, contents = await self._unlock(credential)
                private = contents.keys.get(key.key_id)
                if private is None:
                    raise InvalidHandle("the PKCS#12 file no longer holds that key")
            if private is None:
                if self._entries is not None and all(e.key_id != key.key_id
                                                     for e in self._entries):
                    raise InvalidHandle("the PKCS#12 file no longer holds that key")
                raise LoginRequired()
            cert_der = next((e.der for e in self._entries or () if e.key_id == key.key_id),
                            None)
        signature = sign_digest(private, digest, mechanism)
        if cert_der is not None:
            verify_with_certificate(x509.load_der_x509_certificate(cert_der), digest,
                                    signature, mechanism)
        return signature

    async def sign_many(self, key: KeyRef, digests: Sequence[bytes], mechanism: SignMechanism,
                        credential: Credential | None = None) -> list[bytes]:
        return await sign_each(self, key, digests, mechanism, credential)

    async def diagnostics(self) -> StoreReport:
        tokens = await self.tokens()  # never asks for the password
        return StoreReport("pkcs12", {
            "storeId": self.store_id, "path": str(self.path), "label": self.label,
            "exists": self.path.is_file(),
            "needsUnlock": tokens[0].needs_unlock if tokens else None})

    async def close(self) -> None:
        async with self._lock:
            self._keys.clear()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


__all__ = [
    "CertificateCache",
    "P12Certificate",
    "P12Contents",
    "Pkcs12Store",
    "common_name",
    "decrypt_pkcs12",
    "key_id_of",
    "sign_digest",
]
