"""The current user's personal certificate store ("MY") as a key store, through CNG.

Several vendors ship only a smart-card minidriver (no PKCS#11 module): Windows then shows
the card's certificates in the user's "MY" store and reaches the keys through the Smart
Card Key Storage Provider. This store lists the certificates of "MY" whose private key CNG
can open without any UI (``CRYPT_ACQUIRE_SILENT_FLAG``), and signs a precomputed hash with
``NCryptSignHash``.

The PIN. Left alone, the minidriver shows its own PIN prompt: in English only, without the
origin or the document the agent shows, and outside the agent's attempt counting. So the
agent asks with its own dialog and hands the PIN to the key with
``NCryptSetProperty(NCRYPT_PIN_PROPERTY)``, then signs with ``NCRYPT_SILENT_FLAG`` so no
second prompt can appear. The risk: the PIN passes through the provider's property
interface into the KSP's memory (and the KSP may cache it for the card's session, as
it does after its own prompt); the agent keeps its copy only for the one call. A
minidriver that insists on its own UI (a PIN-pad reader, some vendors' drivers) answers
``NTE_SILENT_CONTEXT``; its cancel button comes back as ``SCARD_W_CANCELLED_BY_USER``.

Everything Windows does goes through ``CngApi`` (real: ``NcryptDll``, ctypes over
crypt32.dll and ncrypt.dll, not run on Linux); tests/test_os_key_store.py drives a
recording fake that signs with real keys.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography import x509

from agent.errors import (
    LoginRequired,
    PinIncorrect,
    PinLocked,
    PinStatus,
    TokenNotPresent,
    Unsupported,
    UserCancelled,
)
from agent.keystores.base import (
    KeyStore,
    KeyType,
    Secret,
    SignMechanism,
    StoreReport,
    TokenInfo,
    Unlock,
)
from agent.keystores.mechanisms import encode_ecdsa, key_type_of
from agent.platform.os_store import OsKeyStore
from agent.protocol.enums import Scheme

STORE_ID = "os:windows-my"
STORE_NAME = "MY"

# CryptAcquireCertificatePrivateKey: a CNG key handle only, never a dialog while listing.
CRYPT_ACQUIRE_SILENT_FLAG = 0x00000040
CRYPT_ACQUIRE_ONLY_NCRYPT_KEY_FLAG = 0x00040000
ACQUIRE_FLAGS = CRYPT_ACQUIRE_SILENT_FLAG | CRYPT_ACQUIRE_ONLY_NCRYPT_KEY_FLAG
# NCryptSetProperty / NCryptSignHash
NCRYPT_SILENT_FLAG = 0x00000040
NCRYPT_PIN_PROPERTY = "SmartCardPin"
NCRYPT_READER_PROPERTY = "SmartCardReader"
NCRYPT_ALGORITHM_GROUP_PROPERTY = "Algorithm Group"  # "RSA" | "ECDSA"
BCRYPT_PAD_PKCS1 = 0x00000002
BCRYPT_PAD_PSS = 0x00000008

# SECURITY_STATUS / HRESULT values the providers answer with.
SCARD_W_CANCELLED_BY_USER = 0x8010006E
ERROR_CANCELLED_HRESULT = 0x800704C7  # HRESULT_FROM_WIN32(ERROR_CANCELLED)
SCARD_W_WRONG_CHV = 0x8010006B
SCARD_W_CHV_BLOCKED = 0x8010006C
SCARD_W_CARD_NOT_AUTHENTICATED = 0x8010006F
SCARD_E_NO_SMARTCARD = 0x8010000C
SCARD_W_REMOVED_CARD = 0x80100069
SCARD_E_NO_READERS_AVAILABLE = 0x8010002E
NTE_SILENT_CONTEXT = 0x80090022
NTE_BAD_KEYSET = 0x80090016
NTE_NOT_SUPPORTED = 0x80090029

CANCELLED = frozenset({SCARD_W_CANCELLED_BY_USER, ERROR_CANCELLED_HRESULT})
CARD_GONE = frozenset({SCARD_E_NO_SMARTCARD, SCARD_W_REMOVED_CARD,
                       SCARD_E_NO_READERS_AVAILABLE, NTE_BAD_KEYSET})


class CngError(Exception):
    """A failed CNG / CryptoAPI call: its SECURITY_STATUS (or HRESULT), unsigned.
    ``tries_left`` only when the provider told (the Smart Card KSP does not)."""

    def __init__(self, call: str, status: int, tries_left: int | None = None) -> None:
        super().__init__(f"{call} failed (0x{status & 0xFFFFFFFF:08X})")
        self.call = call
        self.status = status & 0xFFFFFFFF
        self.tries_left = tries_left


@dataclass(frozen=True)
class Padding:
    """What ``NCryptSignHash`` gets: flags ``BCRYPT_PAD_PKCS1`` / ``BCRYPT_PAD_PSS`` with
    the hash's CNG name (and the PSS salt), or no padding for ECDSA (flags 0)."""

    flags: int
    algorithm: str | None = None  # "SHA256", ...: BCRYPT_*_ALGORITHM
    salt: int = 0


