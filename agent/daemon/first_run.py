"""At every start: make the user's browsers trust the agent's local CA, so the first visit
to a portal shows no certificate warning (docs/tls.md, "At every start").

The first start installs the CA into every NSS database of the user (Chromium's
``~/.pki/nssdb``, created when missing, each Firefox profile, snap and flatpak stores) and
says so in one line.  Later starts compare each ``cert9.db``'s size and time with what was
recorded (``agent/tls/trust_state.py``): when nothing changed they run no program and
print nothing; a profile created since, or a database the user changed, is looked at (and
fixed) again; a renewed CA replaces the one this agent installed before.

Only what this agent installed is ever removed (its previous generation), never another
agent's CA: two agents for one user (a packaged one and a development checkout) must not
take turns deleting each other.  ``imza-agent trust remove`` opts out until ``trust
install``.  Where trust cannot be installed (no ``certutil``, a database that refuses)
the agent says so once per start; pages then reach it through the browser extension, and
``imza-agent doctor`` explains.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from agent.platform import current as current_platform
from agent.platform import sandboxed_browsers
from agent.tls import nss, trust, trust_state
from agent.tls.material import TlsMaterial

log = logging.getLogger("imza_agent.first_run")

RESTART_HINT = "restart the browser if it was open"
FALLBACK_HINT = ("pages there reach the agent through the browser extension instead "
                 "(`imza-agent doctor` explains)")
SANDBOX_HINT = ("pages there cannot reach the agent over wss:// (`imza-agent doctor` "
                "explains what works)")


@dataclass
class TrustOutcome:
    """What one start did: ``looked`` is False when the cheap check found nothing to do."""

    looked: bool = False
    installed: list[str] = field(default_factory=list)  # labels newly trusted now
    trusted: list[str] = field(default_factory=list)  # labels that already trusted it
    failed: dict[str, str] = field(default_factory=dict)  # label -> why
    # Sandboxed browsers whose store could not be reached: label -> why.
    unreachable: dict[str, str] = field(default_factory=dict)
    unavailable: str | None = None  # why nothing could be done at all
    opted_out: bool = False

    def message(self) -> str | None:
        """The one line for the log and console, or None when there is nothing to say."""
        if self.unavailable:
            return ("browsers cannot be made to trust the agent's local certificate: "
                    f"{self.unavailable}; {FALLBACK_HINT}")
        parts = []
        if self.installed:
            parts.append("your browsers now trust the agent's local certificate "
                         f"({', '.join(self.installed)}); {RESTART_HINT}")
        if self.failed:
            why = "; ".join(f"{label}: {reason}" for label, reason in self.failed.items())
            parts.append(f"could not install the agent's local certificate in {why}; "
                         f"{FALLBACK_HINT}")
        if self.unreachable:
            why = "; ".join(f"{label} {reason}" for label, reason in self.unreachable.items())
            parts.append(f"{why}; {SANDBOX_HINT}")
        return " — ".join(parts) or None


def ensure_browser_trust(material: TlsMaterial, *, home: Path | None = None,
                         tls_dir: Path | None = None) -> TrustOutcome:
    """Install ``material``'s CA wherever it is missing and log the one line that says
    so; cheap (only ``stat`` calls) when nothing changed since the last start."""
    try:
        outcome = _ensure(material, home=home or Path.home(),
                          tls_dir=tls_dir or material.ca_cert_path.parent)
    except OSError as exc:  # an unreadable home or data dir must not stop the agent
        outcome = TrustOutcome(looked=True, unavailable=f"{exc.strerror or exc}")
    line = outcome.message()
    if line is not None:
        problem = outcome.unavailable or outcome.failed or outcome.unreachable
        (log.warning if problem else log.info)("%s", line)
    return outcome


def _ensure(material: TlsMaterial, *, home: Path, tls_dir: Path) -> TrustOutcome:
    if not current_platform().trust_automatic:
        # Windows and macOS ask the user before adding a root: `imza-agent trust` there.
        return TrustOutcome(unavailable="automatic installation is done on Linux only "
                                        "(see docs/platforms.md)")
    state = trust_state.load(tls_dir)
    if state.opted_out:
        return TrustOutcome(opted_out=True)
    fingerprint = material.ca_fingerprint_sha256
    if state.fingerprint == fingerprint and _unchanged(home, state):
        return TrustOutcome()
    try:
        nss.certutil_path()
        databases = nss.discover_databases(home, create_chromium=True)
    except nss.CertutilMissing:
        return TrustOutcome(looked=True, unavailable="certutil is missing (install "
                                                     "libnss3-tools)")
    except nss.NssError as exc:  # ~/.pki/nssdb could not be created
        databases = nss.discover_databases(home)
        outcome = TrustOutcome(looked=True, failed={"Chromium": str(exc)})
    else:
        outcome = TrustOutcome(looked=True)
    # Our own earlier generations: the one recorded, and the one a renewal just replaced.
    ours_before = {fp for fp in (state.fingerprint, material.previous_ca_fingerprint_sha256)
                   if fp and fp != fingerprint}
    recorded: dict[str, trust_state.Stamp] = {}
    for db in databases:
        key = str(db.path)
        if state.fingerprint == fingerprint and state.databases.get(key) == \
                trust_state.stamp_of(db.path):
            outcome.trusted.append(db.label)
            recorded[key] = state.databases[key]
            continue
        try:
            added = _trust_one(db, material, ours_before)
        except nss.NssError as exc:
            outcome.failed[db.label] = str(exc)
            continue
        (outcome.installed if added else outcome.trusted).append(db.label)
        stamp = trust_state.stamp_of(db.path)
        if stamp is not None:
            recorded[key] = stamp
    trust_state.save(tls_dir, trust_state.TrustState(fingerprint, recorded))
    outcome.unreachable = _unreachable_sandboxed(home, databases)
    return outcome


def _unreachable_sandboxed(home: Path, databases: list[nss.NssDb]) -> dict[str, str]:
    """Snap/flatpak browsers installed here whose certificate store the agent did not
    reach: it does not know where that browser keeps it, or the browser never ran."""
    reached = [db.path for db in databases]
    found = {}
    for browser in sandboxed_browsers.detect(home):
        if not browser.store_known:
            found[browser.label] = "keeps its certificates where the agent cannot add its own"
        elif not any(path.is_relative_to(d) for d in browser.nss_dirs for path in reached):
            found[browser.label] = ("has no certificate store yet (start it once; the agent "
                                    "adds its certificate at its next start)")
    return found


def _unchanged(home: Path, state: trust_state.TrustState) -> bool:
    """Every database there is now was seen, unchanged, last time (stat calls only)."""
    if trust_state.stamp_of(home / nss.CHROMIUM_DBS[0][1]) is None:
        return False  # ~/.pki/nssdb is gone (or was never made): create it
    current = nss.discover_databases(home)
    return bool(current) and all(
        state.databases.get(str(db.path)) == trust_state.stamp_of(db.path) for db in current)


def _trust_one(db: nss.NssDb, material: TlsMaterial, ours_before: set[str]) -> bool:
    """Make ``db`` trust the CA; True when it did not before."""
    status = trust.inspect_database(db, material.ca_fingerprint_sha256)
    if status.error:
        raise nss.NssError(status.error)
    present = {entry.nickname for entry in nss.list_entries(db)}
    for fingerprint in ours_before:
        if trust.nickname_for(fingerprint) in present:
            nss.delete(db, trust.nickname_for(fingerprint))
    if status.trusted:
        return False
    nss.add_trusted_ca(db, trust.nickname_for(material.ca_fingerprint_sha256),
                       material.ca_cert_path)
    after = trust.inspect_database(db, material.ca_fingerprint_sha256)
    if not after.trusted:
        raise nss.NssError(after.error or f"{db.path}: the certificate is still not trusted")
    return True
