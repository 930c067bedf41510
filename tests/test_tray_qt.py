"""Issue 13 §4: a tray that works, in Qt, on both kinds of tray host and in every language.

- X11 (XEmbed): Xvfb with trayer; the icon docks, a click opens the menu (xdotool), and
  the keyboard activates an entry; in en, az and ru (pystray died in az and ru on latin-1
  and never received a click).
- StatusNotifierItem: a private session bus with a watcher written here with jeepney; the
  item registers, its ``Menu`` is a com.canonical.dbusmenu object whose layout lists every
  entry in the chosen language, and an ``Event(id, "clicked")`` on each entry sends the
  right action.
- The model against a real ``AgentRuntime``: revoke, language, autostart, repair trust,
  and the status equal to ``doctor``'s verdict, healthy and with a taken port.

The tray runs in a child process (as in the UI process); what it sends to the daemon is
printed as JSON lines and read here.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon import NO_KEYRING, REPO

from agent import i18n
from agent.i18n import _

pytestmark = [pytest.mark.desktop]

WAIT = 30.0
LANGUAGES = ("en", "az", "tr", "ru")

TRAY_APP = r"""
import json, os, sys
from PySide6.QtCore import QSocketNotifier
from PySide6.QtWidgets import QApplication
from agent import i18n
from agent.ui.qt.tray import Tray

i18n.set_language(sys.argv[1])
app = QApplication([sys.argv[0]])
app.setApplicationName("imza-agent")
app.setQuitOnLastWindowClosed(False)

def send(name, args):
    print(json.dumps({"name": name, "args": args}), flush=True)

tray = Tray(send)
tray.update(json.loads(sys.argv[2]))
pending = b""

def read():
    global pending
    chunk = os.read(0, 65536)
    if not chunk:
        app.quit()
        return
    pending += chunk
    while b"\n" in pending:
        line, pending = pending.split(b"\n", 1)
        message = json.loads(line)
        if "facts" in message:
            tray.update(message["facts"])

notifier = QSocketNotifier(0, QSocketNotifier.Type.Read)
notifier.activated.connect(read)
print(json.dumps({"ready": os.getpid()}), flush=True)
app.exec()
"""

FACTS: dict[str, Any] = {
    "version": "9.9.9",
    "ports": {"wss": 29170},
    "status": {"level": "problem",
               "problems": ["port 29171 is used by another program; pages cannot reach the "
                            "agent over ws"]},
    "grants": [["https://imza.example.az", ["sign"]],
               ["https://bank.example.ru", ["auth", "select"]]],
    "language": "en",
    "autostart": False,
    "trust": False,
    "journal": "/nonexistent/journal.jsonl",
    "readers": [{"name": "Virtual PCD 00 00", "card": True}],
    "tokens": [{"label": "ASAN İmza", "certificates": 2, "demo": False}],
    "pin_tokens": [["key-1", "ASAN İmza (1234)"], ["key-2", "Рутокен (77)"]],
    "unavailable": {"ws": 29171},
}


def _in(language: str, message: str) -> str:
    before = i18n.current_language()
    i18n.set_language(language)
    try:
        return _(message)
    finally:
        i18n.set_language(before)


class TrayApp:
    """The Qt tray in a child process; its actions arrive on ``actions``."""

    def __init__(self, language: str, env: dict[str, str],
                 facts: dict[str, Any] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", TRAY_APP, language, json.dumps(facts or FACTS)],
            cwd=REPO, env={**env, "QT_QPA_PLATFORM": "xcb"}, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        ready = self.next(WAIT)
        assert "ready" in ready, ready

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(json.loads(line))

    def next(self, timeout: float = 10.0) -> dict[str, Any]:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            code = self.process.poll()
            raise AssertionError(f"the tray sent nothing (exit code {code})") from None

    def quiet(self, timeout: float = 0.5) -> bool:
        try:
            self.lines.get(timeout=timeout)
        except queue.Empty:
            return True
        return False

    def stop(self) -> str:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        assert self.process.stderr is not None
        return self.process.stderr.read()


# --- X11: Xvfb + trayer --------------------------------------------------------------------

def _x(display: str, *args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True,
                          env={**os.environ, "DISPLAY": display}).stdout.strip()


def _wait_for(probe: Any, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    return None


@pytest.fixture
def xvfb() -> Iterator[str]:
    server = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "1280x800x24",
                               "-nolisten", "tcp"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        number = server.stdout.readline().strip()
        assert number.isdigit(), "Xvfb did not start"
        yield f":{number}"
    finally:
        server.terminate()
        server.wait()


@pytest.fixture
def tray_host(xvfb: str) -> Iterator[str]:
    trayer = subprocess.Popen(["trayer", "--edge", "top", "--align", "right", "--height", "32",
                               "--widthtype", "request"], env={**os.environ, "DISPLAY": xvfb},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(lambda: "panel" in _x(xvfb, "xwininfo", "-root", "-tree")), \
            "trayer did not come up"
        yield xvfb
    finally:
        trayer.terminate()
        trayer.wait()


def _docked_icon(display: str) -> str | None:
    """The app's window that trayer has reparented (its parent is not the root)."""
    root = _x(display, "xwininfo", "-root").split("Window id:")[1].split()[0]
    for window in _x(display, "xdotool", "search", "--class", "imza-agent").split():
        info = _x(display, "xwininfo", "-tree", "-id", window)
        parent = next((line.split(":", 1)[1].split()[0] for line in info.splitlines()
                       if "Parent window id:" in line), root)
        if int(parent, 16) != int(root, 16):
            return window
    return None