class CngApi(Protocol):
    """The calls the store makes into Windows; a key handle is opaque to the store."""

    def certificates(self, store: str) -> list[bytes]:
        """``CertOpenStore(CERT_STORE_PROV_SYSTEM_W, CERT_SYSTEM_STORE_CURRENT_USER,
        store)`` + ``CertEnumCertificatesInStore``: DER of every certificate."""

    def acquire_key(self, cert_der: bytes, flags: int) -> Any:
        """``CryptAcquireCertificatePrivateKey`` on that certificate's context; raises
        ``CngError`` (no key: ``CRYPT_E_NO_KEY_PROPERTY``; a CSP-only key with
        ``ONLY_NCRYPT``: ``NTE_BAD_PROV_TYPE``)."""

    def key_property(self, key: Any, name: str) -> str | None:
        """``NCryptGetProperty`` of a string property, None when the key has none."""

    def set_pin(self, key: Any, pin: bytes, flags: int) -> None:
        """``NCryptSetProperty(key, NCRYPT_PIN_PROPERTY, <UTF-16LE PIN + NUL>, flags)``."""

    def sign_hash(self, key: Any, padding: Padding, digest: bytes, flags: int) -> bytes:
        """``NCryptSignHash``: PKCS#1 v1.5 / PSS signature, or ECDSA as raw r||s."""

    def free(self, key: Any) -> None:
        """``NCryptFreeObject``."""


def typed_error(exc: CngError) -> Exception:
    """The agent's error for what the provider answered (the PIN loop and the page
    understand these; a raw status would be INTERNAL)."""
    if exc.status in CANCELLED:
        return UserCancelled("cancelled at the card's own PIN prompt")
    if exc.status == SCARD_W_WRONG_CHV:
        tries = exc.tries_left
        return PinIncorrect(PinStatus(count_low=tries is not None and tries <= 2,
                                      final_try=tries == 1))
    if exc.status == SCARD_W_CHV_BLOCKED:
        return PinLocked(unlock=Unlock.PUK.value)
    if exc.status in CARD_GONE:
        return TokenNotPresent()
    if exc.status in (NTE_SILENT_CONTEXT, SCARD_W_CARD_NOT_AUTHENTICATED):
        return LoginRequired()
    if exc.status == NTE_NOT_SUPPORTED:
        return Unsupported("the card's driver does not sign that way")
    return exc


def padding_for(mechanism: SignMechanism) -> Padding:
    name = mechanism.hash_algorithm.value.replace("-", "")  # "SHA-256" → "SHA256"
    if mechanism.scheme is Scheme.ECDSA:
        return Padding(0)
    if mechanism.scheme is Scheme.RSA_PSS:
        return Padding(BCRYPT_PAD_PSS, name, mechanism.hash_algorithm.digest_size)
    return Padding(BCRYPT_PAD_PKCS1, name)


@dataclass(frozen=True)
class OsCertificate:
    """One certificate whose private key the OS can reach."""

    der: bytes
    key_type: KeyType
    reader: str | None
    label: str

    @property
    def key_id(self) -> str:
        # The certificate's hash: stable across listings, whatever handle CNG gives.
        return hashlib.sha256(self.der).hexdigest()[:40]


def _label(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    value = names[0].value if names else cert.subject.rfc4514_string()
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


class CngStore(OsKeyStore[OsCertificate]):
    """The user's "MY" store: one token per key (a card may hold several; CNG names the
    key, not the card), so a PIN dialog names the certificate it unlocks."""

    store_id = STORE_ID
    WHERE = "the Windows certificate store"
    NO_PIN_PAD = "the card's driver asks for a PIN pad's PIN itself"

    def __init__(self, api: CngApi) -> None:
        super().__init__()
        self._api = api

    # -- listing

    def _scan(self) -> list[OsCertificate]:
        found: list[OsCertificate] = []
        for der in self._api.certificates(STORE_NAME):
            try:
                cert = x509.load_der_x509_certificate(der)
                key_type = key_type_of(cert)
            except ValueError:
                continue  # DSA, Ed25519 or undecodable: nothing the agent signs with
            try:
                key = self._api.acquire_key(der, ACQUIRE_FLAGS)
            except CngError:
                continue  # no private key, a CSP-only key, or a card that is not there
            try:
                reader = self._api.key_property(key, NCRYPT_READER_PROPERTY)
            finally:
                self._api.free(key)
            found.append(OsCertificate(der, key_type, reader, _label(cert)))
        return found

    def _token(self, item: OsCertificate) -> TokenInfo:
        return TokenInfo(store_id=self.store_id, token_id=item.key_id, label=item.label,
                         manufacturer="Windows", model="CNG (MY)", serial="",
                         kind=self.kind, unlock=Unlock.PUK.value, reader=item.reader)

    async def _sign_item(self, item: OsCertificate, digests: Sequence[bytes],
                         mechanism: SignMechanism, pin: Secret) -> list[bytes]:
        padding = padding_for(mechanism)
        async with self._lock:
            raw = await asyncio.to_thread(self._sign_in_thread, item.der, digests, padding,
                                          pin.reveal())
        return [encode_ecdsa(s, mechanism.ecdsa_encoding) if mechanism.scheme is Scheme.ECDSA
                else s for s in raw]

    def _sign_in_thread(self, der: bytes, digests: Sequence[bytes], padding: Padding,
                        pin: bytes) -> list[bytes]:
        try:
            handle = self._api.acquire_key(der, ACQUIRE_FLAGS)
        except CngError as exc:
            raise typed_error(exc) from None
        try:
            self._api.set_pin(handle, pin, NCRYPT_SILENT_FLAG)
            return [self._api.sign_hash(handle, padding, d, NCRYPT_SILENT_FLAG)
                    for d in digests]
        except CngError as exc:
            raise typed_error(exc) from None  # the status only: no PIN in any message
        finally:
            self._api.free(handle)

    async def diagnostics(self) -> StoreReport:
        try:
            count: int | str = len(await self.tokens())
        except Exception as exc:  # doctor shows it; never raises
            count = type(exc).__name__
        return StoreReport("os_store", {"storeId": self.store_id, "os": "windows",
                                        "store": f"CurrentUser\\{STORE_NAME}",
                                        "keys": count})



@dataclass(frozen=True)
class CngHook:
    """``OsKeyStoreHook`` for Windows: builds the store over a ``CngApi``."""

    api: CngApi
    name: str = "windows-cng"

    def available(self) -> bool:
        return True

    def open(self) -> KeyStore:
        return CngStore(self.api)


class _Pkcs1PaddingInfo(ctypes.Structure):  # BCRYPT_PKCS1_PADDING_INFO
    _fields_ = [("pszAlgId", ctypes.c_wchar_p)]


class _PssPaddingInfo(ctypes.Structure):  # BCRYPT_PSS_PADDING_INFO
    _fields_ = [("pszAlgId", ctypes.c_wchar_p), ("cbSalt", ctypes.c_uint32)]


class NcryptDll:  # pragma: no cover - needs Windows
    """``CngApi`` through ctypes: crypt32.dll for the store, ncrypt.dll for the key."""

    def __init__(self) -> None:
        import ctypes

        from agent.platform.windows.trust import (
            CERT_STORE_PROV_SYSTEM_W,
            CERT_SYSTEM_STORE_CURRENT_USER,
            _CertContext,
        )

        self._c = ctypes
        self._prov = CERT_STORE_PROV_SYSTEM_W
        self._where = CERT_SYSTEM_STORE_CURRENT_USER
        crypt32: Any = ctypes.WinDLL("crypt32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
        ncrypt: Any = ctypes.WinDLL("ncrypt")  # type: ignore[attr-defined,unused-ignore]
        ctx = ctypes.POINTER(_CertContext)
        crypt32.CertOpenStore.restype = ctypes.c_void_p
        crypt32.CertOpenStore.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p,
                                          ctypes.c_uint32, ctypes.c_wchar_p]
        crypt32.CertEnumCertificatesInStore.restype = ctx
        crypt32.CertEnumCertificatesInStore.argtypes = [ctypes.c_void_p, ctx]
        crypt32.CertFreeCertificateContext.argtypes = [ctx]
        crypt32.CertDuplicateCertificateContext.restype = ctx
        crypt32.CertDuplicateCertificateContext.argtypes = [ctx]
        crypt32.CertCloseStore.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        crypt32.CryptAcquireCertificatePrivateKey.argtypes = [
            ctx, ctypes.c_uint32, ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
            ctypes.POINTER(ctypes.c_uint32), ctypes.POINTER(ctypes.c_int)]
        ncrypt.NCryptGetProperty.argtypes = [
            ctypes.c_size_t, ctypes.c_wchar_p, ctypes.c_void_p, ctypes.c_uint32,
            ctypes.POINTER(ctypes.c_uint32), ctypes.c_uint32]
        ncrypt.NCryptSetProperty.argtypes = [ctypes.c_size_t, ctypes.c_wchar_p,
                                             ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32]
        ncrypt.NCryptSignHash.argtypes = [
            ctypes.c_size_t, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32,
            ctypes.c_void_p, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32),
            ctypes.c_uint32]
        ncrypt.NCryptFreeObject.argtypes = [ctypes.c_size_t]
        for fn in (ncrypt.NCryptGetProperty, ncrypt.NCryptSetProperty, ncrypt.NCryptSignHash,
                   ncrypt.NCryptFreeObject):
            fn.restype = ctypes.c_uint32  # SECURITY_STATUS, compared unsigned
        self._crypt32 = crypt32
        self._ncrypt = ncrypt

    def _contexts(self, store: str) -> tuple[Any, list[Any]]:
        c = self._c
        handle = self._crypt32.CertOpenStore(self._prov, 0, None, self._where, store)
        if not handle:
            raise CngError("CertOpenStore", 0x80070000 | c.get_last_error())  # type: ignore[attr-defined,unused-ignore]
        found: list[Any] = []
        ctx = None
        while True:
            ctx = self._crypt32.CertEnumCertificatesInStore(handle, ctx)
            if not ctx:
                return handle, found
            found.append(self._crypt32.CertDuplicateCertificateContext(ctx))

    def _der(self, ctx: Any) -> bytes:
        return self._c.string_at(ctx.contents.pbCertEncoded, ctx.contents.cbCertEncoded)

    def certificates(self, store: str) -> list[bytes]:
        handle, contexts = self._contexts(store)
        try:
            return [self._der(ctx) for ctx in contexts]
        finally:
            for ctx in contexts:
                self._crypt32.CertFreeCertificateContext(ctx)
            self._crypt32.CertCloseStore(handle, 0)

    def acquire_key(self, cert_der: bytes, flags: int) -> Any:
        c = self._c
        handle, contexts = self._contexts(STORE_NAME)
        try:
            ctx = next((x for x in contexts if self._der(x) == cert_der), None)
            if ctx is None:
                raise CngError("CertEnumCertificatesInStore", NTE_BAD_KEYSET)
            key, spec, owns = c.c_size_t(), c.c_uint32(), c.c_int()
            if not self._crypt32.CryptAcquireCertificatePrivateKey(
                    ctx, flags, None, c.byref(key), c.byref(spec), c.byref(owns)):
                error = c.get_last_error()  # type: ignore[attr-defined,unused-ignore]
                raise CngError("CryptAcquireCertificatePrivateKey",
                               error if error & 0x80000000 else 0x80070000 | error)
            return key.value
        finally:
            for x in contexts:
                self._crypt32.CertFreeCertificateContext(x)
            self._crypt32.CertCloseStore(handle, 0)

    def key_property(self, key: Any, name: str) -> str | None:
        c = self._c
        size = c.c_uint32()
        if self._ncrypt.NCryptGetProperty(key, name, None, 0, c.byref(size), 0) or not size:
            return None
        buf = c.create_string_buffer(size.value)
        if self._ncrypt.NCryptGetProperty(key, name, buf, size, c.byref(size), 0):
            return None
        return buf.raw[: size.value].decode("utf-16-le").rstrip("\0") or None

    def set_pin(self, key: Any, pin: bytes, flags: int) -> None:
        c = self._c
        wide = c.create_string_buffer(pin.decode("utf-8").encode("utf-16-le") + b"\0\0")
        try:
            status = self._ncrypt.NCryptSetProperty(key, NCRYPT_PIN_PROPERTY, wide,
                                                    len(wide.raw), flags)
        finally:
            c.memset(wide, 0, len(wide.raw))
        if status:
            raise CngError("NCryptSetProperty", status)

    def sign_hash(self, key: Any, padding: Padding, digest: bytes, flags: int) -> bytes:
        c = self._c

        info: Any = None
        if padding.flags == BCRYPT_PAD_PKCS1:
            info = c.byref(_Pkcs1PaddingInfo(padding.algorithm))
        elif padding.flags == BCRYPT_PAD_PSS:
            info = c.byref(_PssPaddingInfo(padding.algorithm, padding.salt))
        size = c.c_uint32()
        status = self._ncrypt.NCryptSignHash(key, info, digest, len(digest), None, 0,
                                             c.byref(size), padding.flags | flags)
        if status:
            raise CngError("NCryptSignHash", status)
        out = c.create_string_buffer(size.value)
        status = self._ncrypt.NCryptSignHash(key, info, digest, len(digest), out, size,
                                             c.byref(size), padding.flags | flags)
        if status:
            raise CngError("NCryptSignHash", status)
        signature: bytes = out.raw[: size.value]
        return signature

    def free(self, key: Any) -> None:
        self._ncrypt.NCryptFreeObject(key)
