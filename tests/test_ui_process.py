"""The UI process and its pipe (docs/ui-process.md): both ends, and a real daemon around them.

The first tests drive ``python -m agent.ui.qt``'s loop directly over a socketpair with a
stand-in dialog module (offscreen Qt: no screen is needed for the plumbing).  The others
start the agent in desktop mode on Xvfb with its real Qt UI process and SoftHSM tokens,
and break the UI process while a PIN dialog is up: killed, stopped, killed too often.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from agent.pipe_frames import FrameError
from agent.platform.workers import child_pids
from agent.ui import ui_wire

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = "https://portal.example"
WAIT = 30.0  # upper bound for something to happen; never asserted as a duration
FRAME_BYTES = 1 << 20

# The stand-in for agent.ui.qt.dialogs: a real Qt widget per dialog, answered from its
# args so the test decides; "hold" leaves it up (for close), "boom" fails to open.
STAND_IN = r'''
import dataclasses, sys, types
from PySide6.QtWidgets import QLabel
from agent import i18n

@dataclasses.dataclass(frozen=True)
class DialogSettings:
    language: str
    theme: str
    arming_ms: int
    timeout_s: float

opened = []

def raw(message):
    # Straight onto the pipe, past the app: what a broken UI process might send.
    from agent.ui import ui_wire
    import os
    fd = int(sys.argv[sys.argv.index("--fd") + 1])
    os.write(fd, ui_wire.encode(message, 1 << 20))

def scripted(kind, args):
    # The test's script (a JSON file: kind -> args) stands in for what a person does.
    import json, os
    path = os.environ.get("STAND_IN_SCRIPT")
    if "behaviour" in args or not path:
        return args
    with open(path, encoding="utf-8") as script:
        return json.load(script).get(kind, {})

def open_dialog(kind, args, settings, answer, cancel):
    args = scripted(kind, args)
    behaviour = args.get("behaviour", "hold")
    if behaviour == "boom":
        raise RuntimeError("cannot draw")
    if behaviour == "slot_error":  # raised in a Qt slot, saying what the dialog showed
        from PySide6.QtCore import QTimer
        def fail():
            raise ValueError("Bəyannamə secret-content")
        opened.append(fail)  # held: the timer is all that refers to it otherwise
        QTimer.singleShot(0, fail)
    widget = QLabel(kind + " " + settings.language)
    widget.retranslate = lambda: answer({"retranslated": i18n.current_language()})
    widget.dismiss = lambda: print("stand-in: dismissed", kind, file=sys.stderr, flush=True)
    widget.show()
    opened.append(widget)
    if behaviour == "answer":
        answer(args.get("result"))
    elif behaviour == "cancel":
        cancel()
    elif behaviour == "raw":
        raw(args["message"])
    return widget

module = types.ModuleType("agent.ui.qt.dialogs")
module.open_dialog = open_dialog
module.DialogSettings = DialogSettings
sys.modules["agent.ui.qt.dialogs"] = module
from agent.ui.qt.__main__ import main
sys.exit(main(sys.argv[1:]))
'''


class UiPeer:
    """The daemon's end of the pipe, blocking, for tests."""

    def __init__(self, sock: socket.socket, proc: subprocess.Popen[bytes]) -> None:
        self.sock, self.proc = sock, proc
        self.frames = ui_wire.FrameBuffer(FRAME_BYTES)
        self.queue: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(ui_wire.encode(message, FRAME_BYTES))

    def stderr_until(self, wanted: bytes) -> bytes:
        """What the process wrote to stderr, read until ``wanted`` is in it."""
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        seen = b""
        deadline = time.monotonic() + WAIT
        while wanted not in seen:
            left = deadline - time.monotonic()
            assert left > 0, f"{wanted!r} never came: {seen!r}"
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(fd, 1 << 16)
                assert chunk, f"stderr ended without {wanted!r}: {seen!r}"
                seen += chunk
        return seen

    def receive(self) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT
        while not self.queue:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = self.sock.recv(1 << 16)
            assert chunk, "the UI process closed the pipe"
            self.queue.extend(self.frames.feed(chunk))
        return self.queue.pop(0)


@pytest.fixture
def ui_peer() -> Iterator[UiPeer]:
    ours, theirs = socket.socketpair()
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "IMZA_AGENT_LOG": "debug",
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", STAND_IN, "--fd", str(theirs.fileno()),
                             "--frame-bytes", str(FRAME_BYTES)],
                            pass_fds=(theirs.fileno(),), env=env, cwd=ROOT,
                            stderr=subprocess.PIPE)
    theirs.close()
    peer = UiPeer(ours, proc)
    try:
        yield peer
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        ours.close()


def _hello(peer: UiPeer, language: str = "en") -> dict[str, Any]:
    peer.send({"op": "hello", "language": language, "theme": "auto", "arming_ms": 400,
               "timeout_s": 60})
    return peer.receive()


