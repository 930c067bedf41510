"""The UI process's event loop around the pipe to the daemon (docs/ui-process.md).

The pipe is read without blocking whenever a ``QSocketNotifier`` says it is readable, so
Qt's loop never waits on the daemon; frames are cut out of whatever arrived.  Dialogs are
drawn by ``agent.ui.qt.dialogs.open_dialog``, the tray by ``agent.ui.qt.tray.Tray``, both
loaded on first use.  Nothing a dialog shows or returns is ever logged here: this
process's stderr is the daemon's log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QSocketNotifier
from PySide6.QtWidgets import QApplication, QWidget

from agent import i18n
from agent.ui import ui_wire

log = logging.getLogger("imza_agent.ui")

WRITE_STALL = 10.0  # seconds a full pipe may block a write before the daemon counts as gone


class _Dialog:
    """One open dialog: its window, and whether its answer went out."""

    def __init__(self) -> None:
        self.widget: QWidget | None = None
        self.answered = False


class UiApp(QObject):
    def __init__(self, app: QApplication, fd: int, frame_bytes: int) -> None:
        super().__init__()
        self.app = app
        self.sock = socket.socket(fileno=fd)
        self.sock.setblocking(False)
        self.limit = frame_bytes
        self.frames = ui_wire.FrameBuffer(frame_bytes)
        # What "hello" set (and "language" changed since): each dialog gets a copy.
        self.settings: dict[str, Any] = {}
        self.dialogs: dict[int, _Dialog] = {}
        self.tray: Any = None
        self.facts: dict[str, Any] | None = None
        self.exit_code = 0
        self.notifier = QSocketNotifier(fd, QSocketNotifier.Type.Read, self)
        self.notifier.activated.connect(self._readable)

    # --- the pipe -----------------------------------------------------------------------

    def _readable(self, *_args: object) -> None:
        while True:
            try:
                chunk = self.sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("the pipe to the daemon failed: %s", type(exc).__name__)
                self._end(1)
                return
            if not chunk:  # the daemon is gone: nobody to answer for
                self._end(0)
                return
            try:
                messages = self.frames.feed(chunk)
            except ui_wire.FrameError:
                log.warning("a malformed frame from the daemon")
                self._end(1)
                return
            for message in messages:
                self._dispatch(message)

    def send(self, message: dict[str, Any]) -> None:
        data = memoryview(ui_wire.encode(message, self.limit))
        while data:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                _, ready, _ = select.select([], [self.sock], [], WRITE_STALL)
                if not ready:
                    log.warning("the daemon stopped reading the pipe")
                    self._end(1)
                    return
                continue
            except OSError:
                self._end(0)  # the daemon is gone
                return
            data = data[sent:]

    def _end(self, code: int) -> None:
        self.exit_code = code
        self.notifier.setEnabled(False)
        for dialog in list(self.dialogs.values()):
            dialog.answered = True
            _close(dialog.widget)
        self.dialogs.clear()
        if self.tray is not None:
            with contextlib.suppress(Exception):
                self.tray.hide()
        self.app.exit(code)

    # --- what the daemon says -----------------------------------------------------------

    def _dispatch(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        handler = self._handlers().get(op if isinstance(op, str) else "")
        if handler is None:
            log.warning("an unknown op from the daemon")
            return
        try:
            handler(message)
        except Exception as exc:
            # Kinds only: an exception's text may quote what a dialog shows.
            log.error("handling %s failed: %s", op, type(exc).__name__)

    def _handlers(self) -> dict[str, Callable[[dict[str, Any]], None]]:
        return {"hello": self._hello, "dialog": self._dialog, "close": self._close,
                "tray": self._tray, "language": self._language, "ping": self._ping,
                "quit": lambda _m: self._end(0)}

    def _hello(self, message: dict[str, Any]) -> None:
        self.settings.update({key: message.get(key) for key in
                              ("language", "theme", "arming_ms", "timeout_s")})
        self._set_language(message.get("language"))
        theme = message.get("theme") if message.get("theme") in ("light", "dark") else "auto"
        try:
            from agent.ui.qt.theme import apply_theme

            apply_theme(self.app, str(theme))
        except Exception as exc:
            log.warning("the theme could not be applied: %s", type(exc).__name__)
        self.send({"op": "ready", "pid": os.getpid()})

    def _ping(self, message: dict[str, Any]) -> None:
        self.send({"op": "pong", "n": message.get("n")})

    def _dialog(self, message: dict[str, Any]) -> None:
        dialog_id, kind, args = message.get("id"), message.get("kind"), message.get("args")
        if not isinstance(dialog_id, int) or kind not in ui_wire.DIALOG_KINDS or not (
                isinstance(args, dict)):
            log.warning("a dialog frame out of shape")
            return
        entry = _Dialog()
        self.dialogs[dialog_id] = entry

        def answer(result: Any) -> None:
            if entry.answered or dialog_id not in self.dialogs:
                return
            entry.answered = True
            # The PIN pad's prompt stays up until the daemon closes it.
            if not (isinstance(result, dict) and result.get("pin_pad") is True):
                self.dialogs.pop(dialog_id, None)
            self.send({"op": "answer", "id": dialog_id, "result": result})

        def cancel() -> None:
            if entry.answered or dialog_id not in self.dialogs:
                return
            entry.answered = True
            self.dialogs.pop(dialog_id, None)
            self.send({"op": "answer", "id": dialog_id, "cancelled": True})

        try:
            from agent.ui.qt.dialogs import DialogSettings, open_dialog

            settings = DialogSettings(
                language=str(self.settings.get("language") or i18n.current_language()),
                theme=str(self.settings.get("theme") or "auto"),
                arming_ms=int(self.settings.get("arming_ms") or 500),
                timeout_s=float(self.settings.get("timeout_s") or 120.0))
            entry.widget = open_dialog(kind, args, settings, answer, cancel)
            log.debug("a %s dialog is up (id %d)", kind, dialog_id)
        except Exception as exc:
            log.error("the %s dialog could not be opened: %s", kind, type(exc).__name__)
            self.dialogs.pop(dialog_id, None)
            if not entry.answered:
                entry.answered = True
                self.send({"op": "answer", "id": dialog_id, "failed": True})

    def _close(self, message: dict[str, Any]) -> None:
        entry = self.dialogs.pop(message.get("id"), None)  # type: ignore[arg-type]
        if entry is not None:
            entry.answered = True  # the daemon forgot it: no answer goes out
            _close(entry.widget)

    def _tray(self, message: dict[str, Any]) -> None:
        facts = message.get("facts")
        if not isinstance(facts, dict):
            log.warning("a tray frame out of shape")
            return
        self.facts = facts
        if self.tray is None:
            from agent.ui.qt.tray import Tray

            self.tray = Tray(self.send_action)
        self.tray.update(facts)
        log.debug("the tray shows new facts")

    def send_action(self, name: str, args: dict[str, Any] | None = None) -> None:
        self.send({"op": "action", "name": name, "args": args or {}})

    def _set_language(self, language: object) -> None:
        if isinstance(language, str) and language in i18n.LANGUAGE_NAMES:
            i18n.set_language(language)
            self.settings["language"] = language

    def _language(self, message: dict[str, Any]) -> None:
        self._set_language(message.get("language"))
        for entry in list(self.dialogs.values()):
            retranslate = getattr(entry.widget, "retranslate", None)
            if callable(retranslate):
                retranslate()
        if self.tray is not None:
            retranslate = getattr(self.tray, "retranslate", None)
            if callable(retranslate):
                retranslate()
            elif self.facts is not None:
                self.tray.update(self.facts)


def _close(widget: QWidget | None) -> None:
    """Take a dialog down without an answer (``dismiss``: its close would cancel)."""
    if widget is None:
        return
    with contextlib.suppress(RuntimeError):  # its C++ side may be gone already
        getattr(widget, "dismiss", widget.close)()