def _geometry(display: str, window: str) -> dict[str, int]:
    shell = _x(display, "xdotool", "getwindowgeometry", "--shell", window)
    return {k: int(v) for k, v in (line.split("=") for line in shell.splitlines())
            if k in ("X", "Y", "WIDTH", "HEIGHT")}


def _menu_window(display: str, icon: str) -> str | None:
    """A mapped window of the app, other than the icon, big enough to be the menu."""
    for window in _x(display, "xdotool", "search", "--onlyvisible", "--class",
                     "imza-agent").split():
        if window == icon:
            continue
        size = _geometry(display, window)
        if size.get("WIDTH", 0) > 60 and size.get("HEIGHT", 0) > 60:
            return window
    return None


class FocusListener:
    """Follows the focus as a screen reader does: registers for the AT-SPI focus events
    with the registry and reads the name of each object that gains the focus."""

    def __init__(self, atspi: Any) -> None:
        from jeepney import DBus, DBusAddress, MatchRule, new_method_call
        from jeepney.io.blocking import open_dbus_connection

        self.atspi = atspi
        self.connection = open_dbus_connection(atspi.a11y)
        registry = DBusAddress("/org/a11y/atspi/registry", bus_name="org.a11y.atspi.Registry",
                               interface="org.a11y.atspi.Registry")
        self.connection.send_and_get_reply(new_method_call(
            registry, "RegisterEvent", "sass", ("object:state-changed:focused", [], "")))
        rule = MatchRule(type="signal", interface="org.a11y.atspi.Event.Object",
                         member="StateChanged")
        self.connection.send_and_get_reply(DBus().AddMatch(rule))

    def names(self, pid: int, wait: float = 3.0) -> list[str]:
        """The name of what gained the focus next in ``pid``'s program (none within
        ``wait`` seconds: an empty list)."""
        from jeepney import HeaderFields

        found: list[str] = []
        deadline = time.monotonic() + wait
        reader = self.atspi.reader()
        try:
            while (left := deadline - time.monotonic()) > 0:
                try:
                    message = self.connection.receive(timeout=left)
                except TimeoutError:
                    break
                body = message.body
                if len(body) < 2 or body[0] != "focused" or body[1] != 1:
                    continue
                sender = str(message.header.fields.get(HeaderFields.sender))
                path = str(message.header.fields.get(HeaderFields.path))
                if reader.pid_of(sender) == pid:
                    found.append(reader.node(sender, path).name)
                    break
        finally:
            reader.close()
        return found


