"""`imza-agent run`: the event loop, logging and signals around the runtime.

How the daemon stops, always within ``FORCED_STOP_AFTER`` seconds of being asked:

* asked by SIGTERM (`imza-agent stop`, the tray's Quit, a session manager at logout, the
  X display going away: agent/ui/process/supervisor.py), SIGHUP (the terminal it runs in closed)
  or SIGINT (Ctrl+C);
* the runtime stops in steps, each under a bound (``AgentRuntime.stop``), within
  ``STOP_TIMEOUT``;
* worker processes still alive then are killed (``end_workers``);
* and the process ends with ``os._exit``, without the interpreter's finalisation.  That
  last part is the cure for a stop that hung for good: finalisation froze the Tk thread,
  then released a dialog's Tcl variable on the main thread, and tkinter's ``__del__``
  waited forever for the frozen thread to run the call.  Nothing of the Tk side needs
  finalising: the X server drops the windows with the connection.
* A watchdog thread, started by the signal itself, ends the process (and the workers)
  ``FORCED_STOP_AFTER`` seconds after the first signal even if the steps above are stuck;
  the exit code ``EXIT_FORCED_STOP`` tells such a stop apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from agent.config import Config
from agent.daemon.runtime import STOP_TIMEOUT, AgentRuntime
from agent.platform import current as current_platform

if TYPE_CHECKING:
    from agent.daemon.early_listen import EarlySockets

log = logging.getLogger("imza_agent")

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGINT")
                     if hasattr(signal, name))  # Windows has no SIGHUP
# The promise is "within 2 s"; the orderly stop has STOP_TIMEOUT of that, the
# watchdog a little more, and the kernel tears the process down in the rest.
FORCED_STOP_AFTER = STOP_TIMEOUT + 0.3
EXIT_FORCED_STOP = 3
_exit_hooks: list[Callable[[], None]] = []


def run_daemon(config: Config, *, headless: bool,
               on_exit: Callable[[], None] | None = None,
               early: EarlySockets | None = None) -> int:
    """Serve until asked to stop; then the process ends here (see the module's doc),
    after ``on_exit`` (say, releasing a lock; it must be quick).  Returns (or raises)
    only when the agent could not start. ``early``: the ports already listening
    (agent/daemon/early_listen.py), served by the transports."""
    if on_exit is not None:
        at_exit(on_exit)
    # IMZA_AGENT_LOG=debug for support sessions; secrets are never logged at any level.
    level = getattr(logging, os.environ.get("IMZA_AGENT_LOG", "info").upper(), logging.INFO)
    logging.basicConfig(level=level, format="imza-agent: %(levelname)s %(name)s %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C before the handlers are in
        asyncio.run(_serve(config, headless=headless, early=early))
    return 0


class StopRequest:
    """The first stop signal sets the event loop's ``stopping`` and starts the watchdog;
    later ones change nothing."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.stopping = asyncio.Event()
        self.signal_name: str | None = None
        self.since: float | None = None

    def install(self) -> None:
        # signal.signal rather than loop.add_signal_handler: the handler (and with it the
        # watchdog) runs at the next bytecode even while the event loop is busy.
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)

    def uninstall(self) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL if sig != signal.SIGINT
                          else signal.default_int_handler)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.since is not None:
            return
        self.since = time.monotonic()
        self.signal_name = signal.Signals(signum).name
        threading.Thread(target=_watchdog, args=(FORCED_STOP_AFTER,), name="imza-stop",
                         daemon=True).start()
        self.loop.call_soon_threadsafe(self.stopping.set)


async def _serve(config: Config, *, headless: bool, early: EarlySockets | None) -> None:
    runtime = AgentRuntime(config, headless=headless, early=early)
    request = StopRequest(asyncio.get_running_loop())
    request.install()
    # `imza-agent stop` on Windows sets an event instead of a signal: the same path. The
    # watch lasts until os._exit ends the process (agent/platform/windows/stop_event.py).
    watch = current_platform().watch_stop_requests(lambda: request.loop.call_soon_threadsafe(
        request._on_signal, signal.SIGTERM, None))
    try:
        await runtime.start()
    except BaseException:  # the caller says why; a signal now ends the process as usual
        request.uninstall()
        watch.close()
        raise
    served = [f"{t}://127.0.0.1:{p}/v1" for t, p in runtime.transport.ports.items()]
    if runtime.local.address is not None:
        served.append("the browser extension")
    log.info("ready: %s", ", ".join(served) or "no transport")
    try:
        await request.stopping.wait()
        log.info("stopping (%s)", request.signal_name)
        # No garbage collection from here on: the process ends with os._exit, and nothing
        # collected now needs finalising.
        gc.disable()
        await runtime.stop()
        end_workers()
        _unlink_semaphores()
    except Exception:
        log.exception("the stop failed")
    finally:
        end_process(0)


# --- ending the process ---------------------------------------------------------------------------

def _watchdog(after: float) -> None:
    time.sleep(after)
    sys.stderr.write(f"imza-agent: the stop took over {after:.1f} s; ending now. Where "
                     "each thread was (for a bug report):\n")
    with contextlib.suppress(Exception):
        faulthandler.dump_traceback(sys.stderr, all_threads=True)
    end_process(EXIT_FORCED_STOP)


def at_exit(hook: Callable[[], None]) -> None:
    """Run ``hook`` (quick, never raising) right before the process ends: ``os._exit``
    skips the interpreter's own exit handlers (a profiler writing its file, say)."""
    _exit_hooks.append(hook)


def end_process(code: int) -> None:
    """Kill the workers still alive, flush the log and end the process at once."""
    with contextlib.suppress(Exception):
        end_workers()
    for hook in _exit_hooks:
        with contextlib.suppress(Exception):
            hook()
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def end_workers() -> list[int]:
    """SIGKILL this process's children: the workers it started (PKCS#11 modules, the frame
    parser, documents, the Qt UI process), which have had their orderly chance already.
    Not a program it started in a session of its own (xdg-open for the journal), and not
    multiprocessing's resource tracker, which ends by itself when we do and cleans up after
    the pool. How the children are found is the platform's (agent/platform/workers.py)."""
    tracker = _resource_tracker_pid()
    return current_platform().end_workers(spared=() if tracker is None else (tracker,))


def _unlink_semaphores() -> None:
    """Remove the named semaphores of the frame parser's pool now, as the interpreter's
    exit would have (multiprocessing's finalisers of priority 0 and up; those below may
    wait on threads): otherwise the resource tracker removes them after us, and logs
    them as leaked."""
    util = sys.modules.get("multiprocessing.util")
    run_finalizers = getattr(util, "_run_finalizers", None)
    if callable(run_finalizers):
        run_finalizers(0)


def _resource_tracker_pid() -> int | None:
    tracker = sys.modules.get("multiprocessing.resource_tracker")
    if tracker is None:
        return None
    pid = getattr(getattr(tracker, "_resource_tracker", None), "_pid", None)
    return pid if isinstance(pid, int) else None
