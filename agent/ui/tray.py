"""The tray icon: the agent's state at a glance and its settings one click away.

The icon shows one of four states (running, a token present, waiting for the user, a
problem).  The menu lists the allowed sites (revoke), the tokens and certificates, the
language, the signing journal, start at login, the TLS trust status (with a repair), and
about/quit.  pystray draws it: with PyGObject present its appindicator/gtk backends give
a real menu; the plain xorg backend has no menus, so a click there opens the same menu
as a Tk popup on the dialogs' thread.

The menu is described once as ``Entry`` trees and turned into either kind of menu.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from agent import i18n
from agent.i18n import _
from agent.platform import autostart
from agent.ui.preferences import save_language

if TYPE_CHECKING:
    from agent.daemon.token_watch import TokenSnapshot

log = logging.getLogger(__name__)

APP_ID = "imza-agent"


class TrayState(enum.StrEnum):
    RUNNING = "running"
    TOKEN = "token"
    WAITING = "waiting"
    PROBLEM = "problem"


STATE_COLOURS = {TrayState.RUNNING: "#4a6585", TrayState.TOKEN: "#2e7d32",
                 TrayState.WAITING: "#e0a000", TrayState.PROBLEM: "#c62828"}


def icon_image(state: TrayState, size: int = 64) -> Any:
    """A round badge in the state's colour with a white pen nib: readable at 16 px."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((2, 2, size - 3, size - 3), fill=STATE_COLOURS[state])
    s = size / 64
    nib = [(32 * s, 12 * s), (46 * s, 36 * s), (32 * s, 52 * s), (18 * s, 36 * s)]
    draw.polygon(nib, fill="white")
    draw.ellipse((29 * s, 31 * s, 35 * s, 37 * s), fill=STATE_COLOURS[state])
    if state is TrayState.PROBLEM:
        draw.rectangle((30 * s, 40 * s, 34 * s, 44 * s), fill=STATE_COLOURS[state])
    return image


# --- what the menu shows and does ------------------------------------------------------------

@dataclass(frozen=True)
class TrayFacts:
    """A snapshot for one opening of the menu."""

    version: str
    ports: dict[str, int]
    grants: list[tuple[str, list[str]]] = field(default_factory=list)  # origin, permissions
    tokens: list[str] = field(default_factory=list)  # "label — n certificate(s)" lines
    trust: bool | None = None  # the local CA trusted by the browsers; None: unknown
    journal: Path | None = None
    # Set when PC/SC is watched but the smart card service does not answer.
    smartcard_down: bool = False
    # Transports whose port another program holds: transport → port.
    unavailable: dict[str, int] = field(default_factory=dict)
    # Tokens whose PIN the person may change or unblock: (key, name) pairs.
    pin_tokens: list[tuple[str, str]] = field(default_factory=list)


class TrayActions(Protocol):
    def facts(self) -> TrayFacts: ...
    def revoke(self, origin: str) -> None: ...
    def repair_trust(self) -> None: ...
    def quit(self) -> None: ...
    def manage_pin(self, key: str, action: str) -> None:
        """Open the change ("change") or unblock ("unblock") form for the token ``key``."""


@dataclass
class Entry:
    text: str
    action: Callable[[], None] | None = None
    children: list[Entry] | None = None
    checked: bool | None = None
    radio: bool = False
    enabled: bool = True


# --- start at login (XDG autostart; agent/platform/autostart.py knows the rules) ------------

def autostart_file(env: dict[str, str] | None = None) -> Path:
    """The user's own entry (which overrides the package's system-wide one)."""
    return autostart.user_file(env)


def autostart_enabled(env: dict[str, str] | None = None) -> bool:
    return autostart.enabled(env)


def set_autostart(enabled: bool, env: dict[str, str] | None = None) -> Path:
    """Turn start at login on or off; returns the user's entry path (which "on" removes
    again where the system entry applies)."""
    autostart.set_enabled(enabled, env)
    return autostart.user_file(env)


# --- the menu ------------------------------------------------------------------------------

