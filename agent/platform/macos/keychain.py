"""Local TLS trust on macOS: the agent's CA in the login keychain, trusted as a root for
SSL (``security add-trusted-cert``; macOS asks for the user's password), or for an
elevated machine install in the System keychain with admin trust settings (``-d``).
Safari and Chrome use the keychain; Firefox reads it when its profiles have
``security.enterprise_roots.enabled`` (``agent/platform/firefox_roots.py``).

Only ``security`` is run, through the ``Runner`` seam; the argument lists are the
documented ones (``man security``) and the tests check them exactly.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from agent.platform import firefox_roots
from agent.platform.base import CaCert, TrustResult
from agent.platform.macos.runner import Runner

SYSTEM_KEYCHAIN = Path("/Library/Keychains/System.keychain")
_PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def login_keychain(home: Path) -> Path:
    return home / "Library" / "Keychains" / "login.keychain-db"


def sha1_hex(cert: x509.Certificate) -> str:
    return hashlib.sha1(cert.public_bytes(Encoding.DER)).hexdigest().upper()


@dataclass
class KeychainTrustStore:
    run: Runner
    home: Path
    machine: bool = False

    @property
    def keychain(self) -> Path:
        return SYSTEM_KEYCHAIN if self.machine else login_keychain(self.home)

    @property
    def firefox_profiles_dir(self) -> Path:
        return self.home / "Library" / "Application Support" / "Firefox" / "Profiles"

    def require_tools(self) -> None:
        """``security`` ships with macOS."""

    def _agent_certs(self) -> list[x509.Certificate]:
        from agent.tls.material import CA_CN_PREFIX, is_agent_ca

        done = self.run(["security", "find-certificate", "-a", "-c", CA_CN_PREFIX, "-p",
                         str(self.keychain)])
        if done.returncode != 0:  # "could not be found": none of ours
            return []
        certs = []
        for block in _PEM.findall(done.stdout):
            try:
                cert = x509.load_pem_x509_certificate(block.encode())
            except ValueError:
                continue
            if is_agent_ca(cert):
                certs.append(cert)
        return certs

    def _verifies(self, cert: x509.Certificate) -> bool:
        with tempfile.TemporaryDirectory() as tmp:
            pem = Path(tmp) / "ca.pem"
            pem.write_bytes(cert.public_bytes(Encoding.PEM))
            done = self.run(["security", "verify-cert", "-c", str(pem), "-p", "ssl", "-L",
                             "-q"])
        return done.returncode == 0

    def _os_status(self, fingerprint: str | None) -> TrustResult:
        from agent.tls.material import fingerprint_sha256

        result = TrustResult(self.keychain, "macos")
        for cert in self._agent_certs():
            fp = fingerprint_sha256(cert)
            if fp == fingerprint:
                result.trusted = self._verifies(cert)
            else:
                result.stale.append(fp[:16])
        return result

    def status(self, fingerprint: str | None) -> list[TrustResult]:
        os_result = self._os_status(fingerprint)
        return [os_result, *(firefox_roots.status(p, os_result.trusted)
                             for p in firefox_roots.profiles(self.firefox_profiles_dir))]

    def _delete(self, cert: x509.Certificate) -> str | None:
        done = self.run(["security", "delete-certificate", "-Z", sha1_hex(cert), "-t",
                         str(self.keychain)])
        return None if done.returncode == 0 else (done.stderr.strip() or "delete failed")

    def install(self, ca: CaCert) -> list[TrustResult]:
        from agent.tls.material import fingerprint_sha256

        errors = [e for c in self._agent_certs()
                  if fingerprint_sha256(c) != ca.fingerprint_sha256
                  and (e := self._delete(c)) is not None]
        argv = ["security", "add-trusted-cert"]
        if self.machine:
            argv.append("-d")  # admin trust settings, for every user
        argv += ["-r", "trustRoot", "-p", "ssl", "-k", str(self.keychain), str(ca.pem_path)]
        done = self.run(argv)
        if done.returncode != 0:
            errors.append(done.stderr.strip() or "add-trusted-cert failed")
        if errors:
            return [TrustResult(self.keychain, "macos", error="; ".join(errors))]
        for profile in firefox_roots.profiles(self.firefox_profiles_dir):
            firefox_roots.enable(profile)
        return self.status(ca.fingerprint_sha256)

    def remove(self) -> list[TrustResult]:
        errors = [e for c in self._agent_certs() if (e := self._delete(c)) is not None]
        if errors:
            return [TrustResult(self.keychain, "macos", error="; ".join(errors))]
        return [self._os_status(None), *(firefox_roots.disable(p) for p in
                                         firefox_roots.profiles(self.firefox_profiles_dir))]