TOP_ENTRIES = ("Allowed sites", "Readers and tokens", "Change PIN…", "Unblock PIN…",
               "Language", "Open the signing journal", "Start at login", "TLS trust",
               "About", "Quit")


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_icon_docks_in_trayer_and_a_click_opens_the_menu(tray_host: str,
                                                              language: str) -> None:
    from atspi import AtspiBus

    with AtspiBus() as atspi:
        focus = FocusListener(atspi)
        # That session bus has no StatusNotifierWatcher: Qt docks an XEmbed icon.
        app = TrayApp(language, atspi.env(tray_host))
        try:
            icon = _wait_for(lambda: _docked_icon(tray_host))
            assert icon, "the icon never docked in trayer"
            assert _menu_window(tray_host, icon) is None
            where = _geometry(tray_host, icon)
            x, y = where["X"] + where["WIDTH"] // 2, where["Y"] + where["HEIGHT"] // 2
            for button in ("1", "3"):  # people try the left and the right button
                _x(tray_host, "xdotool", "mousemove", str(x), str(y), "click", button)
                menu = _wait_for(lambda: _menu_window(tray_host, icon), 15)
                assert menu, f"button {button} opened no menu"
                _x(tray_host, "xdotool", "key", "Escape")
                assert _wait_for(lambda: _menu_window(tray_host, icon) is None, 10)
            _x(tray_host, "xdotool", "mousemove", str(x), str(y), "click", "1")
            assert _wait_for(lambda: _menu_window(tray_host, icon), 15)
            # What a screen reader hears walking the open menu with the arrow keys: every
            # entry, in the language (Qt lists no popup under the application, so the
            # names come with the focus events, as Orca gets them).
            spoken: list[str] = []
            for _step in range(len(TOP_ENTRIES) + 2):
                _x(tray_host, "xdotool", "key", "Down")
                spoken += focus.names(app.process.pid)
            names = [_in(language, message) for message in TOP_ENTRIES]
            assert set(names) <= set(spoken), (names, spoken)
            _x(tray_host, "xdotool", "key", "Escape")
            assert _wait_for(lambda: _menu_window(tray_host, icon) is None, 10)
            _x(tray_host, "xdotool", "mousemove", str(x), str(y), "click", "3")
            assert _wait_for(lambda: _menu_window(tray_host, icon), 15)
            # Up from the top wraps to the last entry: Quit, chosen with the keyboard.
            _x(tray_host, "xdotool", "key", "Up", "Return")
            assert app.next() == {"name": "quit", "args": {}}
        finally:
            errors = app.stop()
    assert "codec" not in errors and "Traceback" not in errors, errors


# --- StatusNotifierItem: a watcher on a private session bus ----------------------------------

WATCHER = "org.kde.StatusNotifierWatcher"
WATCHER_XML = (
    '<node><interface name="org.kde.StatusNotifierWatcher">'
    '<method name="RegisterStatusNotifierItem"><arg type="s" direction="in"/></method>'
    '<method name="RegisterStatusNotifierHost"><arg type="s" direction="in"/></method>'
    '<property name="IsStatusNotifierHostRegistered" type="b" access="read"/>'
    '<property name="ProtocolVersion" type="i" access="read"/>'
    '<property name="RegisteredStatusNotifierItems" type="as" access="read"/>'
    '</interface></node>')


