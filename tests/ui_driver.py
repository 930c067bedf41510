"""The UI process as the daemon drives it, for tests: start it on a socketpair, send
``hello`` and ``dialog`` frames (docs/ui-process.md), collect the answers.

``UiProcess`` runs ``python -m agent.ui.qt --fd N``, the real UI process, as the daemon's
supervisor does (agent/ui/process/). The args builders turn the dialog port's dataclasses
(agent/app/dialogs.py) into the ``args`` of each dialog kind, as the daemon sends them.
Also: the Xvfb and AT-SPI fixtures, xdotool on the test display, and a small PDF.
"""

from __future__ import annotations

import base64
import contextlib
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from atspi import AtspiBus

from agent.app.dialogs import CertificateChoice, ConsentRequest, ExtendRequest, PinRequest
from agent.pipe_frames import encode_json
from agent.ui.process import args as wire_args
from agent.ui.ui_wire import FrameBuffer

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 128 << 20
WAIT = 30.0


def ui_command(fd: int) -> list[str]:
    return [sys.executable, "-m", "agent.ui.qt", "--fd", str(fd)]


class UiProcess:
    """One UI process on a socketpair; a reader thread queues what it sends."""

    def __init__(self, env: dict[str, str], *, language: str = "en", theme: str = "light",
                 arming_ms: int = 400, timeout_s: int = 120) -> None:
        self.env = env
        self.hello = {"op": "hello", "language": language, "theme": theme,
                      "arming_ms": arming_ms, "timeout_s": timeout_s}
        self.arming = arming_ms / 1000
        self.process: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.answers: dict[int, dict[str, Any]] = {}
        self.others: list[dict[str, Any]] = []  # pongs, actions
        self.pid = 0
        self._next_id = 0
        self._lock = threading.Lock()

    def start(self) -> UiProcess:
        ours, theirs = socket.socketpair()
        self.sock = ours
        try:
            self.process = subprocess.Popen(ui_command(theirs.fileno()), env=self.env,
                                            cwd=ROOT, pass_fds=(theirs.fileno(),))
        finally:
            theirs.close()
        threading.Thread(target=self._read, daemon=True).start()
        self.send(self.hello)
        ready = self._next_other("ready")
        self.pid = int(ready["pid"])
        return self

    def _read(self) -> None:
        assert self.sock is not None
        frames = FrameBuffer(LIMIT)
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                self.messages.put(None)
                return
            for message in frames.feed(chunk):
                self.messages.put(message)

    def _pump(self, timeout: float) -> bool:
        """Sort one message from the process; False when it has gone."""
        try:
            message = self.messages.get(timeout=timeout)
        except queue.Empty:
            return True
        if message is None:
            self.messages.put(None)  # stays gone for every later waiter
            return False
        if message.get("op") == "answer":
            self.answers[int(message["id"])] = message
        else:
            self.others.append(message)
        return True

    def _next_other(self, op: str, timeout: float = WAIT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for index, message in enumerate(self.others):
                if message.get("op") == op:
                    return self.others.pop(index)
            assert time.monotonic() < deadline, f"the UI process sent no {op!r}"
            assert self._pump(0.1), f"the UI process went away before {op!r}"

    def send(self, message: dict[str, Any]) -> None:
        assert self.sock is not None
        with self._lock:
            self.sock.sendall(encode_json(message, LIMIT))

    def dialog(self, kind: str, args: dict[str, Any]) -> int:
        self._next_id += 1
        self.send({"op": "dialog", "id": self._next_id, "kind": kind, "args": args})
        return self._next_id

    def answer(self, dialog_id: int, timeout: float = WAIT) -> dict[str, Any]:
        """The answer frame for ``dialog_id`` (``result`` or ``cancelled``)."""
        deadline = time.monotonic() + timeout
        while dialog_id not in self.answers:
            assert time.monotonic() < deadline, f"dialog {dialog_id} got no answer"
            assert self._pump(0.1), "the UI process went away"
        return self.answers.pop(dialog_id)

    def answered(self, dialog_id: int, within: float = 0.0) -> bool:
        """Whether an answer for ``dialog_id`` arrived (waiting up to ``within``)."""
        deadline = time.monotonic() + within
        while True:
            while not self.messages.empty():
                self._pump(0)
            if dialog_id in self.answers or time.monotonic() >= deadline:
                return dialog_id in self.answers
            self._pump(0.05)

    def close(self, dialog_id: int) -> None:
        self.send({"op": "close", "id": dialog_id})

    def language(self, language: str) -> None:
        self.send({"op": "language", "language": language})

    def ping(self, n: int = 1, timeout: float = WAIT) -> dict[str, Any]:
        self.send({"op": "ping", "n": n})
        return self._next_other("pong", timeout)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.send({"op": "quit"})
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.sock is not None:
            self.sock.close()

    def __enter__(self) -> UiProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- the args of each dialog kind: the daemon's own encoding (agent/ui/process/args.py) -------

def consent_args(origin: str, permissions: tuple[str, ...]) -> dict[str, Any]:
    return wire_args.consent(ConsentRequest(origin, permissions))


def pick_args(origin: str, purpose: str, choices: list[CertificateChoice],
              filtered: bool = False) -> dict[str, Any]:
    return wire_args.pick(origin, purpose, choices, filtered)


def pin_args(request: PinRequest) -> dict[str, Any]:
    return wire_args.pin(request)


def extend_args(request: ExtendRequest) -> dict[str, Any]:
    return wire_args.extend(request)


def message_args(title: str, text: str, *, error: bool) -> dict[str, Any]:
    return wire_args.message(title, text, error=error)


def pin_locked_args(origin: str, token_label: str, unlock: str) -> dict[str, Any]:
    return wire_args.pin_locked(origin, token_label, unlock)


def pin_change_args(label: str, serial: str, reader: str | None, min_len: int, max_len: int,
                    notice: str | None = None, error: str | None = None, *,
                    final_try: bool | None = None) -> dict[str, Any]:
    """``pin_change`` (``pin_unblock`` with ``final_try``), field by field as
    ``args.pin_form`` writes them, without a token store behind them."""
    args: dict[str, Any] = {"token": {"label": label, "serial": serial, "reader": reader},
                            "min_len": min_len, "max_len": max_len, "notice": notice,
                            "error": error}
    if final_try is not None:  # pin_unblock only
        args["final_try"] = final_try
    return args


def secret_of(result: dict[str, Any], field: str = "pin_b64") -> str:
    """The secret an answer carries, decoded (the tests' own made-up PINs only)."""
    return base64.b64decode(result[field]).decode("utf-8")


def environment(display: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
    env.update(extra or {})
    return env


# --- fixtures the Qt UI tests share (import them into a test module by name) -----------------

@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    """A private Xvfb; ``-displayfd`` makes the server pick a free display number."""
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "1280x1024x24",
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


@pytest.fixture(scope="module")
def a11y_bus() -> Iterator[AtspiBus]:
    with AtspiBus() as bus:
        yield bus


class Keyboard:
    """xdotool and ImageMagick on the test display, for the UI process's windows."""

    def __init__(self, display: str) -> None:
        self.env = {**os.environ, "DISPLAY": display}

    def run(self, *args: str) -> str:
        return subprocess.run(args, env=self.env, capture_output=True, text=True).stdout

    def windows(self, pid: int) -> list[str]:
        """Visible top-level windows of process ``pid`` (Qt sets _NET_WM_PID)."""
        return self.run("xdotool", "search", "--onlyvisible", "--pid", str(pid)).split()

    def wait_window(self, pid: int, seen: set[str] | None = None,
                    timeout: float = WAIT) -> str:
        """A visible window of ``pid`` not in ``seen`` (which it is then added to)."""
        seen = seen if seen is not None else set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [w for w in self.windows(pid) if w not in seen]
            if found:
                seen.add(found[-1])
                return found[-1]
            time.sleep(0.05)
        raise AssertionError(f"no new window of process {pid}")

    def wait_gone(self, pid: int, window: str, timeout: float = WAIT) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if window not in self.windows(pid):
                return True
            time.sleep(0.05)
        return False

    def title(self, window: str) -> str:
        return self.run("xdotool", "getwindowname", window).strip()

    def focus(self, window: str) -> None:
        """The keyboard to ``window``, as a window manager or a click would give it."""
        self.run("xdotool", "windowfocus", "--sync", window)

    def key(self, *keys: str) -> None:
        for key in keys:
            self.run("xdotool", "key", "--delay", "40", key)

    def type(self, text: str) -> None:
        self.run("xdotool", "type", "--delay", "40", text)

    def screenshot(self, window: str, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["/usr/bin/import", "-window", window, str(path)], env=self.env,
                       check=True, capture_output=True)
        return path


def document_pdf(pages: list[list[str]]) -> bytes:
    """A small A4 PDF, one list of text lines per page (Helvetica, Latin-1 text only): a
    document the preview renders, with a page count worth showing."""
    count = len(pages)
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(count))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode()]
    font = 3 + 2 * count
    for index, lines in enumerate(pages):
        text = " ".join(
            f"BT /F1 {18 if n == 0 else 12} Tf 72 {770 - 24 * n} Td ({line}) Tj ET"
            for n, line in enumerate(lines)).encode("latin-1")
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
                       f"/Resources << /Font << /F1 {font} 0 R >> >> "
                       f"/Contents {4 + 2 * index} 0 R >>".encode())
        objects.append(b"<< /Length %d >>\nstream\n" % len(text) + text + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    from testbed.pdf import classic_pdf

    return classic_pdf(objects)
