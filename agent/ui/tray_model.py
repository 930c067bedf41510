"""What the tray shows and what its menu does, on the daemon's side (no Qt).

``tray_facts`` gathers the facts as JSON-able data (the ``tray`` frame of
docs/ui-process.md); the UI process draws them and sends back ``action`` frames, which
``run_action`` carries out here.  The icon's status is ``agent.doctor.verdict`` over the
same report keys ``doctor`` reads, so the tray can never say "problem" while the doctor
says "none".  PIN change/unblock and quit open dialogs or stop the daemon: the UI-process
client (agent/ui/process/) routes those itself.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

from agent import __version__, i18n
from agent.doctor.verdict import verdict
from agent.platform import autostart

log = logging.getLogger(__name__)

# Every action the menu may send (docs/ui-process.md, "UI → daemon").
ACTIONS = ("revoke", "language", "autostart", "repair_trust", "open_journal",
           "pin_change", "pin_unblock", "refresh", "quit")
# The ones ``run_action`` carries out; the others need the UI-process client.
MODEL_ACTIONS = ("revoke", "language", "autostart", "repair_trust", "open_journal",
                 "refresh")
LEVELS = ("ok", "attention", "problem")


class TrayStatus(TypedDict):
    level: str  # one of LEVELS: agent.doctor.verdict's
    problems: list[str]  # each problem as a sentence in the daemon's language


class TrayFacts(TypedDict):
    """The ``tray`` frame's ``facts``: what the icon, the tooltip and the menu show."""

    version: str
    ports: dict[str, int]  # transport → port it listens on
    status: TrayStatus
    grants: list[list[Any]]  # [origin, [permission, ...]]
    language: str
    autostart: bool
    trust: bool | None  # the browsers trust the agent's CA; None: cannot tell
    journal: str | None
    readers: list[dict[str, Any]]  # {"name", "card": bool}
    tokens: list[dict[str, Any]]  # {"label", "certificates": int, "demo": bool}
    pin_tokens: list[list[str]]  # [key, name]: the key goes back in pin_change/pin_unblock
    unavailable: dict[str, int]  # transport → the configured port another program holds


class ActionError(ValueError):
    """An action this module does not carry out, or arguments it cannot use."""


# --- the report the verdict reads -------------------------------------------------------------

def _pcsc_service(runtime: Any) -> str | None:
    """The doctor's words for the watched smart card service (None: not watched)."""
    pcsc = getattr(runtime, "pcsc", None)
    if pcsc is None:
        return None
    from agent.pcsc.watcher import ServiceState

    service = pcsc.status.service
    if service is ServiceState.NOT_RUNNING:
        return "not-running"
    return "unavailable" if service is ServiceState.UNAVAILABLE else "running"


TRUST_FRESH_S = 60.0  # certutil runs once per database: not on every redraw
_trust_cache: dict[int, tuple[float, dict[str, Any] | None]] = {}


def _trust(runtime: Any) -> dict[str, Any] | None:
    """The doctor's trust section (certutil per database: run it off the event loop),
    read again after TRUST_FRESH_S or a repair."""
    from agent.doctor.trust import trust_report

    cached = _trust_cache.get(id(runtime))
    if cached is not None and time.monotonic() - cached[0] < TRUST_FRESH_S:
        return cached[1]
    report: dict[str, Any] | None
    try:
        report = trust_report(runtime.config, commands=False)
    except Exception as exc:  # no certutil, an unreadable profile: the trust is unknown
        log.info("the TLS trust could not be read: %s", exc)
        report = None
    _trust_cache[id(runtime)] = (time.monotonic(), report)
    return report


def runtime_report(runtime: Any, trust: dict[str, Any] | None) -> dict[str, Any]:
    """The subset of the doctor's report (same keys, same shapes) the running daemon
    knows without opening the key stores a second time."""
    transport = runtime.transport
    report: dict[str, Any] = {
        "problems": [dict(p.as_dict()) for p in runtime.stores.problems],
        "transports": {"running": True, "ports": dict(transport.ports),
                       "unavailable": dict(transport.unavailable)},
        "pcsc": {"service": _pcsc_service(runtime)},
    }
    if trust is not None:
        report["trust"] = trust
    return report


def trust_state(trust: dict[str, Any] | None) -> bool | None:
    """True: every browser database trusts the agent; False: one does not; None: unknown
    (no certutil, no database, wss:// off)."""
    if not trust or not trust.get("wssEnabled"):
        return None
    known = [row["trusted"] for row in trust.get("databases", ())
             if row.get("trusted") is not None and not row.get("error")]
    return all(known) if known else None


# --- the facts ------------------------------------------------------------------------------

async def _tokens(runtime: Any) -> list[dict[str, Any]]:
    tokens = await runtime.stores.tokens()
    certificates = await runtime.stores.certificates()
    return [{"label": t.label, "demo": bool(t.demo),
             "certificates": sum(1 for c in certificates if c.token.token_id == t.token_id
                                 and c.token.store_id == t.store_id)}
            for t in tokens]


