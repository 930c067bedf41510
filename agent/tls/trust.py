"""``imza-agent trust install | status | remove``: the local CA as a browser trust anchor.

Where the CA goes is the platform's (``agent.platform.current().trust_store``): on Linux the
user's NSS databases edited with ``certutil`` (``trust_nss.py``), on Windows the user's
``Root`` store through CryptoAPI, on macOS the login keychain with ``security``, and on
those two Firefox reads the OS store (docs/platforms.md).

The agent itself installs the CA at every start where the platform allows that without
asking (``agent/daemon/first_run.py``: Linux); these commands record what they did in the
same state file (``trust_state.py``), so an explicit ``remove`` is respected by later starts
until the next ``install``.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Literal

from agent import paths
from agent.i18n import _
from agent.platform import current as current_platform
from agent.platform.base import CaCert, TrustResult, TrustStore
from agent.tls import nss, trust_state
from agent.tls.material import ensure_tls_material, load_tls_material
from agent.tls.trust_nss import inspect_database, nickname_for

__all__ = ["DbStatus", "inspect_database", "install_trust", "main", "nickname_for",
           "remove_trust", "trust_status"]

Action = Literal["install", "status", "remove"]

EXIT_OK = 0
EXIT_INCOMPLETE = 1  # some store failed, or (status) the CA is not trusted everywhere
EXIT_UNSUPPORTED = 2  # unknown action
EXIT_NO_CERTUTIL = 3

DbStatus = TrustResult  # the name the Linux-only version had


def store_for(home: Path | None = None) -> TrustStore:
    return current_platform().trust_store(_home(home))


def trust_status(*, home: Path | None = None, tls_dir: Path | None = None) -> list[DbStatus]:
    """Per store: is the current CA trusted, and which stale generations are there.
    Read-only: never generates material or creates a database."""
    store = store_for(home)
    store.require_tools()
    return store.status(_current_fingerprint(tls_dir))


def install_trust(*, home: Path | None = None, tls_dir: Path | None = None,
                  now: dt.datetime | None = None) -> list[DbStatus]:
    """Trust the current CA in every store (on Linux creating ``~/.pki/nssdb`` when
    missing), generating or renewing material as ``ensure_tls_material`` does, and remove
    stale generations."""
    store = store_for(home)
    store.require_tools()
    material = ensure_tls_material(_tls_dir(tls_dir), now=now)
    results = store.install(CaCert(material.ca_cert_path, material.ca_fingerprint_sha256))
    trust_state.save(_tls_dir(tls_dir), trust_state.TrustState(
        material.ca_fingerprint_sha256,
        {str(r.path): s for r in results
         if r.trusted and (s := trust_state.stamp_of(Path(r.path))) is not None}))
    return results


def remove_trust(*, home: Path | None = None, tls_dir: Path | None = None) -> list[DbStatus]:
    """Remove every generation of our CA from every store."""
    store = store_for(home)
    store.require_tools()
    results = store.remove()
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


# nss.INSTALL_HINT in the CLI's language (a test checks the English text is the same).
INSTALL_HINT_TEXT = ("certutil (from the NSS tools) is required: install it with "
                     "`sudo apt install libnss3-tools` (Debian/Ubuntu), `sudo dnf install "
                     "nss-tools` (Fedora/RHEL) or `sudo pacman -S nss` (Arch)")


def install_hint() -> str:
    """How to install certutil, in the CLI's language."""
    return _("certutil (from the NSS tools) is required: install it with "
             "`sudo apt install libnss3-tools` (Debian/Ubuntu), `sudo dnf install "
             "nss-tools` (Fedora/RHEL) or `sudo pacman -S nss` (Arch)")


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
