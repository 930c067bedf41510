"""Another process asks the agent to stop in its orderly way, on Windows: a named event.

On Linux and macOS ``imza-agent stop`` sends SIGTERM and the daemon's handler
(agent/daemon/run.py) runs the orderly stop. On Windows ``os.kill(pid, SIGTERM)`` is
``TerminateProcess``: the daemon would end without stopping its workers and UI process or
removing its runtime files. So the daemon creates an auto-reset event
``Local\\imza-agent-stop-<pid>`` at start and a thread waits on it; ``imza-agent stop``
opens it by the daemon's pid and sets it.

- ``Local\\``: the name lives in this logon session's namespace, so on a terminal server
  another user's session cannot even see it.
- The event gets a protected DACL that grants this user's SID alone (``D:P(A;;GA;;;SID)``),
  as the relay's pipe does (relay.py): without it the daemon token's default DACL would
  apply (this user and SYSTEM, and Administrators for an elevated token), which is about
  as strict; the explicit one does not depend on how the token was made. An elevated
  ``imza-agent stop`` of the same user has the same SID and may set it; a process of lower
  integrity (a sandbox) cannot, by Windows' no-write-up rule.
- The thread blocks in ``WaitForSingleObject(INFINITE)``: no polling, no CPU while idle.
- When the event is set the thread calls the daemon's callback once and ends. The handle
  stays open until the process ends, so a second ``imza-agent stop`` during the stop sets
  the event again (harmless) instead of finding none and ending the agent at once.
- How the thread ends otherwise: it is a daemon thread, and the daemon always ends through
  ``os._exit`` (agent/daemon/run.py's ``end_process``), which ends every thread; closing
  the event before that would reopen the window just described. ``close()`` (used when
  the daemon could not start and returns to its caller, and by the tests) wakes the thread
  through the event itself, joins it, and only then closes the handle: closing a handle
  while a wait on it is pending is undefined in Windows.

``EventApi`` is the seam: ``Kernel32Events`` makes the calls for real, the tests record
them with a fake (tests/test_platform_stop_event.py).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from agent.i18n import _
from agent.platform.base import NoStopWatch

log = logging.getLogger("imza_agent")

EVENT_MODIFY_STATE = 0x0002  # SetEvent needs this and nothing more
INFINITE = 0xFFFF_FFFF
WAIT_OBJECT_0 = 0
ERROR_FILE_NOT_FOUND = 2  # OpenEventW: no event of that name (yet)
ERROR_ALREADY_EXISTS = 183
# An agent creates its stop event about a second after it starts (imports, then
# agent/daemon/run.py); `imza-agent stop` looks for it this long before ending it the old
# way, so a stop right after a start is still orderly.
EVENT_WAIT = 3.0
EVENT_RETRY = 0.1
SDDL_REVISION_1 = 1


def event_name(pid: int) -> str:
    return f"Local\\imza-agent-stop-{pid}"


def security_descriptor(sid: str) -> str:
    """SDDL: a protected DACL (nothing inherited) with full access for ``sid`` only."""
    return f"D:P(A;;GA;;;{sid})"


class EventApi(Protocol):
    """kernel32's event calls, one method each (the real one passes them on as they are)."""

    def CreateEventW(self, sddl: str, manual_reset: bool, initial_state: bool,
                     name: str) -> int | None:
        """The event's handle (its security attributes built from ``sddl``); None: failed."""

    def OpenEventW(self, access: int, inherit: bool, name: str) -> int | None:
        """None when no such event exists or access is denied."""

    def SetEvent(self, handle: int) -> bool: ...

    def WaitForSingleObject(self, handle: int, milliseconds: int) -> int: ...

    def CloseHandle(self, handle: int) -> bool: ...

    def GetLastError(self) -> int: ...