# --- the wire --------------------------------------------------------------------------------

def test_frames_arrive_whole_from_any_split_and_the_limit_holds() -> None:
    message = {"op": "dialog", "id": 7, "kind": "pin", "args": {"origin": "https://ə.az"}}
    stream = ui_wire.encode(message, 1024) * 3
    buffer = ui_wire.FrameBuffer(1024)
    got: list[dict[str, Any]] = []
    for i in range(len(stream)):  # one byte at a time: every split point
        got += buffer.feed(stream[i:i + 1])
    assert got == [message] * 3 and not buffer.pending
    with pytest.raises(FrameError):
        ui_wire.encode({"op": "tray", "facts": {"x": "y" * 2000}}, 1024)
    with pytest.raises(FrameError):  # announced over the limit: refused before the body
        ui_wire.FrameBuffer(1024).feed((4096).to_bytes(4, "big"))


def test_a_secret_decodes_into_a_bytearray_that_is_wiped() -> None:
    for pin in ("", "1", "12", "123", "1234", "Şifrə-ıİ 2025"):
        raw = pin.encode("utf-8")
        decoded = ui_wire.secret_from_b64(base64.b64encode(raw).decode())
        assert isinstance(decoded, bytearray) and decoded == raw
        ui_wire.wipe(decoded)
        assert decoded == bytearray()
    for bad in ("MTIz*", "MTI", 1234, "M==="):
        with pytest.raises(FrameError):
            ui_wire.secret_from_b64(bad)


# --- the UI process's loop -------------------------------------------------------------------

@pytest.mark.posix
def test_the_ui_process_speaks_the_contract(ui_peer: UiPeer) -> None:
    ready = _hello(ui_peer)
    assert ready == {"op": "ready", "pid": ui_peer.proc.pid}
    ui_peer.send({"op": "ping", "n": 41})
    assert ui_peer.receive() == {"op": "pong", "n": 41}
    ui_peer.send({"op": "dialog", "id": 1, "kind": "consent",
                  "args": {"behaviour": "answer", "result": "once"}})
    assert ui_peer.receive() == {"op": "answer", "id": 1, "result": "once"}
    ui_peer.send({"op": "dialog", "id": 2, "kind": "pick", "args": {"behaviour": "cancel"}})
    assert ui_peer.receive() == {"op": "answer", "id": 2, "cancelled": True}
    # A dialog that cannot be drawn fails at once, and the process goes on.
    ui_peer.send({"op": "dialog", "id": 3, "kind": "pin", "args": {"behaviour": "boom"}})
    assert ui_peer.receive() == {"op": "answer", "id": 3, "failed": True}
    # An error in a slot is logged as its kind and place, never its words.
    ui_peer.send({"op": "dialog", "id": 6, "kind": "pin", "args": {"behaviour": "slot_error"}})
    ui_peer.send({"op": "ping", "n": 43})
    assert ui_peer.receive() == {"op": "pong", "n": 43}
    # Qt runs the failing slot when its event loop next gets to it, which is not before
    # any given frame: wait for the log line rather than for a number of round trips.
    logged = ui_peer.stderr_until(b"uncaught ValueError")
    ui_peer.send({"op": "close", "id": 6})
    # An open dialog re-renders on "language"; a closed one says nothing any more.
    ui_peer.send({"op": "dialog", "id": 4, "kind": "message", "args": {"behaviour": "hold"}})
    ui_peer.send({"op": "language", "language": "az"})
    assert ui_peer.receive() == {"op": "answer", "id": 4, "result": {"retranslated": "az"}}
    ui_peer.send({"op": "dialog", "id": 5, "kind": "message", "args": {"behaviour": "hold"}})
    ui_peer.send({"op": "close", "id": 5})
    ui_peer.send({"op": "language", "language": "ru"})
    ui_peer.send({"op": "ping", "n": 42})
    assert ui_peer.receive() == {"op": "pong", "n": 42}
    ui_peer.send({"op": "quit"})
    assert ui_peer.proc.wait(WAIT) == 0
    _, rest = ui_peer.proc.communicate()
    err = logged + rest
    assert b"(id 3)" not in err  # the failed one was never up
    assert b"a message dialog is up" in err
    assert b"uncaught ValueError at <string>:" in err and b"secret-content" not in err


@pytest.mark.posix
def test_the_ui_process_ends_when_the_daemon_is_gone(ui_peer: UiPeer) -> None:
    _hello(ui_peer)
    ui_peer.send({"op": "dialog", "id": 1, "kind": "consent", "args": {"behaviour": "hold"}})
    ui_peer.send({"op": "ping", "n": 1})
    assert ui_peer.receive()["op"] == "pong"
    ui_peer.sock.close()
    assert ui_peer.proc.wait(WAIT) == 0


# --- a real daemon with its Qt UI process ----------------------------------------------------

