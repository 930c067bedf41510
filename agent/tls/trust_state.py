"""What the agent last did to the browsers' trust stores, so a start can tell in a few
``stat`` calls that nothing changed (``agent/daemon/first_run.py``).

Kept as ``browser-trust.json`` beside the TLS material: the CA fingerprint that was
installed, and per database the ``cert9.db`` size and modification time seen right after.
A database whose file changed since (the user removed the CA, a browser rewrote it) or
that is new (a profile created later) is looked at again; the rest is trusted as before.

``imza-agent trust remove`` records ``opted_out``: the user took the CA out on purpose, so
starts leave the stores alone until ``imza-agent trust install`` (or the tray's repair).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

STATE_FILE = "browser-trust.json"
_FORMAT = 1


@dataclass(frozen=True)
class Stamp:
    size: int
    mtime_ns: int


@dataclass
class TrustState:
    fingerprint: str | None = None  # the CA installed last (SHA-256 hex)
    databases: dict[str, Stamp] = field(default_factory=dict)  # db path -> cert9.db stamp
    opted_out: bool = False


def stamp_of(db_path: Path) -> Stamp | None:
    try:
        info = (db_path / "cert9.db").stat()
    except OSError:
        return None
    return Stamp(info.st_size, info.st_mtime_ns)


def load(tls_dir: Path) -> TrustState:
    """The recorded state; an unreadable or foreign file counts as none (look again)."""
    try:
        data = json.loads((tls_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return TrustState()
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        return TrustState()
    databases: dict[str, Stamp] = {}
    raw = data.get("databases")
    for path, value in (raw.items() if isinstance(raw, dict) else ()):
        if (isinstance(value, list) and len(value) == 2
                and all(isinstance(v, int) for v in value)):
            databases[str(path)] = Stamp(value[0], value[1])
    fingerprint = data.get("fingerprint")
    return TrustState(fingerprint if isinstance(fingerprint, str) else None, databases,
                      data.get("opted_out") is True)


def save(tls_dir: Path, state: TrustState) -> None:
    data = {"format": _FORMAT, "fingerprint": state.fingerprint,
            "opted_out": state.opted_out,
            "databases": {p: [s.size, s.mtime_ns] for p, s in sorted(state.databases.items())}}
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{STATE_FILE}.", dir=tls_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, tls_dir / STATE_FILE)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise
