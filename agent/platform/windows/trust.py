"""Local TLS trust on Windows: the agent's CA in the ``ROOT`` system store through
CryptoAPI — the current user's (``CERT_SYSTEM_STORE_CURRENT_USER``; Windows asks the user
to confirm, so the daemon never does this silently at start) or, for an elevated machine
install, the local machine's. Chrome and Edge use that store; Firefox reads it when its
profiles have ``security.enterprise_roots.enabled`` (``agent/platform/firefox_roots.py``).

``Crypt32`` is the seam: ``Crypt32Dll`` calls crypt32.dll through ctypes, the tests pass a
fake that records the store flags, names, encodings and dispositions it was given.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from agent.platform import firefox_roots
from agent.platform.base import CaCert, TrustResult

CERT_STORE_PROV_SYSTEM_W = 10
CERT_SYSTEM_STORE_CURRENT_USER = 1 << 16
CERT_SYSTEM_STORE_LOCAL_MACHINE = 2 << 16
X509_ASN_ENCODING = 0x00000001
PKCS_7_ASN_ENCODING = 0x00010000
CERT_STORE_ADD_REPLACE_EXISTING = 3
ROOT = "ROOT"


class Crypt32(Protocol):
    def open_system_store(self, location: int, name: str) -> Any: ...

    def certificates(self, store: Any) -> list[bytes]:
        """The DER encoding of every certificate in ``store``."""

    def add_encoded(self, store: Any, encoding: int, der: bytes, disposition: int) -> None: ...

    def delete(self, store: Any, der: bytes) -> None:
        """Delete the certificate whose encoding is ``der``."""

    def close(self, store: Any) -> None: ...


@dataclass
class WindowsTrustStore:
    crypt32: Crypt32
    firefox_profiles_dir: Path  # %APPDATA%\Mozilla\Firefox\Profiles
    machine: bool = False  # elevated: the local machine's ROOT store

    @property
    def location(self) -> int:
        return CERT_SYSTEM_STORE_LOCAL_MACHINE if self.machine else CERT_SYSTEM_STORE_CURRENT_USER

    @property
    def store_name(self) -> str:
        return ("LocalMachine" if self.machine else "CurrentUser") + "\\" + ROOT

    def require_tools(self) -> None:
        """CryptoAPI is part of Windows: nothing to install."""

    def _agent_certs(self, store: Any) -> list[tuple[bytes, str]]:
        from agent.tls.material import fingerprint_sha256, is_agent_ca

        found = []
        for der in self.crypt32.certificates(store):
            try:
                cert = x509.load_der_x509_certificate(der)
            except ValueError:
                continue
            if is_agent_ca(cert):
                found.append((der, fingerprint_sha256(cert)))
        return found

    def _os_status(self, fingerprint: str | None) -> TrustResult:
        store = self.crypt32.open_system_store(self.location, ROOT)
        try:
            ours = self._agent_certs(store)
        finally:
            self.crypt32.close(store)
        return TrustResult(self.store_name, "windows",
                           trusted=any(fp == fingerprint for _d, fp in ours),
                           stale=[fp[:16] for _d, fp in ours if fp != fingerprint])

    def status(self, fingerprint: str | None) -> list[TrustResult]:
        os_result = self._os_status(fingerprint)
        return [os_result, *(firefox_roots.status(p, os_result.trusted)
                             for p in firefox_roots.profiles(self.firefox_profiles_dir))]

    def install(self, ca: CaCert) -> list[TrustResult]:
        from agent.tls.material import fingerprint_sha256

        cert = x509.load_pem_x509_certificate(ca.pem_path.read_bytes())
        der = cert.public_bytes(Encoding.DER)
        if fingerprint_sha256(cert) != ca.fingerprint_sha256:
            raise ValueError("the CA file does not match its fingerprint")
        store = self.crypt32.open_system_store(self.location, ROOT)
        try:
            for old, fp in self._agent_certs(store):
                if fp != ca.fingerprint_sha256:
                    self.crypt32.delete(store, old)
            self.crypt32.add_encoded(store, X509_ASN_ENCODING | PKCS_7_ASN_ENCODING, der,
                                     CERT_STORE_ADD_REPLACE_EXISTING)
        except OSError as exc:
            return [TrustResult(self.store_name, "windows", error=str(exc))]
        finally:
            self.crypt32.close(store)
        for profile in firefox_roots.profiles(self.firefox_profiles_dir):
            firefox_roots.enable(profile)
        return self.status(ca.fingerprint_sha256)

    def remove(self) -> list[TrustResult]:
        store = self.crypt32.open_system_store(self.location, ROOT)
        try:
            for der, _fp in self._agent_certs(store):
                self.crypt32.delete(store, der)
        except OSError as exc:
            return [TrustResult(self.store_name, "windows", error=str(exc))]
        finally:
            self.crypt32.close(store)
        results = [self._os_status(None)]
        results += [firefox_roots.disable(p)
                    for p in firefox_roots.profiles(self.firefox_profiles_dir)]
        return results


# --- the real crypt32.dll (Windows only; not run on this project's Linux CI) ---------------

class _CertContext(ctypes.Structure):
    _fields_ = [("dwCertEncodingType", ctypes.c_uint32),
                ("pbCertEncoded", ctypes.POINTER(ctypes.c_ubyte)),
                ("cbCertEncoded", ctypes.c_uint32),
                ("pCertInfo", ctypes.c_void_p),
                ("hCertStore", ctypes.c_void_p)]


class Crypt32Dll:
    def __init__(self) -> None:
        dll: Any = ctypes.WinDLL("crypt32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
        ctx = ctypes.POINTER(_CertContext)
        dll.CertOpenStore.restype = ctypes.c_void_p
        dll.CertOpenStore.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p,
                                      ctypes.c_uint32, ctypes.c_wchar_p]
        dll.CertEnumCertificatesInStore.restype = ctx
        dll.CertEnumCertificatesInStore.argtypes = [ctypes.c_void_p, ctx]
        dll.CertDuplicateCertificateContext.restype = ctx
        dll.CertDuplicateCertificateContext.argtypes = [ctx]
        dll.CertDeleteCertificateFromStore.argtypes = [ctx]
        dll.CertAddEncodedCertificateToStore.argtypes = [
            ctypes.c_void_p, ctypes.c_uint32, ctypes.c_char_p, ctypes.c_uint32,
            ctypes.c_uint32, ctypes.c_void_p]
        dll.CertCloseStore.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        self._dll = dll

    def _fail(self, what: str) -> OSError:
        code = ctypes.get_last_error()  # type: ignore[attr-defined,unused-ignore]
        return OSError(code, f"{what} failed (Windows error {code})")

    def open_system_store(self, location: int, name: str) -> Any:
        store = self._dll.CertOpenStore(CERT_STORE_PROV_SYSTEM_W, 0, None, location, name)
        if not store:
            raise self._fail("CertOpenStore")
        return store

    def _contexts(self, store: Any) -> list[tuple[Any, bytes]]:
        found: list[tuple[Any, bytes]] = []
        ctx = None
        while True:
            ctx = self._dll.CertEnumCertificatesInStore(store, ctx)
            if not ctx:
                return found
            c = ctx.contents
            found.append((self._dll.CertDuplicateCertificateContext(ctx),
                          ctypes.string_at(c.pbCertEncoded, c.cbCertEncoded)))

    def certificates(self, store: Any) -> list[bytes]:
        contexts = self._contexts(store)
        for ctx, _der in contexts:
            self._dll.CertFreeCertificateContext(ctx)
        return [der for _ctx, der in contexts]

    def add_encoded(self, store: Any, encoding: int, der: bytes, disposition: int) -> None:
        if not self._dll.CertAddEncodedCertificateToStore(store, encoding, der, len(der),
                                                          disposition, None):
            raise self._fail("CertAddEncodedCertificateToStore")

    def delete(self, store: Any, der: bytes) -> None:
        for ctx, encoded in self._contexts(store):
            if encoded == der:
                if not self._dll.CertDeleteCertificateFromStore(ctx):  # frees ctx
                    raise self._fail("CertDeleteCertificateFromStore")
            else:
                self._dll.CertFreeCertificateContext(ctx)

    def close(self, store: Any) -> None:
        self._dll.CertCloseStore(store, 0)
