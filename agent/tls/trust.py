"""``imza-agent trust install | status | remove``: the local CA as a browser trust anchor.

Linux: the user's NSS databases (Chromium's ``~/.pki/nssdb`` and each Firefox profile),
edited with ``certutil``; no root rights needed.  Windows and macOS are not supported yet
and say so (see docs/tls.md for what they will do).

Our entries are recognised by nickname prefix and confirmed by the certificate itself, so
``status`` reports trust by fingerprint, and every generation left from earlier renewals
("stale": its key is gone, it protects nothing) is found and removed.

The agent itself installs the CA at every start (``agent/daemon/first_run.py``); these
commands record what they did in the same state file (``trust_state.py``), so an explicit
``remove`` is respected by later starts until the next ``install``.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509

from agent import paths
from agent.i18n import _
from agent.tls import nss, trust_state
from agent.tls.material import (
    CA_CN_PREFIX,
    ensure_tls_material,
    fingerprint_sha256,
    is_agent_ca,
    load_tls_material,
)

Action = Literal["install", "status", "remove"]

EXIT_OK = 0
EXIT_INCOMPLETE = 1  # some database failed, or (status) the CA is not trusted everywhere
EXIT_UNSUPPORTED = 2  # unknown action, or a platform without an implementation yet
EXIT_NO_CERTUTIL = 3


@dataclass
class DbStatus:
    path: Path
    browser: str
    trusted: bool = False  # the current CA is there with SSL trust ("C")
    stale: list[str] = field(default_factory=list)  # nicknames of older generations
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        return {"path": str(self.path), "browser": self.browser, "trusted": self.trusted,
                "stale": self.stale, "error": self.error}


class UnsupportedPlatform(Exception):
    pass


def nickname_for(ca_fingerprint_sha256: str) -> str:
    # The fingerprint keeps generations apart even when two share a subject name.
    return f"{CA_CN_PREFIX} {ca_fingerprint_sha256[:16]}"


def trust_status(*, home: Path | None = None, tls_dir: Path | None = None) -> list[DbStatus]:
    """Per database: is the current CA trusted, and which stale generations are there.
    Read-only: never generates material or creates a database."""
    _require_linux()
    current = _current_fingerprint(tls_dir)
    return [inspect_database(db, current) for db in nss.discover_databases(_home(home))]


def install_trust(*, home: Path | None = None, tls_dir: Path | None = None,
                  now: dt.datetime | None = None) -> list[DbStatus]:
    """Trust the current CA in every database (creating ``~/.pki/nssdb`` when missing,
    generating or renewing material as ``ensure_tls_material`` does) and remove stale
    generations."""
    _require_linux()
    material = ensure_tls_material(_tls_dir(tls_dir), now=now)
    nickname = nickname_for(material.ca_fingerprint_sha256)
    results = []
    for db in nss.discover_databases(_home(home), create_chromium=True):
        try:
            before = inspect_database(db, material.ca_fingerprint_sha256)
            if before.error:
                results.append(before)
                continue
            # Stale ones first: should one share our nickname, re-adding restores ours.
            for stale in before.stale:
                nss.delete(db, stale)
            nss.add_trusted_ca(db, nickname, material.ca_cert_path)  # also re-sets trust
        except nss.NssError as exc:
            results.append(DbStatus(db.path, db.browser, error=str(exc)))
            continue
        results.append(inspect_database(db, material.ca_fingerprint_sha256))
    trust_state.save(_tls_dir(tls_dir), trust_state.TrustState(
        material.ca_fingerprint_sha256,
        {str(r.path): s for r in results
         if r.trusted and (s := trust_state.stamp_of(r.path)) is not None}))
    return results


def remove_trust(*, home: Path | None = None, tls_dir: Path | None = None) -> list[DbStatus]:
    """Remove every generation of our CA from every database."""
    _require_linux()
    results = []
    for db in nss.discover_databases(_home(home)):
        try:
            for nickname in _agent_nicknames(db):
                nss.delete(db, nickname)
        except nss.NssError as exc:
            results.append(DbStatus(db.path, db.browser, error=str(exc)))
            continue
        results.append(inspect_database(db, None))
    # Taken out on purpose: starts of the agent do not put it back (until `install`).
    trust_state.save(_tls_dir(tls_dir), trust_state.TrustState(opted_out=True))
    return results


def main(action: str, *, json_output: bool = False) -> int:
    """Entry point for ``imza-agent trust ACTION``; returns the process exit code."""
    try:
        if action == "install":
            results = install_trust()
        elif action == "status":
            results = trust_status()
        elif action == "remove":
            results = remove_trust()
        else:
            print(_("unknown trust action {action}: use install, status or remove").format(
                action=repr(action)), file=sys.stderr)
            return EXIT_UNSUPPORTED
    except UnsupportedPlatform:
        print(_unsupported_platform_text(), file=sys.stderr)
        return EXIT_UNSUPPORTED
    except nss.CertutilMissing:
        print(install_hint(), file=sys.stderr)
        return EXIT_NO_CERTUTIL
    code = _exit_code(action, results)
    if json_output:
        print(json.dumps({"action": action, "fingerprint_sha256": _current_fingerprint(None),
                          "ok": code == EXIT_OK,
                          "databases": [r.to_json() for r in results]}, indent=2))
    else:
        _print_human(action, results)
    return code


# --- internals ------------------------------------------------------------------------

def _home(home: Path | None) -> Path:
    return home if home is not None else Path.home()


def _tls_dir(tls_dir: Path | None) -> Path:
    return tls_dir if tls_dir is not None else paths.sub_dir("tls")


def _current_fingerprint(tls_dir: Path | None) -> str | None:
    material = load_tls_material(_tls_dir(tls_dir))
    return material.ca_fingerprint_sha256 if material else None


def _require_linux() -> None:
    if sys.platform == "win32":
        raise UnsupportedPlatform(
            "trust installation is not supported on Windows yet; to do it by hand run "
            "`certutil -user -addstore Root ca.pem` with the ca.pem from the agent's "
            "tls folder (see docs/tls.md)")
    if sys.platform == "darwin":
        raise UnsupportedPlatform(
            "trust installation is not supported on macOS yet; to do it by hand run "
            "`security add-trusted-cert -r trustRoot -p ssl -k "
            "~/Library/Keychains/login.keychain-db ca.pem` (see docs/tls.md)")
    nss.certutil_path()  # fail early with the install hint, even with no database yet


# The exceptions (and so the logs) say these in English; a person at the command line
# reads them in the CLI's language.
def _unsupported_platform_text() -> str:
    if sys.platform == "win32":
        return _("trust installation is not supported on Windows yet; to do it by hand run "
                 "`certutil -user -addstore Root ca.pem` with the ca.pem from the agent's "
                 "tls folder (see docs/tls.md)")
    return _("trust installation is not supported on macOS yet; to do it by hand run "
             "`security add-trusted-cert -r trustRoot -p ssl -k "
             "~/Library/Keychains/login.keychain-db ca.pem` (see docs/tls.md)")


# nss.INSTALL_HINT in the CLI's language (a test checks the English text is the same).
INSTALL_HINT_TEXT = ("certutil (from the NSS tools) is required: install it with "
                     "`sudo apt install libnss3-tools` (Debian/Ubuntu), `sudo dnf install "
                     "nss-tools` (Fedora/RHEL) or `sudo pacman -S nss` (Arch)")


def install_hint() -> str:
    """How to install certutil, in the CLI's language."""
    return _("certutil (from the NSS tools) is required: install it with "
             "`sudo apt install libnss3-tools` (Debian/Ubuntu), `sudo dnf install "
             "nss-tools` (Fedora/RHEL) or `sudo pacman -S nss` (Arch)")