class Watcher:
    """The StatusNotifierWatcher a desktop's panel provides, served with jeepney: it
    records which items register (by the sender's unique name and the path it gives)."""

    def __init__(self, address: str) -> None:
        from jeepney import DBus
        from jeepney.io.blocking import open_dbus_connection

        self.connection = open_dbus_connection(address)
        reply = self.connection.send_and_get_reply(DBus().RequestName(WATCHER, 4))
        assert reply.body == (1,), "the watcher's name is taken"
        self.items: queue.Queue[tuple[str, str]] = queue.Queue()
        self.registered: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _properties(self) -> dict[str, tuple[str, Any]]:
        return {"IsStatusNotifierHostRegistered": ("b", True), "ProtocolVersion": ("i", 0),
                "RegisteredStatusNotifierItems": ("as", list(self.registered))}

    def _serve(self) -> None:
        from jeepney import HeaderFields, MessageType, new_error, new_method_return

        while True:
            try:
                message = self.connection.receive()
            except Exception:  # the bus went away at the end of the test
                return
            header = message.header
            if header.message_type != MessageType.method_call:
                continue
            member = header.fields.get(HeaderFields.member)
            sender = str(header.fields.get(HeaderFields.sender))
            if member == "RegisterStatusNotifierItem":
                self.registered.append(message.body[0])
                self.items.put((sender, message.body[0]))
                reply = new_method_return(message)
            elif member == "RegisterStatusNotifierHost":
                reply = new_method_return(message)
            elif member == "Get":
                reply = new_method_return(message, "v", (self._properties()[message.body[1]],))
            elif member == "GetAll":
                reply = new_method_return(message, "a{sv}", (self._properties(),))
            elif member == "Introspect":
                reply = new_method_return(message, "s", (WATCHER_XML,))
            else:
                reply = new_error(message, "org.freedesktop.DBus.Error.UnknownMethod")
            self.connection.send(reply)


@pytest.fixture
def session_bus(tmp_path: Path) -> Iterator[str]:
    bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1",
                            f"--address=unix:path={tmp_path / 'bus'}"],
                           stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert bus.stdout is not None
        address = bus.stdout.readline().decode().strip()
        assert address.startswith("unix:"), f"dbus-daemon printed {address!r}"
        yield address
    finally:
        bus.terminate()
        bus.wait(10)


class Item:
    """The registered item as a host reads it."""

    def __init__(self, address: str, sender: str, path: str) -> None:
        from jeepney.io.blocking import open_dbus_connection

        self.connection = open_dbus_connection(address)
        self.sender = sender
        self.path = path if path.startswith("/") else "/StatusNotifierItem"

    def prop(self, name: str) -> Any:
        from jeepney import DBusAddress, Properties

        item = DBusAddress(self.path, bus_name=self.sender,
                           interface="org.kde.StatusNotifierItem")
        return self.connection.send_and_get_reply(Properties(item).get(name)).body[0][1]

    def _menu(self) -> Any:
        from jeepney import DBusAddress

        return DBusAddress(self.prop("Menu"), bus_name=self.sender,
                           interface="com.canonical.dbusmenu")

    def layout(self) -> list[tuple[tuple[str, ...], int, dict[str, Any]]]:
        """Every entry as (path of labels, id, properties), depth first."""
        from jeepney import new_method_call

        reply = self.connection.send_and_get_reply(
            new_method_call(self._menu(), "GetLayout", "iias", (0, -1, [])))
        found: list[tuple[tuple[str, ...], int, dict[str, Any]]] = []

        def walk(node: Any, path: tuple[str, ...]) -> None:
            number, props, children = node
            values = {k: v[1] for k, v in props.items()}
            here = (*path, str(values["label"])) if "label" in values else path
            if number != 0 and values.get("type") != "separator":
                found.append((here, number, values))
            for _signature, child in children:
                walk(child, here)

        walk(reply.body[1], ())
        return found

    def click(self, number: int) -> None:
        from jeepney import new_method_call

        self.connection.send_and_get_reply(new_method_call(
            self._menu(), "Event", "isvu", (number, "clicked", ("i", 0), 0)))

    def close(self) -> None:
        self.connection.close()


def _expected_actions(language: str) -> dict[tuple[str, ...], tuple[str, dict[str, Any]]]:
    """Label path → the action its click must send (every entry that does something)."""
    def t(message: str) -> str:
        return _in(language, message)

    expected: dict[tuple[str, ...], tuple[str, dict[str, Any]]] = {}
    for origin, _permissions in FACTS["grants"]:
        expected[(t("Allowed sites"), origin, t("Revoke"))] = ("revoke", {"origin": origin})
    for key, name in FACTS["pin_tokens"]:
        expected[(t("Change PIN…"), name)] = ("pin_change", {"token": key})
        expected[(t("Unblock PIN…"), name)] = ("pin_unblock", {"token": key})
    for code, name in i18n.LANGUAGE_NAMES.items():
        expected[(t("Language"), name)] = ("language", {"language": code})
    expected[(t("Open the signing journal"),)] = ("open_journal", {})
    expected[(t("Start at login"),)] = ("autostart", {"on": True})
    expected[(t("TLS trust"), t("Repair"))] = ("repair_trust", {})
    expected[(t("Quit"),)] = ("quit", {})
    return expected


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_item_registers_and_every_menu_entry_works_over_dbus(
        xvfb: str, session_bus: str, language: str) -> None:
    watcher = Watcher(session_bus)
    app = TrayApp(language, {**os.environ, "DISPLAY": xvfb,
                             "DBUS_SESSION_BUS_ADDRESS": session_bus})
    item: Item | None = None
    try:
        sender, path = watcher.items.get(timeout=WAIT)
        item = Item(session_bus, sender, path)
        tooltip = item.prop("ToolTip")
        problem = FACTS["status"]["problems"][0]
        assert tooltip[2] == _in(language, "imza-agent has a problem: {problems}").format(
            problems=problem)
        entries = item.layout()
        paths = {entry_path for entry_path, _number, _props in entries}
        expected = _expected_actions(language)
        missing = set(expected) - paths
        assert not missing, f"not in the menu: {missing}"
        # What only informs is there too, in the language, and does nothing.
        informs = {
            (tooltip[2],),
            (_in(language, "Allowed sites"), "https://imza.example.az",
             _in(language, "Allowed: {permissions}").format(permissions="sign")),
            (_in(language, "Readers and tokens"),
             _in(language, "{token}: certificates {n}").format(token="ASAN İmza", n=2)),
            (_in(language, "TLS trust"),
             _in(language, "Browsers do not trust the agent's certificate")),
            (_in(language, "About"), "imza-agent 9.9.9"),
        }
        assert informs <= paths, informs - paths
        if language != "en":  # the catalog speaks the language: not the English text
            for message in ("Quit", "Language", "Allowed sites", "Revoke", "Start at login"):
                assert _in(language, message) != message, message
        by_path = {entry_path: (number, props) for entry_path, number, props in entries}
        checked = [p for p, (_n, props) in by_path.items()
                   if p[:1] == (_in(language, "Language"),) and props.get("toggle-state") == 1]
        assert checked == [(_in(language, "Language"), i18n.LANGUAGE_NAMES[language])]
        for entry_path, (name, args) in expected.items():
            number, props = by_path[entry_path]
            assert props.get("enabled", True), entry_path
            item.click(number)
            assert app.next() == {"name": name, "args": args}, entry_path
        leaves = [p for p, (_n, props) in by_path.items()
                  if props.get("children-display") != "submenu" and p not in expected]
        for entry_path in leaves:  # the rest only inform: disabled, and silent
            number, props = by_path[entry_path]
            assert props.get("enabled") is False, entry_path
            item.click(number)
        assert app.quiet(), "an informing entry sent an action"
    finally:
        if item is not None:
            item.close()
        errors = app.stop()
    assert "Traceback" not in errors, errors


def test_each_status_has_its_own_colour_and_shape(xvfb: str) -> None:
    """Told apart by colour and, for those who cannot see it, by outline."""
    script = (
        "import json\n"
        "from PySide6.QtWidgets import QApplication\n"
        "from agent.ui.qt.icon import status_pixmap\n"
        "app = QApplication([])\n"
        "out = {}\n"
        "for level in ('ok', 'attention', 'problem'):\n"
        "    image = status_pixmap(level, 32).toImage()\n"
        "    def kind(c):\n"
        "        return '0' if c.alpha() < 128 else 'w' if min(c.red(), c.green(),"
        " c.blue()) > 200 else 'c'\n"
        "    mask = ''.join(kind(image.pixelColor(x, y)) for y in range(32) for x in range(32))\n"
        "    c = image.pixelColor(16, 26)\n"
        "    out[level] = [mask, c.name()]\n"
        "print(json.dumps(out))\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
                            timeout=60)
    assert result.returncode == 0, result.stderr
    icons = json.loads(result.stdout)
    masks = {level: mask for level, (mask, _colour) in icons.items()}
    colours = {level: colour for level, (_mask, colour) in icons.items()}
    assert len(set(masks.values())) == 3
    assert len(set(colours.values())) == 3
    for a in masks:
        for b in masks:
            if a < b:  # outline and glyph differ clearly, not by a few antialiased pixels
                pairs = list(zip(masks[a], masks[b], strict=True))
                assert sum((x == "0") != (y == "0") for x, y in pairs) > 20, (a, b)
                assert sum((x == "w") != (y == "w") for x, y in pairs) > 40, (a, b)


# --- the model against a running AgentRuntime ------------------------------------------------

