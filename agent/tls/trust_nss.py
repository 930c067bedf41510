"""The Linux trust store: the user's NSS databases (Chromium's ``~/.pki/nssdb``, each
Firefox profile, the sandboxed browsers' homes), edited with ``certutil``; no root rights.

Our entries are recognised by nickname prefix and confirmed by the certificate itself, so
``status`` reports trust by fingerprint, and every generation left from earlier renewals
("stale": its key is gone, it protects nothing) is found and removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from agent.platform.base import CaCert, TrustResult
from agent.tls import nss
from agent.tls.material import CA_CN_PREFIX, fingerprint_sha256, is_agent_ca


def nickname_for(ca_fingerprint_sha256: str) -> str:
    # The fingerprint keeps generations apart even when two share a subject name.
    return f"{CA_CN_PREFIX} {ca_fingerprint_sha256[:16]}"


def agent_nicknames(db: nss.NssDb) -> list[str]:
    return [e.nickname for e in nss.list_entries(db) if e.nickname.startswith(CA_CN_PREFIX)]


def inspect_database(db: nss.NssDb, current_fp: str | None) -> TrustResult:
    """Whether ``db`` trusts the CA with fingerprint ``current_fp``, and which other agent
    CAs it holds; certutil failures end up in ``error``."""
    status = TrustResult(db.path, db.browser)
    try:
        for entry in nss.list_entries(db):
            if not entry.nickname.startswith(CA_CN_PREFIX):
                continue
            certs: list[x509.Certificate] = nss.certificates(db, entry.nickname)
            ours = [c for c in certs if is_agent_ca(c)]
            if current_fp and any(fingerprint_sha256(c) == current_fp for c in ours):
                # Only the SSL field matters; "C" makes it a trust anchor for TLS servers.
                status.trusted = "C" in entry.trust.split(",")[0]
                if len(ours) > 1:  # an older generation shares the nickname
                    status.stale.append(entry.nickname)
            elif ours:
                status.stale.append(entry.nickname)
    except nss.NssError as exc:
        status.error = str(exc)
    return status


@dataclass
class NssTrustStore:
    home: Path

    def require_tools(self) -> None:
        nss.certutil_path()  # fail early with the install hint, even with no database yet

    def status(self, fingerprint: str | None) -> list[TrustResult]:
        return [inspect_database(db, fingerprint) for db in nss.discover_databases(self.home)]

    def install(self, ca: CaCert) -> list[TrustResult]:
        nickname = nickname_for(ca.fingerprint_sha256)
        results = []
        for db in nss.discover_databases(self.home, create_chromium=True):
            try:
                before = inspect_database(db, ca.fingerprint_sha256)
                if before.error:
                    results.append(before)
                    continue
                # Stale ones first: should one share our nickname, re-adding restores ours.
                for stale in before.stale:
                    nss.delete(db, stale)
                nss.add_trusted_ca(db, nickname, ca.pem_path)  # also re-sets trust
            except nss.NssError as exc:
                results.append(TrustResult(db.path, db.browser, error=str(exc)))
                continue
            results.append(inspect_database(db, ca.fingerprint_sha256))
        return results

    def remove(self) -> list[TrustResult]:
        results = []
        for db in nss.discover_databases(self.home):
            try:
                for nickname in agent_nicknames(db):
                    nss.delete(db, nickname)
            except nss.NssError as exc:
                results.append(TrustResult(db.path, db.browser, error=str(exc)))
                continue
            results.append(inspect_database(db, None))
        return results