def _open(path: Path) -> None:
    opener = shutil.which("xdg-open")
    if opener is None:
        log.warning("no xdg-open to show %s", path)
        return
    subprocess.Popen([opener, str(path)], stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)


def _toggle_autostart() -> None:
    try:
        set_autostart(not autostart_enabled())
    except OSError as exc:  # a read-only or broken ~/.config: the menu shows the state
        log.warning("start at login could not be changed: %s", exc)


def menu_entries(actions: TrayActions, on_language: Callable[[str], None]) -> list[Entry]:
    facts = actions.facts()
    sites = [Entry(origin, children=[
        Entry(_("Allowed: {permissions}").format(permissions=", ".join(perms) or "—"),
              enabled=False),
        Entry(_("Revoke"), action=functools.partial(actions.revoke, origin))])
        for origin, perms in facts.grants] or [Entry(_("No sites allowed yet"), enabled=False)]
    tokens = [Entry(line, enabled=False) for line in facts.tokens] or [
        Entry(_("No token found"), enabled=False)]
    if facts.smartcard_down:
        tokens.insert(0, Entry(_("The smart card service is not running"), enabled=False))
    languages = [Entry(name, action=functools.partial(on_language, code), radio=True,
                       checked=i18n.current_language() == code)
                 for code, name in i18n.LANGUAGE_NAMES.items()]
    trust_text = {True: _("Browsers trust the agent's certificate"),
                  False: _("Browsers do not trust the agent's certificate"),
                  None: _("Trust status unknown")}[facts.trust]
    ports = ", ".join(f"{name} {port}" for name, port in sorted(facts.ports.items()))
    entries = [
        Entry(_("Port {port} is used by another program: pages cannot reach the agent "
                "over {transport}").format(port=port, transport=transport), enabled=False)
        for transport, port in sorted(facts.unavailable.items())]
    entries += [
        Entry(_("Allowed sites"), children=sites),
        Entry(_("Tokens and certificates"), children=tokens),
        Entry(_("Change PIN…"), children=_pin_entries(actions, facts, "change")),
        Entry(_("Unblock PIN…"), children=_pin_entries(actions, facts, "unblock")),
        Entry(_("Language"), children=languages),
    ]
    if facts.journal is not None:
        journal = facts.journal
        entries.append(Entry(_("Open the signing journal"), action=lambda: _open(journal)))
    entries += [
        Entry(_("Start at login"), checked=autostart_enabled(), action=_toggle_autostart),
        Entry(_("TLS trust"), children=[
            Entry(trust_text, enabled=False),
            Entry(_("Repair"), action=actions.repair_trust)]),
        Entry(_("About"), children=[
            Entry(f"imza-agent {facts.version}", enabled=False),
            Entry(_("Ports: {ports}").format(ports=ports or "—"), enabled=False)]),
        Entry(_("Quit"), action=actions.quit),
    ]
    return entries


def _pin_entries(actions: TrayActions, facts: TrayFacts, action: str) -> list[Entry]:
    """One entry per token: the person chooses which token's PIN."""
    return [Entry(name, action=functools.partial(actions.manage_pin, key, action))
            for key, name in facts.pin_tokens] or [Entry(_("No token found"), enabled=False)]


def _pystray_menu(build: Callable[[], Sequence[Entry]]) -> Any:
    import pystray

    def convert(entry: Entry) -> Any:
        if entry.children is not None:
            children = entry.children
            return pystray.MenuItem(entry.text, pystray.Menu(*[convert(c) for c in children]))
        action = entry.action
        checked = entry.checked
        return pystray.MenuItem(
            entry.text, (lambda _icon, _item: action()) if action else None,
            checked=(lambda _item: bool(checked)) if checked is not None else None,
            radio=entry.radio, enabled=entry.enabled)

    return pystray.Menu(lambda: [convert(e) for e in build()])