def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def desk(tmp_path: Path, agent_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's own HOME (the agent adds its CA to the browsers' databases there) and an
    empty system policy."""
    home = tmp_path / "user"
    (home / ".config").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", NO_KEYRING)
    policy = tmp_path / "policy.toml"
    policy.write_text("", encoding="utf-8")
    monkeypatch.setenv("IMZA_AGENT_SYSTEM_POLICY", str(policy))
    monkeypatch.setattr(i18n, "_current", i18n.current_language())  # restored after
    return tmp_path


def _config(desk: Path, wss_port: int, ui: str = "tray = false") -> Any:
    from agent.config import load_config

    path = desk / "agent.toml"
    # No vendor modules found on the machine (one may fail without its service): the
    # healthy setup is the demo identity alone.
    # port_range = 1: a taken port is then the agent's problem, not a move to the next one.
    path.write_text(f"[server]\nwss_port = {wss_port}\nport_range = 1\nws_enabled = false\n"
                    f"[tokens]\nknown_modules = false\n[ui]\n{ui}\n", encoding="utf-8")
    return load_config(path)


def _doctor_verdict(desk: Path) -> dict[str, Any]:
    """``imza-agent doctor --json`` in its own process, judged by the one verdict."""
    from agent.doctor.verdict import verdict

    result = subprocess.run([sys.executable, "-m", "agent.doctor", "--config",
                             str(desk / "agent.toml"), "--json"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.stdout, result.stderr
    return verdict(json.loads(result.stdout))


def _doctor_problem_lines(desk: Path) -> list[str]:
    """What ``doctor`` prints to a person under "Problems" (English)."""
    result = subprocess.run([sys.executable, "-m", "agent.doctor", "--config",
                             str(desk / "agent.toml")], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert "\nProblems\n" in result.stdout, result.stdout + result.stderr
    section = result.stdout.rsplit("\nProblems\n", 1)[1]
    return [line.strip() for line in section.splitlines() if line.strip()]


async def _started(config: Any) -> Any:
    from agent.daemon.runtime import AgentRuntime

    runtime = AgentRuntime(config, headless=True)
    await runtime.start()
    await runtime.token_watch.refresh()
    if runtime.pcsc is not None:  # the smart card watch's first answer, as doctor's probe
        from agent.pcsc.watcher import ServiceState

        deadline = time.monotonic() + WAIT
        while runtime.pcsc.status.service is ServiceState.STARTING:
            assert time.monotonic() < deadline, "the smart card watch never answered"
            await asyncio.sleep(0.05)
    return runtime


async def test_every_model_action_works_against_a_running_agent(desk: Path) -> None:
    from agent.platform import autostart
    from agent.policy.rules import Permission
    from agent.ui import tray_model

    runtime = await _started(_config(desk, _free_port()))
    try:
        runtime.policy.record_consent("https://imza.example.az", [Permission.SIGN], "always")
        facts = await tray_model.tray_facts(runtime)
        json.dumps(facts)  # the tray frame is JSON
        assert facts["grants"] == [["https://imza.example.az", ["sign"]]]
        assert facts["status"]["level"] in tray_model.LEVELS
        assert facts["journal"] and facts["ports"]["wss"]

        await tray_model.run_action(runtime, "revoke", {"origin": "https://imza.example.az"})
        assert (await tray_model.tray_facts(runtime))["grants"] == []

        for code in ("az", "ru", "en"):
            await tray_model.run_action(runtime, "language", {"language": code})
            assert (await tray_model.tray_facts(runtime))["language"] == code
        from agent.ui.preferences import saved_language

        assert saved_language() == "en"  # found again after a restart

        entry = autostart.user_file()
        await tray_model.run_action(runtime, "autostart", {"on": True})
        assert entry.exists() and (await tray_model.tray_facts(runtime))["autostart"] is True
        await tray_model.run_action(runtime, "autostart", {"on": False})
        assert (await tray_model.tray_facts(runtime))["autostart"] is False
        assert not autostart.enabled()

        # Repair puts the agent's CA back into the Chromium database (made anew).
        nssdb = Path(os.environ["HOME"]) / ".pki" / "nssdb"
        shutil.rmtree(nssdb, ignore_errors=True)
        await tray_model.run_action(runtime, "repair_trust", {})
        listed = subprocess.run(["certutil", "-L", "-d", f"sql:{nssdb}"], capture_output=True,
                                text=True)
        assert "imza-agent" in listed.stdout, listed.stdout + listed.stderr
        assert (await tray_model.tray_facts(runtime))["trust"] is True

        with pytest.raises(tray_model.ActionError):
            await tray_model.run_action(runtime, "language", {"language": "xx"})
        with pytest.raises(tray_model.ActionError):
            await tray_model.run_action(runtime, "quit", {})  # the client's own
    finally:
        await runtime.stop()


async def test_the_tray_says_what_doctor_says_healthy_and_with_a_taken_port(
        desk: Path) -> None:
    from agent.ui import tray_model

    runtime = await _started(_config(desk, _free_port()))
    try:
        facts = await tray_model.tray_facts(runtime)
        assert facts["status"] == _doctor_verdict(desk)
        assert facts["status"]["level"] != "problem", facts["status"]
        # "Problems: none" exactly when the icon is green; otherwise the same sentences
        # (a stopped smart card service: amber, and named under "Problems").
        assert _doctor_problem_lines(desk) == (facts["status"]["problems"] or ["none"])
    finally:
        await runtime.stop()

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = int(squatter.getsockname()[1])
        runtime = await _started(_config(desk, port))
        try:
            facts = await tray_model.tray_facts(runtime)
            status = facts["status"]
            assert status["level"] == "problem"
            assert any(str(port) in text for text in status["problems"]), status
            assert status == _doctor_verdict(desk)
            assert _doctor_problem_lines(desk) == status["problems"]
        finally:
            await runtime.stop()


# --- the whole way: daemon → UI process → tray on a StatusNotifierItem host → daemon --------

async def _eventually(probe: Any, timeout: float = WAIT) -> Any:
    """``probe`` (blocking: D-Bus calls) off the event loop, which the daemon needs."""
    deadline = time.monotonic() + timeout
    while True:
        found = await asyncio.to_thread(probe)
        if found:
            return found
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.2)


async def test_every_entry_works_against_the_running_agent(
        desk: Path, xvfb: str, session_bus: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon starts its UI process, which shows the tray on the panel's watcher; each
    click there is carried out by the daemon and shows in the next facts."""
    from agent.daemon.runtime import AgentRuntime
    from agent.platform import autostart
    from agent.policy.rules import Permission

    monkeypatch.setenv("DISPLAY", xvfb)
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", session_bus)
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    # The desktop's opener, as the journal entry calls it: records what it was asked.
    opened = desk / "opened"
    bin_dir = desk / "bin"
    bin_dir.mkdir()
    (bin_dir / "xdg-open").write_text(f"#!/bin/sh\necho \"$1\" >> {opened}\n")
    (bin_dir / "xdg-open").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    watcher = Watcher(session_bus)
    origin = "https://imza.example.az"
    runtime = AgentRuntime(_config(desk, _free_port(), 'backend = "qt"'), headless=False)
    await runtime.start()
    item: Item | None = None
    terms: list[int] = []
    try:
        runtime.policy.record_consent(origin, [Permission.SIGN], "always")
        runtime.tray_link.push_soon()
        sender, path = await asyncio.to_thread(watcher.items.get, True, WAIT)
        item = Item(session_bus, sender, path)
        current = item

        def entry(*labels: str) -> Any:
            for entry_path, number, props in current.layout():
                if entry_path == labels:
                    return number, props
            return None

        def t(message: str) -> str:
            return _in(i18n.current_language(), message)

        number, _props = await _eventually(lambda: entry(t("Allowed sites"), origin,
                                                         t("Revoke")))
        await asyncio.to_thread(item.click, number)
        await _eventually(lambda: not runtime.policy.user_grants())
        await _eventually(lambda: entry(t("Allowed sites"), t("No sites allowed yet")))

        number, props = entry(t("Start at login"))
        assert props.get("toggle-state") == 0 and not autostart.enabled()
        await asyncio.to_thread(item.click, number)
        await _eventually(autostart.enabled)
        await _eventually(lambda: (entry(t("Start at login")) or (0, {}))[1].get(
            "toggle-state") == 1)

        nssdb = Path(os.environ["HOME"]) / ".pki" / "nssdb"
        shutil.rmtree(nssdb, ignore_errors=True)
        number, _props = entry(t("TLS trust"), t("Repair"))
        await asyncio.to_thread(item.click, number)
        await _eventually(lambda: "imza-agent" in subprocess.run(
            ["certutil", "-L", "-d", f"sql:{nssdb}"], capture_output=True, text=True).stdout)

        number, _props = entry(t("Open the signing journal"))
        await asyncio.to_thread(item.click, number)
        journal = Path(runtime.journal.path)
        await _eventually(lambda: opened.exists() and opened.read_text().split()[0] in (
            str(journal), str(journal.parent)))

        number, _props = entry(t("Language"), i18n.LANGUAGE_NAMES["ru"])
        await asyncio.to_thread(item.click, number)
        await _eventually(lambda: i18n.current_language() == "ru")
        await _eventually(lambda: entry(_in("ru", "Quit")))  # the menu speaks Russian
        facts = await tray_model_facts(runtime)
        level_text = {"ok": "imza-agent is running; everything works",
                      "attention": "imza-agent needs attention: {problems}",
                      "problem": "imza-agent has a problem: {problems}"}
        tooltip = _in("ru", level_text[facts["status"]["level"]]).format(
            problems="; ".join(facts["status"]["problems"]))
        await _eventually(lambda: item is not None and item.prop("ToolTip")[2] == tooltip)

        previous = signal.signal(signal.SIGTERM, lambda *_args: terms.append(1))
        try:
            number, _props = entry(_in("ru", "Quit"))
            await asyncio.to_thread(item.click, number)
            await _eventually(lambda: terms)  # the daemon's own orderly stop begins
        finally:
            signal.signal(signal.SIGTERM, previous)
    finally:
        if item is not None:
            item.close()
        await runtime.stop()


async def tray_model_facts(runtime: Any) -> Any:
    from agent.ui import tray_model

    return await tray_model.tray_facts(runtime)