@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    """A private Xvfb; ``-displayfd`` makes the server pick a free display number."""
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "1280x800x24",
                             "-nolisten", "tcp"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert xvfb.stdout is not None
    number = xvfb.stdout.readline().strip()
    assert number.isdigit(), "Xvfb did not start"
    try:
        yield f":{number}"
    finally:
        xvfb.terminate()
        xvfb.wait()


class QtDaemon:
    """`imza-agent run` in desktop mode; its stderr (and with it the UI process's, which
    inherits it) is collected line by line."""

    def __init__(self, process: subprocess.Popen[str], port: int, home: Path,
                 display: str) -> None:
        self.process, self.port, self.home, self.display = process, port, home, display
        self.lines: list[str] = []

    def log(self) -> str:
        return "".join(self.lines)

    def ui_pids(self) -> list[int]:
        return [pid for pid in child_pids(self.process.pid) if b"agent.ui.qt" in _cmdline(pid)]

    def wait_ui(self, other_than: int | None = None) -> int:
        """The pid of a ready UI process (another than ``other_than``)."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            for pid in self.ui_pids():
                if pid != other_than and f"UI process ready (pid {pid})" in self.log():
                    return pid
            time.sleep(0.05)
        raise AssertionError(f"no new UI process; log:\n{self.log()}")

    async def wait_log(self, pattern: str, count: int = 1) -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if len(re.findall(pattern, self.log())) >= count:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{pattern!r} not logged {count}x; log:\n{self.log()}")


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def _start(tmp_path: Path, softhsm: Any, display: str, *, ui: dict[str, Any],
           headless: bool = False) -> QtDaemon:
    import threading

    home = tmp_path / "home"
    home.mkdir(parents=True)
    ui_lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in ui.items())
    config = tmp_path / "agent.toml"
    config.write_text(f"""