def tk_popup(root: Any, entries: Sequence[Entry]) -> Any:
    """The same menu as a Tk popup at the pointer (for trays without menus)."""
    import tkinter

    def fill(menu: tkinter.Menu, items: Sequence[Entry]) -> None:
        for entry in items:
            state: Literal["normal", "disabled"] = "normal" if entry.enabled else "disabled"
            command: Callable[[], object] | str = entry.action or ""  # "": no command
            if entry.children is not None:
                sub = tkinter.Menu(menu, tearoff=False)
                fill(sub, entry.children)
                menu.add_cascade(label=entry.text, menu=sub, state=state)
            elif entry.checked is not None:
                var = tkinter.BooleanVar(menu, value=entry.checked)
                menu.add_checkbutton(label=entry.text, variable=var, state=state,
                                     command=command)
            else:
                menu.add_command(label=entry.text, command=command, state=state)

    menu = tkinter.Menu(root, tearoff=False)
    fill(menu, entries)
    menu.tk_popup(root.winfo_pointerx(), root.winfo_pointery())
    return menu


class Tray:
    def __init__(self, actions: TrayActions, *, tk_runner: Any = None,
                 on_language: Callable[[str], None] = i18n.set_language) -> None:
        self.actions = actions
        self.tk_runner = tk_runner  # where the popup menu is drawn when the tray has none
        self.on_language = on_language
        self.state = TrayState.RUNNING
        self.icon: Any = None
        # Undo the subscriptions start_tray made (the token watch, the dialogs' listeners).
        self.detach: list[Callable[[], None]] = []
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._redraw = threading.Event()  # show_soon's state waits to be drawn
        self._drawer: threading.Thread | None = None

    def entries(self) -> list[Entry]:
        return menu_entries(self.actions, self.on_language)

    def _popup(self) -> None:
        if self.tk_runner is not None:
            entries = self.entries()
            self.tk_runner.call_soon(lambda: tk_popup(self.tk_runner.root, entries))

    def start(self) -> None:
        import pystray

        menu = _pystray_menu(self.entries)
        self.icon = pystray.Icon(APP_ID, icon_image(self.state), self.title(), menu=menu)
        if not self.icon.HAS_MENU:
            # xorg: a click runs the default item; make that the popup with everything.
            self.icon.menu = pystray.Menu(pystray.MenuItem(
                "imza-agent", lambda _icon, _item: self._popup(), default=True, visible=False))
            _hear_clicks(self.icon)
        self._thread = threading.Thread(target=self.icon.run, name="imza-tray", daemon=True)
        self._thread.start()
        if self.backend == "xorg":
            threading.Thread(target=self._ensure_docked, name="imza-tray-dock",
                             daemon=True).start()

    def _ensure_docked(self, delays: tuple[float, ...] = (1.0, 2.0, 4.0)) -> None:
        """pystray's xorg backend asks the tray host to dock the icon once. A host that
        is still starting (seen with trayer right after login) can lose that request and
        the icon never shows; ask again while the icon window has no parent but the root.
        """
        for delay in delays:
            if self._stopping.wait(delay) or self.icon is None or self._docked():
                return
            log.info("the tray host did not take the icon; asking again")
            self.icon.visible = False
            self.icon.visible = True

    def _docked(self) -> bool:
        window = getattr(self.icon, "_window", None)  # pystray's xorg icon window
        if window is None:
            return True  # nothing to check against: trust the backend
        try:
            tree = window.query_tree()
            return bool(tree.parent != tree.root)
        except Exception:  # the window or the display went away: nothing to dock
            return True

    @property
    def backend(self) -> str:
        return type(self.icon).__module__.rsplit(".", 1)[-1].lstrip("_")

    def title(self) -> str:
        return {TrayState.RUNNING: _("imza-agent is running"),
                TrayState.TOKEN: _("imza-agent: a token is ready"),
                TrayState.WAITING: _("imza-agent is waiting for you"),
                TrayState.PROBLEM: _("imza-agent has a problem")}[self.state]

    def set_state(self, state: TrayState) -> None:
        if state is self.state:
            return
        self.state = state
        if self.icon is not None:
            self._draw_state()

    def show_soon(self, state: TrayState) -> None:
        """``set_state`` for the event loop: the state at once, the drawing on a thread of
        the tray's own.  pystray's X backend makes its caller wait until the icon's thread
        has drawn, and that thread may be slow or gone: an event loop stuck there could
        not even begin a stop."""
        if state is self.state:
            return
        self.state = state
        if self.icon is None:
            return
        if self._drawer is None:
            self._drawer = threading.Thread(target=self._draw_changes, name="imza-tray-draw",
                                            daemon=True)
            self._drawer.start()
        self._redraw.set()

    def _draw_changes(self) -> None:
        while True:
            self._redraw.wait()
            self._redraw.clear()
            if self._stopping.is_set():
                return
            with contextlib.suppress(Exception):  # the icon may be going with the display
                self._draw_state()

    def _draw_state(self) -> None:
        self.icon.icon = icon_image(self.state)
        self.icon.title = self.title()

    def unsubscribe(self) -> None:
        """Undo what start_tray subscribed (the token watch, the dialogs' listeners)."""
        for detach in self.detach:
            with contextlib.suppress(Exception):
                detach()
        self.detach.clear()

    def stop(self) -> None:
        self._stopping.set()
        self._redraw.set()
        self.unsubscribe()
        if self.icon is not None:
            with contextlib.suppress(Exception):
                self.icon.stop()
        if self._thread is not None:
            self._thread.join(5)


