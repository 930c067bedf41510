"""The daemon's side of the UI process: start it, talk to it, watch it, restart it.

The UI process (``python -m agent.ui.qt --fd N``) gets one end of a socketpair.  While a
dialog is up it is pinged; a process that dies, stops answering pings or sends a frame
this side cannot read is killed, every dialog in flight fails with ``UiCrashed``, and a
new process is started at once — at most ``[ui] ui_restarts_per_minute`` times a
minute.  Only kinds of events are logged: never a dialog's contents, never an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import agent
from agent.config import UiConfig
from agent.errors import UiCrashed, UserCancelled
from agent.pipe_frames import HEADER_SIZE, FrameError, decode_json_object, frame_length
from agent.platform.stop import stop_this_process
from agent.ui import ui_wire
from agent.ui.process.display import display_gone, has_display

log = logging.getLogger(__name__)

UI_MODULE = "agent.ui.qt"
READY_TIMEOUT = 30.0  # seconds from spawn to "ready" (PySide6 loads in ~1 s; CI is slower)
PING_EVERY = 1.0      # seconds between pings while a dialog is up
RESTART_WINDOW = 60.0
QUIT_GRACE = 0.3      # the daemon's own stop has 2 s in all; run.py kills what is left


class _Dialog:
    """A dialog in flight: the answer frame resolves ``future``."""

    def __init__(self, future: asyncio.Future[dict[str, Any]], process: _Process) -> None:
        self.future = future
        self.process = process


class _Process:
    """One running UI process and its end of the pipe."""

    def __init__(self, proc: asyncio.subprocess.Process, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.proc = proc
        self.reader = reader
        self.writer = writer
        self.ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.pong = asyncio.Event()
        self.last_pong = 0
        self.gone = False
        self.tasks: list[asyncio.Task[None]] = []

    @property
    def pid(self) -> int:
        return self.proc.pid


class UiSupervisor:
    """Owns the UI process.  ``on_action`` hears the tray's actions, ``on_ready`` is told
    each time a (new) process is ready (the tray's facts go out then)."""

    def __init__(self, config: UiConfig, hello: Callable[[], dict[str, Any]], *,
                 command: Sequence[str] | None = None) -> None:
        self.config = config
        self._hello = hello
        # What runs as the UI process; "--fd N --frame-bytes M" follow (tests may run a
        # stand-in for the dialogs here).
        self.command = list(command or (sys.executable, "-m", UI_MODULE))
        self.on_action: Callable[[str, dict[str, Any]], None] | None = None
        self.on_ready: Callable[[], None] | None = None
        # The display went away under the UI process (a logout): the daemon's own stop.
        self.on_display_lost: Callable[[], None] = _stop_daemon
        self._current: _Process | None = None
        self._starting: asyncio.Task[_Process] | None = None
        self._dialogs: dict[int, _Dialog] = {}
        self._ids = itertools.count(1)
        self._pings = itertools.count(1)
        self._restarts: deque[float] = deque()
        self._restart_timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._spawned = False
        self._reapers: set[asyncio.Future[int]] = set()

    # --- for tests and `status` ---------------------------------------------------------

    @property
    def pid(self) -> int | None:
        current = self._current
        return current.pid if current is not None and not current.gone else None

    # --- life cycle ---------------------------------------------------------------------

    def start_soon(self) -> None:
        """Start the process in the background (the tray must appear without a page)."""
        if not has_display():
            log.warning("no display: no tray, and requests that need the user are refused")
            return
        if self._current is None and self._starting is None and not self._closing:
            self._spawn_task()

    def _spawn_task(self) -> asyncio.Task[_Process]:
        task = asyncio.ensure_future(self._spawn())
        self._starting = task

        def done(t: asyncio.Task[_Process]) -> None:
            if self._starting is t:
                self._starting = None
            if not t.cancelled() and t.exception() is not None:
                log.warning("the UI process did not start: %s", type(t.exception()).__name__)
                self._schedule_restart()

        task.add_done_callback(done)
        return task

    async def running(self) -> _Process:
        """The ready process, starting one if allowed; ``UiCrashed`` when none can be."""
        current = self._current
        if current is not None and not current.gone:
            return current
        if self._closing:
            raise UserCancelled("the agent is stopping")
        if not has_display():
            raise UserCancelled("no desktop to ask on")
        if self._starting is None:
            if not self._may_restart():
                raise UiCrashed()
            self._spawn_task()
        assert self._starting is not None
        try:
            return await asyncio.shield(self._starting)
        except asyncio.CancelledError:
            raise
        except Exception:
            raise UiCrashed() from None

    async def _spawn(self) -> _Process:
        if self._spawned:  # the first start is not a restart
            self._restarts.append(time.monotonic())
        self._spawned = True
        ours, theirs = socket.socketpair()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command, "--fd", str(theirs.fileno()),
                "--frame-bytes", str(self.config.ui_frame_bytes),
                stdin=asyncio.subprocess.DEVNULL, pass_fds=(theirs.fileno(),),
                env=_child_env())
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours, limit=2 ** 16)
        process = _Process(proc, reader, writer)
        process.tasks = [asyncio.ensure_future(self._read(process)),
                         asyncio.ensure_future(self._watch(process)),
                         asyncio.ensure_future(self._ping(process))]
        try:
            self._send(process, {"op": "hello", **self._hello()})
            await asyncio.wait_for(asyncio.shield(process.ready), READY_TIMEOUT)
        except BaseException as exc:
            self._fail(process, f"not ready ({type(exc).__name__})")
            raise
        log.info("UI process ready (pid %d)", proc.pid)
        self._current = process
        if self.on_ready is not None:
            try:
                self.on_ready()
            except Exception:
                log.exception("the UI process's start hook failed")
        return process

    def _may_restart(self) -> bool:
        now = time.monotonic()
        while self._restarts and now - self._restarts[0] > RESTART_WINDOW:
            self._restarts.popleft()
        return len(self._restarts) < self.config.ui_restarts_per_minute

    def _schedule_restart(self) -> None:
        """Start again now if the minute's budget allows, else when it does."""
        if self._closing or self._starting is not None or self._restart_timer is not None:
            return
        if self._may_restart():
            self._spawn_task()
            return
        wait = RESTART_WINDOW - (time.monotonic() - self._restarts[0]) + 0.1
        log.warning("the UI process was restarted %d times within a minute; dialogs fail "
                    "and the tray is gone for %.0f s", len(self._restarts), wait)

        def later() -> None:
            self._restart_timer = None
            self._schedule_restart()

        self._restart_timer = asyncio.get_running_loop().call_later(wait, later)

    def _fail(self, process: _Process, why: str) -> None:
        """The process is broken: kill it, fail its dialogs, start another."""
        if process.gone:
            return
        process.gone = True
        if not process.ready.done():
            process.ready.set_exception(UiCrashed())
        if not self._closing:
            log.warning("UI process (pid %d) failed: %s; restarting it", process.pid, why)
        with contextlib.suppress(ProcessLookupError):
            process.proc.kill()
        # Held until reaped: a process object dropped before that would be reaped by the
        # next spawn's clean-up behind asyncio's back (and logged as an unknown child).
        reaper = asyncio.ensure_future(process.proc.wait())
        self._reapers.add(reaper)
        reaper.add_done_callback(self._reapers.discard)
        with contextlib.suppress(Exception):
            process.writer.close()
        for task in process.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        for dialog_id, dialog in list(self._dialogs.items()):
            if dialog.process is process and not dialog.future.done():
                dialog.future.set_exception(UiCrashed())
                self._dialogs.pop(dialog_id, None)
        if self._current is process:
            self._current = None
        if not self._closing and display_gone():
            log.warning("the X display went away: stopping")
            self._closing = True
            self.on_display_lost()
            return
        self._schedule_restart()

    def restart(self, why: str) -> None:
        """The process is broken in a way only this side saw (an answer out of shape)."""
        if self._current is not None:
            self._fail(self._current, why)

    async def close(self) -> None:
        """The agent stops: ``quit``, a moment, then the signal (run.py kills the rest)."""
        self._closing = True
        if self._restart_timer is not None:
            self._restart_timer.cancel()
        if self._starting is not None:
            self._starting.cancel()
        process = self._current
        if process is None or process.gone:
            return
        with contextlib.suppress(Exception):
            self._send(process, {"op": "quit"})
        try:
            await asyncio.wait_for(process.proc.wait(), QUIT_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.proc.terminate()
        self._fail(process, "closing")

    # --- the pipe -----------------------------------------------------------------------

    def _send(self, process: _Process, message: dict[str, Any]) -> None:
        process.writer.write(ui_wire.encode(message, self.config.ui_frame_bytes))

    def send(self, message: dict[str, Any]) -> bool:
        """Send a message that has no answer (tray, language, close); False when no
        process is up to take it (a new one gets the state through ``on_ready``)."""
        process = self._current
        if process is None or process.gone:
            return False
        try:
            self._send(process, message)
        except FrameError:
            log.warning("a %s message for the UI process is over the frame limit",
                        message.get("op"))
            return False
        return True

    async def _read(self, process: _Process) -> None:
        limit = self.config.ui_frame_bytes
        try:
            while True:
                header = await process.reader.readexactly(HEADER_SIZE)
                body = await process.reader.readexactly(frame_length(header, limit))
                self._receive(process, decode_json_object(body))
        except asyncio.CancelledError:
            raise
        except asyncio.IncompleteReadError:
            self._fail(process, "its pipe closed")
        except FrameError:
            self._fail(process, "a malformed frame")
        except _Unexpected as exc:
            self._fail(process, str(exc))
        except OSError as exc:
            self._fail(process, f"its pipe failed ({type(exc).__name__})")

    def _receive(self, process: _Process, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "answer":
            dialog_id = message.get("id")
            dialog = self._dialogs.get(dialog_id) if isinstance(dialog_id, int) else None
            if dialog is not None and dialog.process is process:
                del self._dialogs[dialog_id]  # type: ignore[arg-type]
                if not dialog.future.done():
                    dialog.future.set_result(message)
            # An answer to a dialog already closed (timeout) crossed the close: dropped.
        elif op == "pong":
            if isinstance(message.get("n"), int):
                process.last_pong = message["n"]
                process.pong.set()
        elif op == "ready":
            if not process.ready.done():
                process.ready.set_result(int(message.get("pid") or 0))
        elif op == "action":
            name, args = message.get("name"), message.get("args") or {}
            if name not in ui_wire.ACTIONS or not isinstance(args, dict):
                raise _Unexpected("an unknown action")
            if self.on_action is not None:
                self.on_action(str(name), args)
        else:
            raise _Unexpected("an unknown op")

    async def _watch(self, process: _Process) -> None:
        code = await process.proc.wait()
        if not process.gone:
            self._fail(process, f"it exited (code {code})")

    async def _ping(self, process: _Process) -> None:
        """While a dialog of this process is up, a pong must come within the timeout."""
        timeout = self.config.ui_ping_timeout
        while not process.gone:
            await asyncio.sleep(PING_EVERY)
            if not process.ready.done() or not any(
                    d.process is process for d in self._dialogs.values()):
                continue
            n = next(self._pings)
            process.pong.clear()
            self._send(process, {"op": "ping", "n": n})
            deadline = asyncio.get_running_loop().time() + timeout
            while process.last_pong < n:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    self._fail(process, f"no pong in {timeout:.1f} s (hung)")
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.pong.wait(), left)
                process.pong.clear()

    # --- dialogs ------------------------------------------------------------------------

    async def dialog(self, kind: str, args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Show one dialog and wait for its answer frame; (id, answer).

        Cancelled (timeout, the page left): the dialog is closed.  The UI process takes a
        dialog down once answered, except the PIN pad's prompt, which stays up until
        ``close(id)``.
        """
        process = await self.running()
        dialog_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        message = {"op": "dialog", "id": dialog_id, "kind": kind, "args": args}
        try:
            frame = ui_wire.encode(message, self.config.ui_frame_bytes)
        except FrameError:
            # Previews too large for one frame: shown as their size and SHA-256 only.
            message["args"] = _without_preview_data(args)
            frame = ui_wire.encode(message, self.config.ui_frame_bytes)
        if process.gone:  # it failed between becoming ready and now
            raise UiCrashed()
        self._dialogs[dialog_id] = _Dialog(future, process)
        process.writer.write(frame)
        try:
            answer = await future
        except asyncio.CancelledError:
            self._dialogs.pop(dialog_id, None)
            self.close_dialog(dialog_id)
            raise
        if answer.get("failed"):
            log.warning("the UI process could not show a %s dialog", kind)
            raise UiCrashed()
        if answer.get("cancelled"):
            raise UserCancelled()
        return dialog_id, answer

    def close_dialog(self, dialog_id: int) -> None:
        self.send({"op": "close", "id": dialog_id})


class _Unexpected(Exception):
    """The UI process sent something outside the contract: it is broken."""


def _without_preview_data(args: dict[str, Any]) -> dict[str, Any]:
    previews = [{**p, "kind": "binary" if p.get("kind") != "hash" else "hash",
                 "data_b64": ""} for p in args.get("previews") or []]
    return {**args, "previews": previews}


def _stop_daemon() -> None:
    stop_this_process()  # the daemon's ordinary, bounded stop


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The UI process must import this very package, even when run from a source tree.
    root = str(Path(agent.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env["QT_LINUX_ACCESSIBILITY_ALWAYS_ON"] = "1"
    return env
