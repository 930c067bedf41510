"""The user's own answers to consent dialogs, kept in ``<data dir>/grants.json``.

Only "allow always", "deny" and "block this site" are stored; "allow once" lives on the
connection.  Each origin has one entry with the permissions granted and the permissions
denied (a permission is never in both), and whether the user blocked the origin outright.
The file is rewritten whole, atomically, mode 0600.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agent import paths
from agent.policy.origin import Origin, OriginError, parse_origin
from agent.policy.rules import Permission, RuleError, parse_permissions

log = logging.getLogger(__name__)

GRANTS_FILE = "grants.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class UserGrant:
    origin: Origin
    permissions: frozenset[Permission]
    denied: frozenset[Permission]
    granted_at: str  # ISO 8601 UTC of the user's latest answer for this origin
    blocked: bool = False  # "block this site": refused at the handshake until revoked

    def to_json(self) -> dict[str, object]:
        entry: dict[str, object] = {"origin": self.origin.serialize(),
                                    "permissions": sorted(p.value for p in self.permissions),
                                    "denied": sorted(p.value for p in self.denied),
                                    "granted_at": self.granted_at}
        if self.blocked:
            entry["blocked"] = True
        return entry


# From the origin's current entry to its new (granted, denied) sets.
_Change = Callable[[UserGrant], tuple[frozenset[Permission], frozenset[Permission]]]


class GrantStore:
    """Thread-safe: dialogs answer on UI threads while the server reads on its loop."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else paths.data_dir() / GRANTS_FILE
        self._lock = threading.Lock()
        self._grants: dict[Origin, UserGrant] = self._load()

    def get(self, origin: Origin) -> UserGrant | None:
        with self._lock:
            return self._grants.get(origin)

    def all(self) -> list[UserGrant]:
        """Every stored entry, sorted by origin (for the tray's list)."""
        with self._lock:
            return sorted(self._grants.values(), key=lambda g: g.origin.serialize())

    def grant(self, origin: Origin, permissions: Iterable[Permission]) -> UserGrant:
        wanted = frozenset(permissions)
        if Permission.LIST in wanted:
            raise ValueError("'list' is granted only by policy, never by the user")
        return self._update(origin, lambda g: (g.permissions | wanted, g.denied - wanted))

    def deny(self, origin: Origin, permissions: Iterable[Permission]) -> UserGrant:
        refused = frozenset(permissions)
        return self._update(origin, lambda g: (g.permissions - refused, g.denied | refused))

    def block(self, origin: Origin) -> UserGrant:
        """"Block this site": drop the origin's grants and refuse it from now on."""
        return self._update(origin, lambda g: (frozenset(), g.denied), blocked=True)

    def revoke(self, origin: Origin) -> bool:
        """Forget every answer for ``origin`` (grants, denials, a block); True if one
        existed."""
        with self._lock:
            if origin not in self._grants:
                return False
            remaining = dict(self._grants)
            del remaining[origin]
            self._save(remaining)
            self._grants = remaining
            return True

    def _update(self, origin: Origin, change: _Change, blocked: bool | None = None
                ) -> UserGrant:
        with self._lock:
            old = self._grants.get(origin) or UserGrant(origin, frozenset(), frozenset(), "")
            granted, denied = change(old)
            new = UserGrant(origin, granted, denied, _now(),
                            old.blocked if blocked is None else blocked)
            updated = {**self._grants, origin: new}
            self._save(updated)  # the in-memory state changes only once the file has
            self._grants = updated
            return new

    def _load(self) -> dict[Origin, UserGrant]:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
                raise ValueError("unknown format")
            entries = data["grants"]
            if not isinstance(entries, list):
                raise ValueError("grants is not a list")
        except (ValueError, KeyError):
            self._set_aside()
            return {}
        grants: dict[Origin, UserGrant] = {}
        for entry in entries:
            grant = _entry_or_none(entry)
            if grant is None:
                log.warning("ignoring an invalid entry in %s", self.path)
                continue
            grants[grant.origin] = grant
        return grants

    def _set_aside(self) -> None:
        """Keep a damaged file for inspection; losing grants only means asking again."""
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        log.warning("%s is damaged; moved to %s and starting with no grants",
                    self.path, aside.name)
        os.replace(self.path, aside)

    def _save(self, grants: dict[Origin, UserGrant]) -> None:
        payload = {"version": FORMAT_VERSION,
                   "grants": [g.to_json() for g in sorted(grants.values(),
                                                          key=lambda g: g.origin.serialize())]}
        write_private_atomically(self.path, json.dumps(payload, indent=2) + "\n")


def write_private_atomically(path: Path, text: str) -> None:
    """Write via a sibling temp file and rename, so a crash leaves the old or the new file,
    never half of one; created 0600 because grants reveal which sites the user visits."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            if hasattr(os, "fchmod"):  # umask cannot widen 0600, but an odd one can narrow it
                os.fchmod(handle.fileno(), 0o600)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _entry_or_none(entry: object) -> UserGrant | None:
    if not isinstance(entry, dict):
        return None
    try:
        origin = parse_origin(entry["origin"])
        granted = parse_permissions(entry.get("permissions", []))
        denied = parse_permissions(entry.get("denied", []))
        granted_at = entry.get("granted_at", "")
        blocked = entry.get("blocked", False)
    except (KeyError, OriginError, RuleError, TypeError):
        return None
    if not isinstance(granted_at, str) or not isinstance(blocked, bool):
        return None
    # A hand-edited file cannot give itself 'list', a denial beats a grant, and a blocked
    # origin keeps no grant.
    granted = frozenset() if blocked else granted - denied - {Permission.LIST}
    return UserGrant(origin, granted, denied, granted_at, blocked)


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