class StopEventWatch:
    """The daemon's side: one thread waiting on the event (see the module's doc)."""

    def __init__(self, api: EventApi, handle: int, callback: Callable[[], object],
                 name: str) -> None:
        self.api, self.handle, self.callback, self.name = api, handle, callback, name
        self._lock = threading.Lock()
        self._closing = False
        self.thread = threading.Thread(target=self._wait, name="imza-stop-event", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _wait(self) -> None:
        result = self.api.WaitForSingleObject(self.handle, INFINITE)
        with self._lock:
            if self._closing:
                return  # close() woke us: no request
        if result != WAIT_OBJECT_0:  # WAIT_FAILED: nothing more to wait for
            log.warning("the stop event %s cannot be waited on (error %d); `imza-agent stop` "
                        "will end this agent without its orderly stop", self.name,
                        self.api.GetLastError())
            return
        self.callback()

    def close(self) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
        if self.thread.is_alive():
            self.api.SetEvent(self.handle)
            self.thread.join()
        self.api.CloseHandle(self.handle)


def watch_stop_requests(api: EventApi, sid: str, pid: int, callback: Callable[[], object]
                        ) -> StopEventWatch | NoStopWatch:
    name = event_name(pid)
    # Auto-reset, not set: one SetEvent releases the one waiter and resets itself.
    handle = api.CreateEventW(security_descriptor(sid), False, False, name)
    if not handle:
        log.warning("cannot create the stop event %s (error %d); `imza-agent stop` will end "
                    "this agent without its orderly stop", name, api.GetLastError())
        return NoStopWatch()
    if api.GetLastError() == ERROR_ALREADY_EXISTS:
        # Somebody made it first (its DACL is not ours): a process of this session that
        # left it behind for a pid now reused, or one squatting on it. Not ours to trust.
        api.CloseHandle(handle)
        log.warning("the stop event %s already exists; `imza-agent stop` will not reach "
                    "this agent's orderly stop", name)
        return NoStopWatch()
    watch = StopEventWatch(api, handle, callback, name)
    watch.start()
    return watch


def terminate(pid: int) -> None:
    """The old way, for an agent without a stop event: ``TerminateProcess`` on Windows."""
    os.kill(pid, signal.SIGTERM)


def request_stop(api: EventApi, pid: int, terminate: Callable[[int], None], *,
                 sleep: Callable[[float], None] = time.sleep) -> bool:
    """Set the agent's stop event; True when it was set. An agent that has none yet may
    be starting (its lock and pid come before the event): it is looked for again for
    ``EVENT_WAIT`` seconds. One still without it (an older version, or one whose event
    could not be made) is ended by ``terminate`` as before (``TerminateProcess``: no
    orderly stop), and the log says so."""
    name = event_name(pid)
    handle = api.OpenEventW(EVENT_MODIFY_STATE, False, name)
    for _attempt in range(round(EVENT_WAIT / EVENT_RETRY)):
        if handle or api.GetLastError() != ERROR_FILE_NOT_FOUND:
            break  # found, or there but refused: waiting will not change that
        sleep(EVENT_RETRY)
        handle = api.OpenEventW(EVENT_MODIFY_STATE, False, name)
    if handle:
        try:
            if api.SetEvent(handle):
                return True
            error = api.GetLastError()
        finally:
            api.CloseHandle(handle)
    else:
        error = api.GetLastError()
    log.debug("no stop event %s to set (error %d)", name, error)
    # Printed by `imza-agent stop` (whose log goes to stderr): a person reads it.
    log.warning(_("imza-agent (pid {pid}) has no stop event (an older version?): it is ended "
                  "at once, without its orderly stop").format(pid=pid))
    terminate(pid)
    return False


class Kernel32Events:  # pragma: no cover - needs Windows
    """The real ``EventApi``: ctypes over kernel32 (and advapi32 for the descriptor). The
    last error is kept per thread right after each call that may fail, before another
    call (``LocalFree``) can change it."""

    def __init__(self) -> None:
        from ctypes import wintypes

        self._k: Any = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
        self._a: Any = ctypes.WinDLL("advapi32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
        self._errors = threading.local()
        self._k.CreateEventW.argtypes = [ctypes.c_void_p, wintypes.BOOL, wintypes.BOOL,
                                         wintypes.LPCWSTR]
        self._k.CreateEventW.restype = wintypes.HANDLE
        self._k.OpenEventW.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.LPCWSTR]
        self._k.OpenEventW.restype = wintypes.HANDLE
        self._k.SetEvent.argtypes = [wintypes.HANDLE]
        self._k.SetEvent.restype = wintypes.BOOL
        self._k.WaitForSingleObject.argtypes = [wintypes.HANDLE, wintypes.DWORD]
        self._k.WaitForSingleObject.restype = wintypes.DWORD
        self._k.CloseHandle.argtypes = [wintypes.HANDLE]
        self._k.CloseHandle.restype = wintypes.BOOL

    def _keep_error(self) -> None:
        self._errors.last = ctypes.get_last_error()  # type: ignore[attr-defined,unused-ignore]

    def CreateEventW(self, sddl: str, manual_reset: bool, initial_state: bool,
                     name: str) -> int | None:
        class SecurityAttributes(ctypes.Structure):
            _fields_ = [("nLength", ctypes.c_uint32),
                        ("lpSecurityDescriptor", ctypes.c_void_p),
                        ("bInheritHandle", ctypes.c_int)]

        descriptor = ctypes.c_void_p()
        if not self._a.ConvertStringSecurityDescriptorToSecurityDescriptorW(
                sddl, SDDL_REVISION_1, ctypes.byref(descriptor), None):
            self._keep_error()
            return None
        try:
            attributes = SecurityAttributes(ctypes.sizeof(SecurityAttributes), descriptor, 0)
            handle = self._k.CreateEventW(ctypes.byref(attributes), manual_reset,
                                          initial_state, name)
            self._keep_error()  # ERROR_ALREADY_EXISTS, or why it failed
            return int(handle) if handle else None
        finally:
            self._k.LocalFree(descriptor)

    def OpenEventW(self, access: int, inherit: bool, name: str) -> int | None:
        handle = self._k.OpenEventW(access, inherit, name)
        self._keep_error()
        return int(handle) if handle else None

    def SetEvent(self, handle: int) -> bool:
        done = bool(self._k.SetEvent(handle))
        self._keep_error()
        return done

    def WaitForSingleObject(self, handle: int, milliseconds: int) -> int:
        result = int(self._k.WaitForSingleObject(handle, milliseconds))
        self._keep_error()
        return result

    def CloseHandle(self, handle: int) -> bool:
        return bool(self._k.CloseHandle(handle))

    def GetLastError(self) -> int:
        return int(getattr(self._errors, "last", 0))
