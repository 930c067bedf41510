"""The keychain's identities as a key store: certificates whose keys macOS reaches through
CryptoTokenKit (a smart-card token's extension, or the built-in PIV support), listed with
``SecItemCopyMatching(kSecClassIdentity)`` and used with ``SecKeyCreateSignature``.

The PIN. Without one, CryptoTokenKit shows the system's own PIN prompt. The agent asks
with its own dialog instead (origin, document, its attempt counting) and hands the PIN to
an ``LAContext`` as an application password, passed with the key lookup as
``kSecUseAuthenticationContext``; ``kSecUseAuthenticationUI = Fail`` keeps a second prompt
away. The risk: the PIN passes into the LocalAuthentication context for the one call;
the agent drops its copy afterwards. A token whose extension insists on its own prompt
answers ``errSecInteractionNotAllowed``; its cancel button comes back as
``errSecUserCanceled``.

Everything macOS does goes through ``SecurityApi`` (real: ``SecurityFramework``, ctypes
over Security / CoreFoundation / the Objective-C runtime, not run on Linux);
tests/test_os_key_store.py drives a recording fake that signs with real keys.
"""

from __future__ import annotations

import asyncio
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
from agent.keystores.mechanisms import der_to_raw, key_type_of
from agent.platform.os_store import OsKeyStore
from agent.protocol.enums import EcdsaEncoding, HashAlgorithm, Scheme

STORE_ID = "os:macos-keychain"

# OSStatus values (Security framework) and TKErrorCode values (CryptoTokenKit).
ERR_SEC_USER_CANCELED = -128
ERR_SEC_AUTH_FAILED = -25293
ERR_SEC_ITEM_NOT_FOUND = -25300
ERR_SEC_INTERACTION_NOT_ALLOWED = -25308
TK_CANCELED_BY_USER = -4
TK_AUTHENTICATION_FAILED = -5
TK_TOKEN_NOT_FOUND = -7
TK_AUTHENTICATION_NEEDED = -9
TK_PIN_BLOCKED = -10  # not in every SDK; extensions that know say so


class SecurityError(Exception):
    """A failed Security-framework call: its OSStatus or CFError code (both signed).
    ``tries_left`` only when the token's extension told."""

    def __init__(self, call: str, code: int, tries_left: int | None = None) -> None:
        super().__init__(f"{call} failed ({code})")
        self.call = call
        self.code = code
        self.tries_left = tries_left


@dataclass(frozen=True)
class KeychainIdentity:
    """One ``SecIdentity``: its certificate, and the token it lives on (kSecAttrTokenID;
    None for a key in a keychain file, which the agent leaves alone)."""

    der: bytes
    token_id: str | None
    label: str | None = None


class SecurityApi(Protocol):
    def identities(self) -> list[KeychainIdentity]:
        """``SecItemCopyMatching({kSecClass: kSecClassIdentity, kSecMatchLimit: All,
        kSecReturnRef, kSecReturnAttributes})``."""

    def sign(self, cert_der: bytes, algorithm: str, digests: Sequence[bytes],
             pin: bytes) -> list[bytes]:
        """``SecItemCopyMatching`` for that identity's key with one ``LAContext`` holding
        ``pin``, then ``SecKeyCreateSignature(key, algorithm, digest)`` for each digest;
        ``algorithm`` names a ``kSecKeyAlgorithm…`` constant."""


def algorithm_for(mechanism: SignMechanism) -> str:
    bits = {HashAlgorithm.SHA256: "SHA256", HashAlgorithm.SHA384: "SHA384",
            HashAlgorithm.SHA512: "SHA512"}[mechanism.hash_algorithm]
    if mechanism.scheme is Scheme.ECDSA:
        return f"kSecKeyAlgorithmECDSASignatureDigestX962{bits}"  # DER X9.62 out
    if mechanism.scheme is Scheme.RSA_PSS:
        return f"kSecKeyAlgorithmRSASignatureDigestPSS{bits}"  # salt = hash length
    return f"kSecKeyAlgorithmRSASignatureDigestPKCS1v15{bits}"