def _agent_nicknames(db: nss.NssDb) -> list[str]:
    return [e.nickname for e in nss.list_entries(db) if e.nickname.startswith(CA_CN_PREFIX)]


def inspect_database(db: nss.NssDb, current_fp: str | None) -> DbStatus:
    """Whether ``db`` trusts the CA with fingerprint ``current_fp``, and which other agent
    CAs it holds; certutil failures end up in ``error``."""
    status = DbStatus(db.path, db.browser)
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


def _exit_code(action: str, results: list[DbStatus]) -> int:
    if any(r.error for r in results):
        return EXIT_INCOMPLETE
    if action == "status":
        return EXIT_OK if results and all(r.trusted for r in results) else EXIT_INCOMPLETE
    if action == "install":
        return EXIT_OK if results and all(r.trusted and not r.stale for r in results) \
            else EXIT_INCOMPLETE
    return EXIT_OK if all(not r.stale and not r.trusted for r in results) else EXIT_INCOMPLETE


def _print_human(action: str, results: list[DbStatus]) -> None:
    """What a person reads, in the CLI's language (``--json`` stays English)."""
    if not results:
        print(_("no browser certificate databases found"))
    for r in results:
        if r.error:
            state = _("ERROR: {error}").format(error=r.error)
        elif action == "remove":
            state = _("removed") if not r.stale and not r.trusted else _("still present")
        else:
            state = _("trusted") if r.trusted else _("NOT trusted")
            if r.stale:
                state += "; " + _("stale agent CAs: {names}").format(names=", ".join(r.stale))
        print(f"{r.browser:20} {r.path}: {state}")
    if action == "install" and results:
        print(_("restart running browsers for the change to take effect"))