[server]
ws_port = 0
ws_enabled = true
wss_enabled = false
[tokens]
known_modules = false
modules = ["{softhsm.module}"]
[ui]
backend = "qt"
language = "en"
dialog_timeout = 60
{ui_lines}
[demo]
enabled = "never"
""", encoding="utf-8")
    # The page's origin may list and sign without a consent dialog or a picker: the PIN
    # dialog is the first window a request opens.
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[[allow]]\norigin = "{ORIGIN}"\npermissions = ["select", "sign", '
                      '"list"]\n', encoding="utf-8")
    env = {**os.environ, **softhsm.env, "IMZA_AGENT_HOME": str(home), "DISPLAY": display,
           "IMZA_AGENT_SYSTEM_POLICY": str(policy), "IMZA_AGENT_LOG": "debug"}
    env.pop("QT_QPA_PLATFORM", None)
    args = [sys.executable, "-m", "agent.cli", "--config", str(config), "run"]
    process = subprocess.Popen(args + (["--headless"] if headless else []), env=env,
                               cwd=ROOT, stderr=subprocess.PIPE, text=True)
    daemon = QtDaemon(process, 0, home, display)
    assert process.stderr is not None
    stream = process.stderr

    def collect() -> None:
        for line in stream:
            daemon.lines.append(line)

    threading.Thread(target=collect, daemon=True).start()
    runtime = home / "runtime.json"
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and process.poll() is None:
        if runtime.exists():
            daemon.port = json.loads(runtime.read_text())["ports"].get("ws", 0)
            if daemon.port:
                return daemon
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"the daemon did not start:\n{daemon.log()}")


def _stop(daemon: QtDaemon) -> None:
    daemon.process.send_signal(signal.SIGTERM)
    try:
        daemon.process.wait(10)
    except subprocess.TimeoutExpired:
        daemon.process.kill()
        daemon.process.wait()


@pytest.fixture
def qt_daemon(tmp_path: Path, softhsm: Any, display: str) -> Iterator[QtDaemon]:
    daemon = _start(tmp_path, softhsm, display,
                    ui={"tray": False, "ui_ping_timeout": 2.0})
    try:
        yield daemon
    finally:
        _stop(daemon)


class Page:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0
        self.replies: dict[int, dict[str, Any]] = {}

    async def send(self, method: str, params: dict[str, Any] | None = None) -> int:
        self.next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            message["params"] = params
        await self.ws.send(json.dumps(message))
        return self.next_id

    async def answer(self, request_id: int, timeout: float = WAIT) -> dict[str, Any]:
        while request_id not in self.replies:
            reply = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            self.replies[reply.get("id")] = reply
        return self.replies.pop(request_id)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        reply = await self.answer(await self.send(method, params))
        assert "result" in reply, reply
        return reply["result"]


async def _handle(page: Page, token: str | None = None) -> str:
    listing = await page.call("certificates.list", {"purpose": "sign"})
    for cert in listing["certificates"]:
        if token is None or cert["token"]["label"] == token:
            return str(cert["handle"])
    raise AssertionError(f"no certificate on {token}: {listing}")


def _sign_params(handle: str, data: bytes) -> dict[str, Any]:
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    return {"handle": handle, "hash": digest, "hashAlgorithm": "SHA-256"}


PIN_UP = r"a pin dialog is up"


def _ui_crashed(reply: dict[str, Any]) -> None:
    assert "error" in reply, reply
    assert reply["error"]["data"]["reason"] == "INTERNAL", reply
    assert reply["error"]["data"]["detail"] == "UI_CRASHED", reply


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.desktop
async def test_a_killed_ui_process_fails_the_dialog_and_is_started_again(
        qt_daemon: QtDaemon) -> None:
    first = qt_daemon.wait_ui()
    url = f"ws://127.0.0.1:{qt_daemon.port}/v1"
    async with connect(url, origin=ORIGIN) as ws, connect(url, origin=ORIGIN) as other_ws:
        page, other = Page(ws), Page(other_ws)
        handle = await _handle(page)
        request = await page.send("sign.hash", _sign_params(handle, b"one"))
        await qt_daemon.wait_log(rf"imza-agent-ui\[{first}\].*{PIN_UP}")
        os.kill(first, signal.SIGKILL)
        assert (await other.call("agent.info"))["version"]  # served all the while
        _ui_crashed(await page.answer(request))
        second = qt_daemon.wait_ui(other_than=first)
        # The next request gets its dialog from the new process.
        again = await page.send("sign.hash", _sign_params(handle, b"two"))
        await qt_daemon.wait_log(rf"imza-agent-ui\[{second}\].*{PIN_UP}")
        assert again not in page.replies
    assert first not in qt_daemon.ui_pids()
    # Only the kind of failure is logged (the pipe closes as the process dies).
    assert re.search(rf"UI process \(pid {first}\) failed: (its pipe closed|it exited)",
                     qt_daemon.log())


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.desktop
async def test_a_hung_ui_process_fails_the_dialog_after_the_ping_timeout(
        qt_daemon: QtDaemon) -> None:
    first = qt_daemon.wait_ui()
    url = f"ws://127.0.0.1:{qt_daemon.port}/v1"
    async with connect(url, origin=ORIGIN) as ws, connect(url, origin=ORIGIN) as other_ws:
        page, other = Page(ws), Page(other_ws)
        handle = await _handle(page)
        request = await page.send("sign.hash", _sign_params(handle, b"one"))
        await qt_daemon.wait_log(rf"imza-agent-ui\[{first}\].*{PIN_UP}")
        os.kill(first, signal.SIGSTOP)
        stopped = time.monotonic()
        # While the UI hangs, other connections are served, and this one still waits.
        assert (await other.call("agent.info"))["version"]
        assert (await other.call("certificates.list", {"purpose": "sign"}))["certificates"]
        with pytest.raises(TimeoutError):
            await page.answer(request, timeout=0.5)
        _ui_crashed(await page.answer(request))
        assert time.monotonic() - stopped >= 2.0  # not before ui_ping_timeout
        second = qt_daemon.wait_ui(other_than=first)
        again = await page.send("sign.hash", _sign_params(handle, b"two"))
        await qt_daemon.wait_log(rf"imza-agent-ui\[{second}\].*{PIN_UP}")
        assert again not in page.replies
    assert "no pong in 2.0 s (hung)" in qt_daemon.log()
    assert not Path(f"/proc/{first}").exists() or b"agent.ui.qt" not in _cmdline(first)


def _xdotool(display: str, *args: str) -> str:
    done = subprocess.run(["xdotool", *args], env={**os.environ, "DISPLAY": display},
                          capture_output=True, text=True)
    return done.stdout


def _window_of(display: str, pid: int) -> str:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = _xdotool(display, "search", "--onlyvisible", "--pid", str(pid)).split()
        if found:
            return found[-1]
        time.sleep(0.05)
    raise AssertionError(f"no window of the UI process {pid}")


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.desktop
async def test_the_pin_typed_in_the_window_signs_and_is_never_logged(
        qt_daemon: QtDaemon, softhsm: Any) -> None:
    ui = qt_daemon.wait_ui()
    token = next(t for t in softhsm.tokens.values() if len(t.pin) >= 6)
    data = b"Vergi beyannamesi 2025"
    async with connect(f"ws://127.0.0.1:{qt_daemon.port}/v1", origin=ORIGIN) as ws:
        page = Page(ws)
        request = await page.send("sign.hash",
                                  _sign_params(await _handle(page, token.label), data))
        await qt_daemon.wait_log(rf"imza-agent-ui\[{ui}\].*{PIN_UP}")
        window = await asyncio.to_thread(_window_of, qt_daemon.display, ui)
        assert token.label in _xdotool(qt_daemon.display, "getwindowname", window) or (
            "portal.example" in _xdotool(qt_daemon.display, "getwindowname", window))
        await asyncio.to_thread(_xdotool, qt_daemon.display, "windowfocus", "--sync", window)
        await asyncio.sleep(1.0)  # past the arming delay the focus change restarted
        await asyncio.to_thread(_xdotool, qt_daemon.display, "type", "--delay", "30",
                                token.pin)
        await asyncio.to_thread(_xdotool, qt_daemon.display, "key", "Return")
        reply = await page.answer(request)
    assert "result" in reply, reply
    assert reply["result"]["signature"]
    _stop(qt_daemon)  # the whole log, the UI process's part included
    deadline = time.monotonic() + WAIT
    while b"agent.ui.qt" in _cmdline(ui):  # the UI process ends with the daemon
        assert time.monotonic() < deadline, "the UI process outlived the daemon"
        time.sleep(0.05)
    log = qt_daemon.log()
    assert f"imza-agent-ui[{ui}]" in log and "sign.hash" in log  # both sides logged
    encoded = base64.b64encode(token.pin.encode()).decode()
    assert token.pin not in log and encoded not in log


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.desktop
def test_the_daemon_never_loads_qt_and_headless_starts_no_ui_process(
        qt_daemon: QtDaemon, softhsm: Any, display: str, tmp_path: Path) -> None:
    ui = qt_daemon.wait_ui()
    # The UI process has Qt mapped (so the check below could fail); the daemon has none.
    assert "libQt6Core" in _maps(ui) and "PySide6" in _maps(ui)
    daemon_maps = _maps(qt_daemon.process.pid)
    assert "libQt6" not in daemon_maps and "PySide6" not in daemon_maps
    headless = _start(tmp_path / "headless", softhsm, display, ui={"tray": True},
                      headless=True)
    try:
        time.sleep(2.0)  # a UI process would have been started at once
        assert headless.ui_pids() == []
        assert "UI process" not in headless.log()
        assert "PySide6" not in _maps(headless.process.pid)
    finally:
        _stop(headless)


UI_IMPORTS = """
import sys
import agent.ui.qt.app, agent.ui.qt.dialogs, agent.ui.qt.tray, agent.ui.qt.preview.pdf
print(sorted(m for m in ("tkinter", "_tkinter", "pystray", "PySide6") if m in sys.modules))
"""


def test_pystray_and_tkinter_left_the_dependencies_and_the_ui() -> None:
    """Qt is the one toolkit: no dependency (base or extra) names pystray or tk, and the
    UI process's modules load PySide6 and neither of them."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = [re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower()
             for spec in project["dependencies"]
             + [s for extra in project.get("optional-dependencies", {}).values()
                for s in extra]]
    assert "pyside6-essentials" in names  # the parse found the dependencies
    assert not [n for n in names if n in ("pystray", "tk", "tkinter") or "pystray" in n]
    done = subprocess.run([sys.executable, "-c", UI_IMPORTS], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['PySide6']"


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.desktop
async def test_restarts_beyond_the_limit_wait_and_dialogs_fail_meanwhile(
        tmp_path: Path, softhsm: Any, display: str) -> None:
    daemon = _start(tmp_path, softhsm, display,
                    ui={"tray": False, "ui_restarts_per_minute": 1})
    try:
        first = daemon.wait_ui()
        os.kill(first, signal.SIGKILL)
        second = daemon.wait_ui(other_than=first)  # the one restart this minute
        os.kill(second, signal.SIGKILL)
        await daemon.wait_log(r"restarted 1 times within a minute")
        async with connect(f"ws://127.0.0.1:{daemon.port}/v1", origin=ORIGIN) as ws:
            page = Page(ws)
            handle = await _handle(page)
            started = time.monotonic()
            _ui_crashed(await page.answer(await page.send(
                "sign.hash", _sign_params(handle, b"one"))))
            assert time.monotonic() - started < 10  # at once, not after a timeout
        assert daemon.ui_pids() == []
        assert daemon.log().count("UI process ready") == 2
    finally:
        _stop(daemon)


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.desktop
async def test_a_page_that_leaves_takes_its_dialog_down(qt_daemon: QtDaemon) -> None:
    ui = qt_daemon.wait_ui()
    async with connect(f"ws://127.0.0.1:{qt_daemon.port}/v1", origin=ORIGIN) as ws:
        page = Page(ws)
        await page.send("sign.hash", _sign_params(await _handle(page), b"one"))
        await qt_daemon.wait_log(rf"imza-agent-ui\[{ui}\].*{PIN_UP}")
        await asyncio.to_thread(_window_of, qt_daemon.display, ui)
    # The connection is gone: the daemon cancels the request and closes the window.
    deadline = time.monotonic() + WAIT
    while _xdotool(qt_daemon.display, "search", "--onlyvisible", "--pid", str(ui)).split():
        assert time.monotonic() < deadline, "the dialog stayed up"
        await asyncio.sleep(0.1)
    assert qt_daemon.ui_pids() == [ui]  # closed, not crashed


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.desktop
async def test_every_new_ui_process_gets_the_tray_facts(
        tmp_path: Path, softhsm: Any, display: str) -> None:
    daemon = _start(tmp_path, softhsm, display, ui={"tray": True})
    try:
        first = daemon.wait_ui()
        await daemon.wait_log(rf"imza-agent-ui\[{first}\].*the tray shows new facts")
        os.kill(first, signal.SIGKILL)
        second = daemon.wait_ui(other_than=first)
        await daemon.wait_log(rf"imza-agent-ui\[{second}\].*the tray shows new facts")
    finally:
        _stop(daemon)
    quiet = _start(tmp_path / "no-tray", softhsm, display, ui={"tray": False})
    try:
        ui = quiet.wait_ui()
        await asyncio.sleep(3.0)  # facts would have gone out by now (see above)
        assert "the tray shows" not in quiet.log() and quiet.ui_pids() == [ui]
    finally:
        _stop(quiet)


# --- PIN management through the UI process ------------------------------------------------

class Windows:
    """The UI process's windows on the test display, each returned once."""

    def __init__(self, display: str, pid: int) -> None:
        self.display, self.pid = display, pid
        self.seen: set[str] = set()

    def next(self) -> str:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            found = [w for w in _xdotool(self.display, "search", "--onlyvisible", "--pid",
                                         str(self.pid)).split() if w not in self.seen]
            if found:
                self.seen.update(found)
                return found[-1]
            time.sleep(0.05)
        raise AssertionError("no new window of the UI process")

    def keys(self, window: str, *keys: str) -> None:
        _xdotool(self.display, "windowfocus", "--sync", window)
        time.sleep(0.6)  # past the arming delay the focus change restarted
        for key in keys:
            _xdotool(self.display, "key", "--delay", "30", key)

    def fill(self, window: str, *fields: str) -> None:
        """Type each field and press Return: it moves on, and submits in the last."""
        _xdotool(self.display, "windowfocus", "--sync", window)
        time.sleep(0.6)
        for text in fields:
            _xdotool(self.display, "type", "--delay", "30", text)
            _xdotool(self.display, "key", "Return")


@pytest.mark.softhsm
@pytest.mark.desktop
async def test_changing_the_pin_through_the_ui_process(
        tmp_path: Path, display: str, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    from test_pin_management import USER_PIN, _make_token

    from agent import i18n
    from agent.config import UiConfig
    from agent.errors import PinIncorrect
    from agent.keystores.base import Secret
    from agent.keystores.pkcs11.store import Pkcs11Store
    from agent.pinmgmt import desktop as flow
    from agent.pinmgmt.use_case import manageable_tokens
    from agent.ui.process import QtProcessUI

    monkeypatch.setenv("DISPLAY", display)
    monkeypatch.setenv("IMZA_AGENT_LOG", "debug")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    bed = _make_token(tmp_path)
    store = Pkcs11Store(Path("/usr/lib/softhsm/libsofthsm2.so"), env=bed.env,
                        call_timeout=15)
    ui = QtProcessUI(UiConfig(language="en", dialog_timeout=60, arming_delay=0.2))

    async def logs_in(pin: str) -> bool:
        [item] = await manageable_tokens([store])
        try:
            await store.login(item.token, Secret(pin))
        except PinIncorrect:
            return False
        await store.logout(item.token)
        return True

    try:
        ui.start()
        [item] = await manageable_tokens([store])
        task = asyncio.create_task(flow.run(ui, item, "change"))
        process = await ui.process.running()
        windows = Windows(display, process.pid)
        form = await asyncio.to_thread(windows.next)
        assert "Change PIN" in _xdotool(display, "getwindowname", form)
        await asyncio.to_thread(windows.fill, form, "0000", "864209", "864209")
        # A wrong current PIN: the form comes back, and nothing changed.
        again = await asyncio.to_thread(windows.next)
        assert await logs_in(USER_PIN)
        await asyncio.to_thread(windows.fill, again, USER_PIN, "864209", "864209")
        done = await asyncio.to_thread(windows.next)
        await asyncio.to_thread(windows.keys, done, "shift", "Return")
        assert await asyncio.wait_for(task, WAIT) is True
        assert await logs_in("864209") and not await logs_in(USER_PIN)
    finally:
        await ui.close()
        await store.close()
        i18n.set_language("en")
    out, err = capfd.readouterr()
    assert "a pin_change dialog is up" in err  # the UI process's log is in here
    assert "864209" not in out + err
    assert base64.b64encode(b"864209").decode() not in out + err



# --- the daemon's side against a real UI process with the stand-in dialogs --------------------

class StandIn:
    """``QtProcessUI`` whose UI process draws the stand-in dialogs, answering from a script."""

    def __init__(self, ui: Any, script: Path) -> None:
        self.ui, self.script = ui, script

    def will(self, kind: str, behaviour: str, **more: Any) -> None:
        self.script.write_text(json.dumps({kind: {"behaviour": behaviour, **more}}),
                               encoding="utf-8")


@pytest.fixture
async def stand_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    from agent import i18n
    from agent.config import UiConfig
    from agent.ui.process import QtProcessUI
    from agent.ui.process.supervisor import UiSupervisor

    script = tmp_path / "script.json"
    script.write_text("{}", encoding="utf-8")
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.setenv("IMZA_AGENT_LOG", "debug")
    monkeypatch.setenv("STAND_IN_SCRIPT", str(script))
    config = UiConfig(language="en", dialog_timeout=60, ui_ping_timeout=2.0)
    ui = QtProcessUI(config)
    ui.process = UiSupervisor(config, ui._hello, command=[sys.executable, "-c", STAND_IN])
    try:
        yield StandIn(ui, script)
    finally:
        await ui.close()
        i18n.set_language("en")


def _pin_request() -> Any:
    from agent.app.dialogs import CertificateChoice, PinRequest, Preview, PreviewKind
    from agent.errors import PinStatus

    choice = CertificateChoice("Holder", "CA", "01", "2025-01-01", "2027-01-01", "T", True)
    preview = Preview(PreviewKind.TEXT, 5, hashlib.sha256(b"salam").hexdigest(), "a.txt",
                      b"salam")
    return PinRequest(origin=ORIGIN, action="sign", certificate=choice,
                      pin=PinStatus(pin_pad=True), previews=(preview,))


async def test_answers_come_back_typed_and_the_pin_as_a_secret(
        stand_in: StandIn, capfd: pytest.CaptureFixture[str]) -> None:
    from agent.app.dialogs import CertificateChoice, ConsentAnswer, ConsentRequest
    from agent.errors import UserCancelled
    from agent.keystores.base import PIN_PAD, Secret

    ui = stand_in.ui
    stand_in.will("consent", "answer", result="always")
    assert await ui.ask_consent(ConsentRequest(ORIGIN, ("sign",))) is ConsentAnswer.ALWAYS
    choices = [CertificateChoice("H", "CA", f"0{i}", "2025-01-01", "2027-01-01", "T", True)
               for i in range(3)]
    stand_in.will("pick", "answer", result=2)
    assert await ui.choose_certificate(ORIGIN, "sign", choices) == 2
    stand_in.will("pick", "cancel")
    with pytest.raises(UserCancelled):
        await ui.choose_certificate(ORIGIN, "sign", choices)
    pin = "Şifrə 987654"
    stand_in.will("pin", "answer", result={"pin_b64": ui_wire.b64(pin.encode())})
    secret = await ui.ask_pin(_pin_request())
    assert isinstance(secret, Secret) and secret.reveal() == pin.encode()
    secret.wipe()
    # A PIN pad: the window stays as the reader's prompt until the login ends.
    stand_in.will("pin", "answer", result={"pin_pad": True})
    assert await ui.ask_pin(_pin_request()) is PIN_PAD
    assert "dismissed pin" not in capfd.readouterr().err
    ui.pin_pad_finished()
    stand_in.will("pin_locked", "answer", result=None)
    assert await ui.show_pin_locked(ORIGIN, "T", "PUK") is None  # the pipe keeps order
    assert "stand-in: dismissed pin" in capfd.readouterr().err


async def test_a_cancelled_caller_closes_its_dialog_and_the_next_one_waits(
        stand_in: StandIn, capfd: pytest.CaptureFixture[str]) -> None:
    from agent.app.dialogs import ConsentAnswer, ConsentRequest

    ui = stand_in.ui
    stand_in.will("consent", "hold")
    first = asyncio.create_task(ui.ask_consent(ConsentRequest(ORIGIN, ("sign",))))
    second = asyncio.create_task(ui.ask_consent(ConsentRequest(ORIGIN, ("auth",))))
    await asyncio.sleep(1.0)
    assert not first.done() and not second.done()
    assert capfd.readouterr().err.count("a consent dialog is up") == 1  # one at a time
    stand_in.will("consent", "answer", result="deny")
    first.cancel()
    assert await asyncio.wait_for(second, WAIT) is ConsentAnswer.DENY
    err = ""
    deadline = time.monotonic() + WAIT
    while "a consent dialog is up" not in err:  # logged just after the stand-in answered
        assert time.monotonic() < deadline, err
        await asyncio.sleep(0.05)
        err += capfd.readouterr().err
    assert err.index("stand-in: dismissed consent") < err.index("a consent dialog is up")


@pytest.mark.parametrize("frame", [{"op": "bogus"}, {"op": "action", "name": "format_disk"}])
async def test_a_frame_outside_the_contract_restarts_the_ui_process(
        stand_in: StandIn, frame: dict[str, Any]) -> None:
    from agent.app.dialogs import ConsentRequest
    from agent.errors import UiCrashed

    ui = stand_in.ui
    first = (await ui.process.running()).pid
    stand_in.will("consent", "raw", message=frame)
    with pytest.raises(UiCrashed):
        await ui.ask_consent(ConsentRequest(ORIGIN, ("sign",)))
    second = (await ui.process.running()).pid
    assert second != first


async def test_an_answer_out_of_shape_or_a_failed_window(stand_in: StandIn) -> None:
    from agent.app.dialogs import CertificateChoice, ConsentRequest
    from agent.errors import UiCrashed

    ui = stand_in.ui
    first = (await ui.process.running()).pid
    stand_in.will("consent", "boom")  # the window cannot be built: this request fails
    with pytest.raises(UiCrashed):
        await ui.ask_consent(ConsentRequest(ORIGIN, ("sign",)))
    assert (await ui.process.running()).pid == first  # a broken window, not a broken process
    choice = CertificateChoice("H", "CA", "01", "2025-01-01", "2027-01-01", "T", True)
    stand_in.will("pick", "answer", result=5)  # no such row: the process is broken
    with pytest.raises(UiCrashed):
        await ui.choose_certificate(ORIGIN, "sign", [choice])
    assert (await ui.process.running()).pid != first


async def test_tray_actions_reach_the_daemon(stand_in: StandIn) -> None:
    from agent.app.dialogs import ConsentRequest
    from agent.errors import UserCancelled

    ui = stand_in.ui
    heard: list[tuple[str, dict[str, Any]]] = []
    ui.process.on_action = lambda name, args: heard.append((name, args))
    stand_in.will("consent", "raw", message={"op": "action", "name": "revoke",
                                             "args": {"origin": ORIGIN}})
    task = asyncio.create_task(ui.ask_consent(ConsentRequest(ORIGIN, ("sign",))))
    deadline = time.monotonic() + WAIT
    while not heard:
        assert time.monotonic() < deadline, "no action arrived"
        await asyncio.sleep(0.05)
    assert heard == [("revoke", {"origin": ORIGIN})]
    task.cancel()
    with pytest.raises((asyncio.CancelledError, UserCancelled)):
        await task


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.desktop
def test_losing_the_display_stops_the_agent_rather_than_restarting_its_window(
        tmp_path: Path, softhsm: Any) -> None:
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "1024x768x24",
                             "-nolisten", "tcp"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert xvfb.stdout is not None
    number = xvfb.stdout.readline().strip()
    assert number.isdigit(), "Xvfb did not start"
    daemon = _start(tmp_path, softhsm, f":{number}", ui={"tray": True})
    try:
        first = daemon.wait_ui()
        xvfb.kill()  # the person logged out
        xvfb.wait()
        assert daemon.process.wait(WAIT) == 0  # the ordinary stop, not a crash
    finally:
        if xvfb.poll() is None:
            xvfb.kill()
            xvfb.wait()
        _stop(daemon)
    log = daemon.log()
    assert "the X display went away: stopping" in log
    assert "stopping (SIGTERM)" in log
    assert log.count("UI process ready") == 1 and b"agent.ui.qt" not in _cmdline(first)
    assert not (daemon.home / "runtime.json").exists()


@pytest.mark.desktop
def test_a_display_that_answers_is_not_gone(display: str, tmp_path: Path) -> None:
    from agent.ui.process.display import display_gone, has_display

    assert not display_gone({"DISPLAY": display})
    assert not display_gone({"DISPLAY": display + ".0"})
    assert display_gone({"DISPLAY": ":4097"})  # nobody listens there
    assert not display_gone({"DISPLAY": "remote.example:0"})  # not ours to judge
    assert display_gone({"WAYLAND_DISPLAY": "wayland-9", "XDG_RUNTIME_DIR": str(tmp_path)})
    assert not has_display({}) and has_display({"QT_QPA_PLATFORM": "offscreen"})


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.desktop
async def test_a_stop_with_a_dialog_open_ends_both_processes_in_time(
        qt_daemon: QtDaemon) -> None:
    ui = qt_daemon.wait_ui()
    async with connect(f"ws://127.0.0.1:{qt_daemon.port}/v1", origin=ORIGIN) as ws:
        page = Page(ws)
        await page.send("sign.hash", _sign_params(await _handle(page), b"one"))
        await qt_daemon.wait_log(rf"imza-agent-ui\[{ui}\].*{PIN_UP}")
        started = time.monotonic()
        qt_daemon.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(qt_daemon.process.wait, WAIT)
        took = time.monotonic() - started
    assert code == 0 and took < 2.0, (code, took)
    assert b"agent.ui.qt" not in _cmdline(ui)