def _hear_clicks(icon: Any) -> None:
    """pystray's xorg icon handles button presses but never asks X for them (its window's
    event mask lacks ButtonPress), so a click, and with it the menu and Quit, would never
    arrive; ask for them on its window."""
    window = getattr(icon, "_window", None)
    display = getattr(icon, "_display", None)
    if window is None or display is None:
        return
    from Xlib import X  # type: ignore[import-untyped]  # pystray's own X library

    window.change_attributes(
        event_mask=X.ExposureMask | X.StructureNotifyMask | X.ButtonPressMask)
    display.flush()


# --- wiring to the running agent ---------------------------------------------------------------

class RuntimeActions:
    """TrayActions over an ``AgentRuntime``; the tray thread reaches the event loop's
    objects only through ``run_coroutine_threadsafe``."""

    def __init__(self, runtime: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.runtime = runtime
        self.loop = loop
        self._pin_items: dict[str, Any] = {}  # key → ManagedToken, as the menu last saw

    def _await(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def facts(self) -> TrayFacts:
        from agent import __version__

        runtime = self.runtime
        grants = [(g.origin.serialize(), sorted(p.value for p in g.permissions))
                  for g in runtime.policy.user_grants()]
        lines: list[str] = []
        with contextlib.suppress(Exception):
            tokens = self._await(runtime.stores.tokens())
            certificates = self._await(runtime.stores.certificates())
            for token in tokens:
                count = sum(1 for c in certificates if c.token.token_id == token.token_id)
                lines.append(_("{token}: certificates {n}").format(token=token.label, n=count))
        trust: bool | None = None
        with contextlib.suppress(Exception):
            from agent.tls.trust import trust_status

            statuses = trust_status()
            trust = bool(statuses) and all(s.trusted for s in statuses if not s.error)
        journal = runtime.journal.path if getattr(runtime, "journal", None) else None
        server = runtime.config.server
        configured = {"wss": server.wss_port, "ws": server.ws_port}
        unavailable = {t: configured.get(t, 0) for t in runtime.transport.unavailable}
        return TrayFacts(__version__, dict(runtime.transport.ports), grants, lines, trust,
                         journal, smartcard_down=smartcard_down(runtime),
                         unavailable=unavailable, pin_tokens=self._pin_tokens())

    def _pin_tokens(self) -> list[tuple[str, str]]:
        from agent.pinmgmt.use_case import manageable_tokens

        stores = [m.store for m in self.runtime.stores.managed]
        items = []
        with contextlib.suppress(Exception):
            items = self._await(manageable_tokens(stores))
        self._pin_items = {item.key: item for item in items}
        return [(item.key, item.name) for item in items]

    def manage_pin(self, key: str, action: str) -> None:
        """Start the form on the event loop and return at once: the tray's thread must
        not wait for the person."""
        from agent.pinmgmt.desktop import run

        item = self._pin_items.get(key)
        ui = getattr(self.runtime, "ui", None)
        if item is None or ui is None or not hasattr(ui, "runner") or action not in (
                "change", "unblock"):
            log.warning("no PIN form: the token or the desktop is gone")
            return
        kind: Literal["change", "unblock"] = "change" if action == "change" else "unblock"
        asyncio.run_coroutine_threadsafe(run(ui, item, kind), self.loop)

    def revoke(self, origin: str) -> None:
        self.runtime.policy.revoke(origin)

    def repair_trust(self) -> None:
        from agent.tls.trust import install_trust

        try:
            install_trust()
        except Exception:
            log.exception("repairing the TLS trust failed")

    def quit(self) -> None:
        import signal

        os.kill(os.getpid(), signal.SIGTERM)  # the daemon's own orderly shutdown


def start_tray(runtime: Any) -> Tray | None:
    """The tray for a desktop run; None (logged) where no tray can be shown."""
    ui = getattr(runtime, "ui", None)
    runner = None
    with contextlib.suppress(Exception):
        runner = ui.runner() if ui is not None and hasattr(ui, "runner") else None
    def choose_language(code: str) -> None:
        i18n.set_language(code)
        save_language(code)  # found again after a restart (the config file still wins)

    tray = Tray(RuntimeActions(runtime, asyncio.get_running_loop()), tk_runner=runner,
                on_language=choose_language)
    try:
        tray.start()
    except Exception as exc:
        log.warning("no tray icon: %s", exc)
        return None
    follow(tray, runtime)
    return tray


class IconState:
    """What the icon shows, from the two things that change it: dialogs starting and
    ending (the UI's listeners) and the runtime's token snapshots (its ``TokenWatch``).
    The tray has no look of its own at the tokens."""

    def __init__(self, show: Callable[[TrayState], None]) -> None:
        self._show = show
        self.waiting = False
        self.tokens_present = False
        self.problem = False
        self.port_taken = False  # a transport could not listen: pages may not reach us

    @property
    def state(self) -> TrayState:
        return state_for(waiting=self.waiting, tokens_present=self.tokens_present,
                         problem=self.problem or self.port_taken)

    def on_waiting(self, now: bool) -> None:
        self.waiting = now
        self._show(self.state)

    def on_tokens(self, snapshot: TokenSnapshot) -> None:
        self.tokens_present = snapshot.real_token_present
        # A module that fails to load or a smart card service that is down.
        self.problem = snapshot.problem
        self._show(self.state)


def follow(tray: Tray, runtime: Any) -> IconState:
    """Subscribe the tray's icon to the runtime's UI and token watch."""
    # Called on the event loop, which must never wait for the icon's thread.
    icon = IconState(getattr(tray, "show_soon", tray.set_state))
    transport = getattr(runtime, "transport", None)
    icon.port_taken = bool(getattr(transport, "unavailable", None))
    ui = getattr(runtime, "ui", None)
    listeners = getattr(ui, "listeners", None)
    if isinstance(listeners, list):
        listeners.append(icon.on_waiting)
        tray.detach.append(lambda: listeners.remove(icon.on_waiting))
    watch = getattr(runtime, "token_watch", None)
    if watch is not None:
        tray.detach.append(watch.subscribe(icon.on_tokens))
    return icon


def smartcard_down(runtime: Any) -> bool:
    """PC/SC is watched and its service does not answer (doctor says the same)."""
    from agent.daemon.token_watch import smartcard_service_down

    return smartcard_service_down(getattr(runtime, "pcsc", None))


def state_for(*, waiting: bool, tokens_present: bool, problem: bool = False) -> TrayState:
    """What the icon shows: the person's attention first, then trouble, then tokens."""
    if waiting:
        return TrayState.WAITING
    if problem:
        return TrayState.PROBLEM
    return TrayState.TOKEN if tokens_present else TrayState.RUNNING