def typed_error(exc: SecurityError) -> Exception:
    if exc.code in (ERR_SEC_USER_CANCELED, TK_CANCELED_BY_USER):
        return UserCancelled("cancelled at the system's PIN prompt")
    if exc.code in (ERR_SEC_AUTH_FAILED, TK_AUTHENTICATION_FAILED):
        tries = exc.tries_left
        if tries == 0:
            return PinLocked(unlock=Unlock.PUK.value)
        return PinIncorrect(PinStatus(count_low=tries is not None and tries <= 2,
                                      final_try=tries == 1))
    if exc.code == TK_PIN_BLOCKED:
        return PinLocked(unlock=Unlock.PUK.value)
    if exc.code in (ERR_SEC_ITEM_NOT_FOUND, TK_TOKEN_NOT_FOUND):
        return TokenNotPresent()
    if exc.code in (ERR_SEC_INTERACTION_NOT_ALLOWED, TK_AUTHENTICATION_NEEDED):
        return LoginRequired()
    return exc


def _label(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    value = names[0].value if names else cert.subject.rfc4514_string()
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


@dataclass(frozen=True)
class _Listed:
    der: bytes
    key_type: KeyType
    token: str
    label: str
    curve_bytes: int  # EC: the size of r and s; 0 for RSA

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self.der).hexdigest()[:40]


class KeychainStore(OsKeyStore[_Listed]):
    """Token-held identities of the keychain, one token per key (see ``CngStore``)."""

    store_id = STORE_ID
    WHERE = "the keychain"
    NO_PIN_PAD = "the token's extension asks for a PIN pad's PIN itself"

    def __init__(self, api: SecurityApi) -> None:
        super().__init__()
        self._api = api

    def _scan(self) -> list[_Listed]:
        found: list[_Listed] = []
        for ident in self._api.identities():
            if ident.token_id is None:
                continue  # a software key in a keychain file: not a token
            try:
                cert = x509.load_der_x509_certificate(ident.der)
                key_type = key_type_of(cert)
            except ValueError:
                continue
            public = cert.public_key()
            size = (public.key_size + 7) // 8 if key_type is KeyType.EC else 0  # type: ignore[union-attr]
            found.append(_Listed(ident.der, key_type, ident.token_id,
                                 ident.label or _label(cert), size))
        return found

    def _token(self, item: _Listed) -> TokenInfo:
        return TokenInfo(store_id=self.store_id, token_id=item.key_id, label=item.label,
                         manufacturer="macOS", model="CryptoTokenKit", serial=item.token,
                         kind=self.kind, unlock=Unlock.PUK.value)

    async def _sign_item(self, item: _Listed, digests: Sequence[bytes],
                         mechanism: SignMechanism, pin: Secret) -> list[bytes]:
        algorithm = algorithm_for(mechanism)
        async with self._lock:
            out = await asyncio.to_thread(self._sign_in_thread, item.der, algorithm, digests,
                                          pin.reveal())
        if mechanism.scheme is Scheme.ECDSA and mechanism.ecdsa_encoding is EcdsaEncoding.RAW:
            return [der_to_raw(s, item.curve_bytes) for s in out]
        return out

    def _sign_in_thread(self, der: bytes, algorithm: str, digests: Sequence[bytes],
                        pin: bytes) -> list[bytes]:
        try:
            return self._api.sign(der, algorithm, digests, pin)
        except SecurityError as exc:
            raise typed_error(exc) from None  # the code only: no PIN in any message

    async def diagnostics(self) -> StoreReport:
        try:
            count: int | str = len(await self.tokens())
        except Exception as exc:
            count = type(exc).__name__
        return StoreReport("os_store", {"storeId": self.store_id, "os": "macos",
                                        "store": "keychain (CryptoTokenKit)", "keys": count})



@dataclass(frozen=True)
class KeychainHook:
    """``OsKeyStoreHook`` for macOS."""

    api: SecurityApi
    name: str = "macos-keychain"

    def available(self) -> bool:
        return True

    def open(self) -> KeyStore:
        return KeychainStore(self.api)


