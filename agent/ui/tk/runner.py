"""The one Tk thread of the process.

Tk is not thread-safe: the root window is created on this thread and every widget call
runs here.  Other threads hand work over through a queue that the Tk loop drains; a
dialog reports its answer through a ``concurrent.futures.Future`` that the asyncio side
awaits with ``asyncio.wrap_future``.

The X display going away (the person logged out, the X server ended) ends the agent as
a logout must: Xlib would end the process on the spot from this thread, skipping the
daemon's stop (workers left running, the journal not closed), so the thread catches
the loss instead, asks for the daemon's ordinary stop (SIGTERM to itself) and waits
there until the process ends.  The daemon never finalises the interpreter while this
thread lives (agent/daemon/run.py): Tcl cannot be torn down from another thread.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import logging
import os
import queue
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # tkinter itself is imported on the Tk thread, on first use
    import tkinter
    from tkinter import font as tkfont

log = logging.getLogger(__name__)

R = TypeVar("R")

_POLL_MS = 25


class TkUnavailable(RuntimeError):
    """No display to draw on (no $DISPLAY, or the X server refused us)."""


def stop_this_process() -> None:
    """What losing the display does by default: the daemon's ordinary stop."""
    os.kill(os.getpid(), signal.SIGTERM)


# Xlib's fatal I/O error handler: int handler(Display *). Kept here, for the process's life.
_IOErrorHandler = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
_io_error_handler: object = None
_on_display_lost: list[Callable[[], None]] = []


def _display_lost(_display: int | None) -> int:
    log.warning("the X display went away: stopping")
    for action in list(_on_display_lost):
        try:
            action()
        except Exception:
            log.exception("stopping after the display went away failed")
    # Returning would let Xlib end the process at once; the stop ends it instead.
    threading.Event().wait()
    return 0


def _catch_display_loss(root: tkinter.Tk, on_lost: Callable[[], None]) -> None:
    """Route Xlib's fatal I/O error (one handler per process) to ``on_lost``."""
    global _io_error_handler
    _on_display_lost[:] = [on_lost]
    if _io_error_handler is not None:
        return
    if str(root.tk.call("tk", "windowingsystem")) != "x11":
        return
    xlib = _libx11()
    if xlib is None:
        log.warning("cannot watch the X display: losing it ends the agent at once")
        return
    xlib.XSetIOErrorHandler.restype = ctypes.c_void_p
    xlib.XSetIOErrorHandler.argtypes = [_IOErrorHandler]
    _io_error_handler = _IOErrorHandler(_display_lost)
    xlib.XSetIOErrorHandler(_io_error_handler)


def _libx11() -> ctypes.CDLL | None:
    """The Xlib that Tk loaded already (its usual name first: find_library runs ldconfig)."""
    with contextlib.suppress(OSError):
        return ctypes.CDLL("libX11.so.6")
    name = ctypes.util.find_library("X11")
    with contextlib.suppress(OSError):
        return ctypes.CDLL(name) if name else None
    return None


class TkThread:
    def __init__(self, on_display_lost: Callable[[], None] = stop_this_process) -> None:
        self._on_display_lost = on_display_lost
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._error: BaseException | None = None
        self._root: tkinter.Tk | None = None
        self._fonts: list[tkfont.Font] = []
        self._thread = threading.Thread(target=self._main, name="imza-tk", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise TkUnavailable(str(self._error)) from self._error

    @property
    def root(self) -> tkinter.Tk:
        """The hidden root window, parent of every dialog (use it on the Tk thread only)."""
        if self._root is None:
            raise TkUnavailable("the Tk thread has no root window")
        return self._root

    def _main(self) -> None:
        try:
            import tkinter

            from agent.ui.tk.style import apply_style

            root = tkinter.Tk(className="ImzaAgent")
            _catch_display_loss(root, self._on_display_lost)
            root.withdraw()
            # A named font lives as long as its Python object: keep them with the root.
            self._fonts = apply_style(root)
        except Exception as exc:  # TclError without a display, ImportError without Tk
            self._error = exc
            self._ready.set()
            return
        self._root = root
        root.after(_POLL_MS, self._drain)
        self._ready.set()
        root.mainloop()
        # Close the display connection here: Tk ends the whole process if the X server
        # goes away under an open connection.
        root.destroy()
        self._stopped.set()
        # Then keep this thread, and with it the Tcl interpreter, until the process ends:
        # Tcl aborts the process when its interpreter is freed from another thread, as a
        # late garbage collection on the main thread would do.
        threading.Event().wait()

    def _drain(self) -> None:
        while True:
            try:
                call = self._calls.get_nowait()
            except queue.Empty:
                break
            try:
                call()
            except Exception:
                log.exception("a UI call failed")
        self.root.after(_POLL_MS, self._drain)

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the Tk thread, without waiting."""
        self._calls.put(fn)

    def call(self, fn: Callable[[], R]) -> concurrent.futures.Future[R]:
        """Run ``fn`` on the Tk thread; its return value (or exception) in a future."""
        future: concurrent.futures.Future[R] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        self._calls.put(run)
        return future

    def stop(self, timeout: float = 5.0) -> None:
        """End the Tk loop and close the display (windows still open are dropped)."""
        if self._root is not None and not self._stopped.is_set():
            self.call_soon(self._root.quit)
            self._stopped.wait(timeout)