async def pin_tokens(runtime: Any) -> list[Any]:
    """The tokens whose PIN the person may change or unblock (``ManagedToken``s)."""
    from agent.pinmgmt.use_case import manageable_tokens

    return list(await manageable_tokens([m.store for m in runtime.stores.managed]))


async def pin_token(runtime: Any, key: str) -> Any:
    """The ``ManagedToken`` a ``pin_change``/``pin_unblock`` action names, or None."""
    for item in await pin_tokens(runtime):
        if item.key == key:
            return item
    return None


def _readers(runtime: Any) -> list[dict[str, Any]]:
    pcsc = getattr(runtime, "pcsc", None)
    if pcsc is None:
        return []
    return [{"name": name, "card": atr is not None}
            for name, atr in sorted(dict(pcsc.status.readers).items())]


async def tray_facts(runtime: Any) -> TrayFacts:
    """TrayFacts: everything the icon, the tooltip and the menu show, as JSON."""
    trust = await asyncio.to_thread(_trust, runtime)
    tokens: list[dict[str, Any]] = []
    pins: list[list[str]] = []
    try:
        tokens = await _tokens(runtime)
        pins = [[item.key, item.name] for item in await pin_tokens(runtime)]
    except Exception:  # the stores' own problems are in the status below
        log.warning("listing the tokens for the tray failed", exc_info=True)
    # After the listing: a listing that failed is among the stores' problems now.
    judged = verdict(runtime_report(runtime, trust))
    status = TrayStatus(level=judged["level"], problems=list(judged["problems"]))
    server = runtime.config.server
    configured = {"wss": server.wss_port, "ws": server.ws_port}
    journal = getattr(runtime, "journal", None)
    return TrayFacts({
        "version": __version__,
        "ports": dict(runtime.transport.ports),
        "status": status,
        "grants": [[g.origin.serialize(), sorted(p.value for p in g.permissions)]
                   for g in runtime.policy.user_grants()],
        "language": i18n.current_language(),
        "autostart": autostart.enabled(),
        "trust": trust_state(trust),
        "journal": str(journal.path) if journal is not None else None,
        "readers": _readers(runtime),
        "tokens": tokens,
        "pin_tokens": pins,
        "unavailable": {t: configured.get(t, 0) for t in runtime.transport.unavailable},
    })


def watch_changes(runtime: Any, changed: Callable[[], None]) -> Callable[[], None]:
    """Call ``changed`` (on the event loop) when a token look saw something new (tokens
    or the stores' trouble): the periodic looks that find the same again cost nothing.
    Returns the call that stops it."""
    watch = getattr(runtime, "token_watch", None)
    if watch is None:
        return lambda: None
    seen: list[object] = []

    def look(snapshot: Any) -> None:
        key = (snapshot.tokens, snapshot.problem, tuple(runtime.stores.problems))
        if seen and seen[0] == key:
            return
        seen[:] = [key]
        changed()

    return watch.subscribe(look)  # type: ignore[no-any-return]


# --- the actions ----------------------------------------------------------------------------

def _text(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise ActionError(f"{key} missing")
    return value


def open_path(path: Path) -> bool:
    """Show ``path`` with the desktop's default program (the journal, or its folder when
    no journal was written yet). False where nothing can show it."""
    target = path if path.exists() else path.parent
    opener = shutil.which("xdg-open")
    if opener is None or not target.exists():
        log.warning("nothing can show the journal")
        return False
    subprocess.Popen([opener, str(target)], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)
    return True


async def run_action(runtime: Any, name: str, args: dict[str, Any]) -> None:
    """Carry out one of ``MODEL_ACTIONS``; the client sends the ``tray`` facts again
    afterwards (and for ``language`` the ``language`` frame)."""
    if name == "revoke":
        runtime.policy.revoke(_text(args, "origin"))
    elif name == "language":
        code = _text(args, "language")
        if code not in i18n.LANGUAGE_NAMES:
            raise ActionError("unknown language")
        from agent.ui.preferences import save_language

        i18n.set_language(code)
        save_language(code)  # found again after a restart (the config file still wins)
    elif name == "autostart":
        on = args.get("on")
        if not isinstance(on, bool):
            raise ActionError("on missing")
        await asyncio.to_thread(autostart.set_enabled, on)
    elif name == "repair_trust":
        from agent.tls.trust import install_trust

        try:
            await asyncio.to_thread(install_trust)
        finally:
            _trust_cache.pop(id(runtime), None)
    elif name == "open_journal":
        journal = getattr(runtime, "journal", None)
        if journal is not None:
            open_path(Path(journal.path))
    elif name == "refresh":
        return
    else:
        raise ActionError(f"not a tray-model action: {name}")