class SecurityFramework:  # pragma: no cover - needs macOS
    """``SecurityApi`` through ctypes: CoreFoundation dictionaries, Security's item and key
    calls, and an ``LAContext`` made through the Objective-C runtime."""

    def __init__(self) -> None:
        import ctypes
        import ctypes.util

        self._c = ctypes
        cf: Any = ctypes.cdll.LoadLibrary(ctypes.util.find_library("CoreFoundation") or "")
        sec: Any = ctypes.cdll.LoadLibrary(ctypes.util.find_library("Security") or "")
        ctypes.cdll.LoadLibrary(ctypes.util.find_library("LocalAuthentication") or "")
        objc: Any = ctypes.cdll.LoadLibrary(ctypes.util.find_library("objc") or "")
        vp = ctypes.c_void_p
        for name, res, args in (
                ("CFDictionaryCreateMutable", vp, [vp, ctypes.c_long, vp, vp]),
                ("CFDictionarySetValue", None, [vp, vp, vp]),
                ("CFDictionaryGetValue", vp, [vp, vp]),
                ("CFArrayGetCount", ctypes.c_long, [vp]),
                ("CFArrayGetValueAtIndex", vp, [vp, ctypes.c_long]),
                ("CFDataCreate", vp, [vp, ctypes.c_char_p, ctypes.c_long]),
                ("CFDataGetLength", ctypes.c_long, [vp]),
                ("CFDataGetBytePtr", vp, [vp]),
                ("CFErrorGetCode", ctypes.c_long, [vp]),
                ("CFStringGetCString", ctypes.c_bool, [vp, ctypes.c_char_p, ctypes.c_long,
                                                       ctypes.c_uint32]),
                ("CFRelease", None, [vp])):
            fn = getattr(cf, name)
            fn.restype, fn.argtypes = res, args
        sec.SecItemCopyMatching.restype = ctypes.c_int32
        sec.SecItemCopyMatching.argtypes = [vp, ctypes.POINTER(vp)]
        sec.SecIdentityCopyCertificate.restype = ctypes.c_int32
        sec.SecIdentityCopyCertificate.argtypes = [vp, ctypes.POINTER(vp)]
        sec.SecIdentityCopyPrivateKey.restype = ctypes.c_int32
        sec.SecIdentityCopyPrivateKey.argtypes = [vp, ctypes.POINTER(vp)]
        sec.SecCertificateCopyData.restype = vp
        sec.SecCertificateCopyData.argtypes = [vp]
        sec.SecKeyCreateSignature.restype = vp
        sec.SecKeyCreateSignature.argtypes = [vp, vp, vp, ctypes.POINTER(vp)]
        objc.objc_getClass.restype = vp
        objc.objc_getClass.argtypes = [ctypes.c_char_p]
        objc.sel_registerName.restype = vp
        objc.sel_registerName.argtypes = [ctypes.c_char_p]
        self._cf, self._sec, self._objc = cf, sec, objc

    def _const(self, name: str) -> Any:
        return self._c.c_void_p.in_dll(self._sec, name).value

    def _query(self, extra: dict[str, Any]) -> Any:
        c, cf = self._c, self._cf
        keys = c.c_void_p.in_dll(cf, "kCFTypeDictionaryKeyCallBacks")
        values = c.c_void_p.in_dll(cf, "kCFTypeDictionaryValueCallBacks")
        query = cf.CFDictionaryCreateMutable(None, 0, c.byref(keys), c.byref(values))
        true = c.c_void_p.in_dll(cf, "kCFBooleanTrue").value
        pairs = {"kSecClass": self._const("kSecClassIdentity"),
                 "kSecMatchLimit": self._const("kSecMatchLimitAll"),
                 "kSecReturnRef": true, "kSecReturnAttributes": true, **extra}
        for key, value in pairs.items():
            cf.CFDictionarySetValue(query, self._const(key), value)
        return query

    def _data(self, ref: Any) -> bytes:
        return self._c.string_at(self._cf.CFDataGetBytePtr(ref), self._cf.CFDataGetLength(ref))

    def _string(self, ref: Any) -> str | None:
        if not ref:
            return None
        buf = self._c.create_string_buffer(1024)
        return (buf.value.decode("utf-8")
                if self._cf.CFStringGetCString(ref, buf, 1024, 0x08000100) else None)

    def _matching(self, extra: dict[str, Any]) -> list[tuple[Any, Any]]:
        c, cf = self._c, self._cf
        query = self._query(extra)
        result = c.c_void_p()
        status = self._sec.SecItemCopyMatching(query, c.byref(result))
        cf.CFRelease(query)
        if status == ERR_SEC_ITEM_NOT_FOUND:
            return []
        if status:
            raise SecurityError("SecItemCopyMatching", status)
        ref_key, token_key = self._const("kSecValueRef"), self._const("kSecAttrTokenID")
        out = []
        for i in range(cf.CFArrayGetCount(result.value)):
            attrs = cf.CFArrayGetValueAtIndex(result.value, i)
            out.append((cf.CFDictionaryGetValue(attrs, ref_key),
                        self._string(cf.CFDictionaryGetValue(attrs, token_key))))
        return out

    def _der_of(self, identity: Any) -> bytes:
        c = self._c
        cert = c.c_void_p()
        if self._sec.SecIdentityCopyCertificate(identity, c.byref(cert)):
            return b""
        data = self._sec.SecCertificateCopyData(cert)
        try:
            return self._data(data)
        finally:
            self._cf.CFRelease(data)
            self._cf.CFRelease(cert)

    def identities(self) -> list[KeychainIdentity]:
        return [KeychainIdentity(self._der_of(ref), token)
                for ref, token in self._matching({})]

    def _create_signature(self, key: Any, algorithm: str, digest: bytes) -> bytes:
        c, cf = self._c, self._cf
        data = cf.CFDataCreate(None, digest, len(digest))
        error = c.c_void_p()
        signature = self._sec.SecKeyCreateSignature(key, self._const(algorithm), data,
                                                    c.byref(error))
        cf.CFRelease(data)
        if not signature:
            code = cf.CFErrorGetCode(error) if error.value else -1
            raise SecurityError("SecKeyCreateSignature", int(code))
        try:
            return self._data(signature)
        finally:
            cf.CFRelease(signature)

    def _la_context(self, pin: bytes) -> Any:
        c, objc = self._c, self._objc
        send = c.CFUNCTYPE(c.c_void_p, c.c_void_p, c.c_void_p)(("objc_msgSend", objc))
        context = send(objc.objc_getClass(b"LAContext"), objc.sel_registerName(b"new"))
        set_credential = c.CFUNCTYPE(c.c_bool, c.c_void_p, c.c_void_p, c.c_void_p,
                                     c.c_long)(("objc_msgSend", objc))
        data = self._cf.CFDataCreate(None, pin, len(pin))  # toll-free bridged to NSData
        try:  # LACredentialTypeApplicationPassword = 0
            set_credential(context, objc.sel_registerName(b"setCredential:type:"), data, 0)
        finally:
            self._cf.CFRelease(data)
        return context

    def sign(self, cert_der: bytes, algorithm: str, digests: Sequence[bytes],
             pin: bytes) -> list[bytes]:
        c, cf = self._c, self._cf
        context = self._la_context(pin)
        try:
            extra = {"kSecUseAuthenticationContext": context,
                     "kSecUseAuthenticationUI": self._const("kSecUseAuthenticationUIFail")}
            identity = next((ref for ref, _ in self._matching(extra)
                             if self._der_of(ref) == cert_der), None)
            if identity is None:
                raise SecurityError("SecItemCopyMatching", ERR_SEC_ITEM_NOT_FOUND)
            key = c.c_void_p()
            status = self._sec.SecIdentityCopyPrivateKey(identity, c.byref(key))
            if status:
                raise SecurityError("SecIdentityCopyPrivateKey", status)
            try:
                return [self._create_signature(key, algorithm, d) for d in digests]
            finally:
                cf.CFRelease(key)
        finally:
            cf.CFRelease(context)
