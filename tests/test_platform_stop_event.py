"""Another process asks the agent to stop (``Platform.request_stop`` /
``watch_stop_requests``): on Windows a named event (agent/platform/windows/stop_event.py),
here against a fake kernel32 that records each call and models an auto-reset event; on
Linux SIGTERM, for real, and `imza-agent stop` ending a real agent through its orderly
stop."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from daemon import NO_KEYRING, REPO, Daemon

from agent.platform import current
from agent.platform.base import NoStopWatch
from agent.platform.windows import WindowsPlatform
from agent.platform.windows.identity import Identity
from agent.platform.windows.stop_event import (
    ERROR_ALREADY_EXISTS,
    ERROR_FILE_NOT_FOUND,
    EVENT_MODIFY_STATE,
    EVENT_RETRY,
    EVENT_WAIT,
    INFINITE,
    StopEventWatch,
    request_stop,
    watch_stop_requests,
)

SID = "S-1-5-21-1000-2000-3000-1001"
PID = 4242
NAME = "Local\\imza-agent-stop-4242"
SDDL = f"D:P(A;;GA;;;{SID})"  # a protected DACL: this user's SID alone
WAIT_FAILED = 0xFFFF_FFFF
HANG = 30.0  # guards against a hang only; nothing here is timed


class FakeKernel32:
    """Named auto-reset events as kernel32 keeps them, shared by the "processes" of a
    test; every call is recorded with its arguments (handles are small integers)."""

    def __init__(self, *, create_fails: bool = False, set_fails: bool = False,
                 wait_result: int | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.create_fails, self.set_fails, self.wait_result = create_fails, set_fails, wait_result
        self.events: dict[str, threading.Event] = {}
        self.sddl: dict[str, str] = {}
        self.handles: dict[int, str] = {}
        self.waiting = threading.Event()  # a thread is inside WaitForSingleObject
        self.last_error = 0
        self._next = 100
        self._lock = threading.Lock()

    def _record(self, *call: Any) -> None:
        with self._lock:
            self.calls.append(call)

    def _open(self, name: str) -> int:
        self._next += 1
        self.handles[self._next] = name
        return self._next

    def CreateEventW(self, sddl: str, manual_reset: bool, initial_state: bool,
                     name: str) -> int | None:
        self._record("CreateEventW", sddl, manual_reset, initial_state, name)
        if self.create_fails:
            self.last_error = 5  # ERROR_ACCESS_DENIED
            return None
        self.last_error = ERROR_ALREADY_EXISTS if name in self.events else 0
        if name not in self.events:
            self.events[name] = threading.Event()
            if initial_state:
                self.events[name].set()
            self.sddl[name] = sddl
        return self._open(name)

    def OpenEventW(self, access: int, inherit: bool, name: str) -> int | None:
        self._record("OpenEventW", access, inherit, name)
        if name not in self.events:
            self.last_error = ERROR_FILE_NOT_FOUND
            return None
        return self._open(name)

    def SetEvent(self, handle: int) -> bool:
        self._record("SetEvent", handle)
        if self.set_fails:
            self.last_error = 6  # ERROR_INVALID_HANDLE
            return False
        self.events[self.handles[handle]].set()
        return True

    def WaitForSingleObject(self, handle: int, milliseconds: int) -> int:
        self._record("WaitForSingleObject", handle, milliseconds)
        if self.wait_result is not None:
            return self.wait_result
        event = self.events[self.handles[handle]]
        self.waiting.set()
        assert event.wait(HANG), "nobody set the event"
        event.clear()  # auto-reset: the one waiter released takes the signal
        self._record("WaitForSingleObject returned", handle)
        return 0

    def CloseHandle(self, handle: int) -> bool:
        self._record("CloseHandle", handle)
        name = self.handles.pop(handle)
        if name not in self.handles.values():  # the last handle gone: the event too
            del self.events[name]
        return True

    def GetLastError(self) -> int:
        return self.last_error

    def names(self) -> list[str]:
        return [call[0] for call in self.calls]


class FakeIdentities:
    def own(self) -> Identity:
        return Identity(SID, 2)

    def of_process(self, pid: int) -> Identity | None:
        return Identity(SID, 2)


def windows_platform(kernel: FakeKernel32, terminated: list[int] | None = None,
                     sleep: Any = None) -> WindowsPlatform:
    """A WindowsPlatform whose only live seam is the fake kernel32 (the others are not
    reached by the stop); ``sleep`` records the stop's waits instead of sleeping."""
    none: Any = None
    return WindowsPlatform(none, none, FakeIdentities(), none, {}, list, events=kernel,
                           pid=lambda: PID, terminate=(terminated if terminated is not None
                                                       else []).append,
                           sleep=sleep if sleep is not None else [].append)


def test_the_daemon_creates_its_event_and_one_thread_waits_on_it() -> None:
    kernel = FakeKernel32()
    runs: list[int] = []
    watch = windows_platform(kernel).watch_stop_requests(lambda: runs.append(1))
    assert isinstance(watch, StopEventWatch)
    assert kernel.waiting.wait(HANG)
    # Auto-reset (manual_reset False), not signalled, this session's namespace, own DACL.
    assert kernel.calls[0] == ("CreateEventW", SDDL, False, False, NAME)
    handle = watch.handle
    assert kernel.calls[1] == ("WaitForSingleObject", handle, INFINITE)  # no polling
    assert kernel.handles[handle] == NAME
    assert watch.thread.daemon and watch.thread.is_alive()
    assert runs == []  # nothing asked yet
    watch.close()
    assert runs == []


def test_request_stop_sets_the_event_and_the_callback_runs_once() -> None:
    kernel = FakeKernel32()
    terminated: list[int] = []
    daemon, client = windows_platform(kernel), windows_platform(kernel, terminated)
    runs: list[int] = []
    ran = threading.Event()

    def callback() -> None:
        runs.append(1)
        ran.set()

    watch = daemon.watch_stop_requests(callback)
    assert isinstance(watch, StopEventWatch)
    assert kernel.waiting.wait(HANG)
    own = watch.handle
    kernel.calls.clear()

    client.request_stop(PID)
    assert ran.wait(HANG)
    watch.thread.join(HANG)
    assert not watch.thread.is_alive()  # one request, one callback, then the thread ends
    assert runs == [1]
    opened = kernel.calls[0]
    assert opened == ("OpenEventW", EVENT_MODIFY_STATE, False, NAME)
    assert EVENT_MODIFY_STATE == 0x0002  # SetEvent's right alone, not EVENT_ALL_ACCESS
    client_handle = kernel.calls[1][1]
    assert client_handle != own
    assert list(kernel.handles) == [own]  # the client closed its handle
    assert ("SetEvent", client_handle) in kernel.calls
    assert ("CloseHandle", client_handle) in kernel.calls
    assert kernel.calls.index(("SetEvent", client_handle)) < kernel.calls.index(
        ("CloseHandle", client_handle))
    assert terminated == []

    # A second `imza-agent stop` during the stop still finds the event (the daemon keeps
    # its handle until the process ends): no TerminateProcess, no second callback.
    client.request_stop(PID)
    assert terminated == [] and runs == [1]
    assert own in kernel.handles

    watch.close()  # the thread is gone: close() only closes the daemon's handle
    assert kernel.calls[-1] == ("CloseHandle", own)
    assert NAME not in kernel.events
    assert runs == [1]


def test_close_wakes_the_thread_and_closes_the_handle_after_the_wait() -> None:
    kernel = FakeKernel32()
    runs: list[int] = []
    watch = watch_stop_requests(kernel, SID, PID, lambda: runs.append(1))
    assert isinstance(watch, StopEventWatch)
    assert kernel.waiting.wait(HANG)
    handle = watch.handle
    watch.close()
    assert not watch.thread.is_alive()
    assert runs == []  # closing is not a request
    names = kernel.names()
    # Woken through the event itself; the handle closed only once no wait is pending on
    # it (closing it under a pending wait is undefined in Windows).
    assert names[-3:] == ["SetEvent", "WaitForSingleObject returned", "CloseHandle"]
    assert kernel.calls[-1] == ("CloseHandle", handle)
    watch.close()  # twice is harmless
    assert kernel.names().count("CloseHandle") == 1


def test_an_old_agent_without_the_event_is_ended_as_before(
        caplog: pytest.LogCaptureFixture) -> None:
    kernel = FakeKernel32()
    terminated: list[int] = []
    slept: list[float] = []
    with caplog.at_level(logging.DEBUG, logger="imza_agent"):
        windows_platform(kernel, terminated, slept.append).request_stop(PID)
    # Looked for while an agent that has just started would have made it, then given up.
    tries = round(EVENT_WAIT / EVENT_RETRY)
    assert kernel.calls == [("OpenEventW", EVENT_MODIFY_STATE, False, NAME)] * (tries + 1)
    assert slept == [EVENT_RETRY] * tries and sum(slept) == pytest.approx(EVENT_WAIT)
    assert terminated == [PID]  # os.kill: TerminateProcess, the old behaviour
    assert f"no stop event {NAME} to set (error {ERROR_FILE_NOT_FOUND})" in caplog.text
    assert caplog.messages[-1] == (f"imza-agent (pid {PID}) has no stop event (an older "
                                   "version?): it is ended at once, without its orderly stop")


def test_a_stop_right_after_the_start_waits_for_the_event() -> None:
    """The agent's pid is known (its lock) before it has made its event: the stop looks
    again until the event is there, and the stop is orderly, not TerminateProcess."""
    kernel = FakeKernel32()
    terminated: list[int] = []
    runs: list[int] = []
    ran = threading.Event()
    watches: list[Any] = []

    def sleep(seconds: float) -> None:  # the daemon reaches watch_stop_requests meanwhile
        if kernel.names().count("OpenEventW") == 3:  # three looks missed it; the 4th
            watches.append(windows_platform(kernel).watch_stop_requests(
                lambda: (runs.append(1), ran.set())))
            assert kernel.waiting.wait(HANG)

    windows_platform(kernel, terminated, sleep).request_stop(PID)
    assert ran.wait(HANG) and runs == [1] and terminated == []
    opens = [c for c in kernel.calls if c[0] == "OpenEventW"]
    assert len(opens) == 4
    watches[0].close()


@pytest.mark.posix  # a process a signal ended: returncode -15 on POSIX only
def test_the_old_way_is_os_kill() -> None:
    """What ``terminate`` defaults to: ``os.kill(pid, SIGTERM)``, TerminateProcess on
    Windows; here a real process it ends."""
    kernel = FakeKernel32()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        none: Any = None
        WindowsPlatform(none, none, FakeIdentities(), none, {}, list,
                        events=kernel).request_stop(child.pid)
        assert child.wait(HANG) == -15
    finally:
        child.kill()
        child.wait()


def test_a_set_that_fails_closes_the_handle_and_falls_back(
        caplog: pytest.LogCaptureFixture) -> None:
    kernel = FakeKernel32()
    kernel.events[NAME] = threading.Event()  # an agent's event exists
    kernel.set_fails = True
    terminated: list[int] = []
    with caplog.at_level(logging.DEBUG, logger="imza_agent"):
        assert request_stop(kernel, PID, terminated.append) is False
    handle = kernel.calls[1][1]
    assert kernel.calls == [("OpenEventW", EVENT_MODIFY_STATE, False, NAME),
                            ("SetEvent", handle), ("CloseHandle", handle)]
    assert terminated == [PID]
    assert "error 6" in caplog.text


def test_no_event_no_watch(caplog: pytest.LogCaptureFixture) -> None:
    kernel = FakeKernel32(create_fails=True)
    runs: list[int] = []
    with caplog.at_level(logging.WARNING, logger="imza_agent"):
        watch = watch_stop_requests(kernel, SID, PID, lambda: runs.append(1))
    assert isinstance(watch, NoStopWatch)
    assert kernel.names() == ["CreateEventW"]
    assert f"cannot create the stop event {NAME} (error 5)" in caplog.text
    watch.close()
    assert runs == []


def test_an_event_somebody_else_made_is_not_trusted(caplog: pytest.LogCaptureFixture
                                                    ) -> None:
    kernel = FakeKernel32()
    squatter = kernel.CreateEventW("D:(A;;GA;;;WD)", True, False, NAME)  # Everyone
    kernel.calls.clear()
    with caplog.at_level(logging.WARNING, logger="imza_agent"):
        watch = watch_stop_requests(kernel, SID, PID, lambda: None)
    assert isinstance(watch, NoStopWatch)
    ours = kernel.calls[1][1]
    assert ours != squatter
    assert kernel.calls == [("CreateEventW", SDDL, False, False, NAME), ("CloseHandle", ours)]
    assert "already exists" in caplog.text


def test_a_failed_wait_ends_the_thread_without_a_stop(caplog: pytest.LogCaptureFixture
                                                      ) -> None:
    kernel = FakeKernel32(wait_result=WAIT_FAILED)
    runs: list[int] = []
    with caplog.at_level(logging.WARNING, logger="imza_agent"):
        watch = watch_stop_requests(kernel, SID, PID, lambda: runs.append(1))
        assert isinstance(watch, StopEventWatch)
        watch.thread.join(HANG)
    assert not watch.thread.is_alive()
    assert kernel.names() == ["CreateEventW", "WaitForSingleObject"]  # no retry loop
    assert runs == []
    assert "cannot be waited on" in caplog.text


# --- the daemon's wiring (agent/daemon/run.py), Windows' path on the fake ---------------------

DAEMON_WITH_FAKE_KERNEL = """
    import asyncio, logging, os, sys, threading, types
    sys.path.insert(0, {tests!r})
    from test_platform_stop_event import PID, FakeKernel32, windows_platform
    import agent.daemon.run as run

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    kernel = FakeKernel32()
    daemon = windows_platform(kernel)
    client = windows_platform(kernel, terminated := [])
    run.current_platform = lambda: daemon

    class Runtime:
        def __init__(self, *args, **kwargs):
            self.transport = types.SimpleNamespace(ports={{}})
            self.local = types.SimpleNamespace(address=None)

        async def start(self):
            # `imza-agent stop` from elsewhere, once the daemon's thread waits.
            def stop():
                kernel.waiting.wait(30)
                client.request_stop(PID)
            threading.Thread(target=stop).start()

        async def stop(self, timeout=1.0):
            print("runtime.stop ran in", threading.current_thread().name)

    def end_process(code):
        print("created", [c for c in kernel.calls if c[0] == "CreateEventW"])
        print("terminated", terminated)
        print("end_process", code, flush=True)
        os._exit(code)

    run.AgentRuntime = Runtime
    run.end_workers = lambda: []
    run.end_process = end_process
    asyncio.run(run._serve(None, headless=True, early=None))
"""


def test_the_daemon_takes_the_sigterm_path_when_its_event_is_set() -> None:
    code = textwrap.dedent(DAEMON_WITH_FAKE_KERNEL.format(tests=str(Path(__file__).parent)))
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "stopping (SIGTERM)" in lines  # the log line SIGTERM's handler leads to
    assert "runtime.stop ran in MainThread" in lines
    assert f"created [('CreateEventW', '{SDDL}', False, False, 'Local\\\\imza-agent-stop-4242')]" \
        in lines
    assert "terminated []" in lines
    assert lines[-1] == "end_process 0"


# --- Linux and macOS: SIGTERM, for real -------------------------------------------------------

@pytest.mark.posix  # the platform here is Linux's or macOS's
def test_posix_request_stop_is_sigterm_and_reaches_the_handler() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import signal, sys, time
            signal.signal(signal.SIGTERM, lambda n, f: (print("handler", n), sys.exit(0)))
            print("ready", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        current().request_stop(child.pid)
        assert child.wait(HANG) == 0
        assert child.stdout.read().strip() == "handler 15"
    finally:
        child.kill()
        child.wait()


@pytest.mark.posix  # the platform here is Linux's or macOS's
def test_posix_watch_is_nothing_to_do() -> None:
    runs: list[int] = []
    before = threading.active_count()
    watch = current().watch_stop_requests(lambda: runs.append(1))
    assert isinstance(watch, NoStopWatch)
    assert threading.active_count() == before  # no thread: SIGTERM's handler is the watch
    watch.close()
    assert runs == []


@pytest.mark.daemon
def test_imza_agent_stop_ends_a_real_agent_through_its_orderly_stop() -> None:
    with tempfile.TemporaryDirectory(prefix="imza-winstop-") as tmp:
        agent = Daemon(home=Path(tmp) / "home", modules=[], env={},
                       config={"ui": {"language": "en"}}).start()
        try:
            assert agent.process is not None
            pid = agent.process.pid
            assert (agent.home / "runtime.json").exists()
            env = {**os.environ, "IMZA_AGENT_HOME": str(agent.home),
                   "PYTHON_KEYRING_BACKEND": NO_KEYRING, "LANG": "C.UTF-8", "LANGUAGE": "",
                   "LC_ALL": "", "XDG_CONFIG_HOME": str(Path(tmp) / "xdg")}
            stop = subprocess.run([sys.executable, "-m", "agent.cli", "stop"], cwd=REPO,
                                  env=env, capture_output=True, text=True, timeout=60,
                                  check=False)
            assert stop.returncode == 0, stop.stderr
            assert stop.stdout.strip() == f"imza-agent stopped (pid {pid})"
            assert agent.process.wait(HANG) == 0  # not EXIT_FORCED_STOP (3), not a kill
            log = agent.log_text()
            assert "stopping (SIGTERM)" in log
            assert "the stop failed" not in log
            assert not (agent.home / "runtime.json").exists()  # the orderly stop removed it
            assert json.loads(subprocess.run(
                [sys.executable, "-m", "agent.cli", "status", "--json"], cwd=REPO, env=env,
                capture_output=True, text=True, timeout=60, check=False).stdout) == {
                    "running": False}
        finally:
            agent.stop()


def test_the_fallback_warning_reaches_the_stop_commands_stderr() -> None:
    """`imza-agent stop` configures no logging: the warning still reaches the person
    (logging's last-resort handler)."""
    code = textwrap.dedent("""
        import sys
        sys.path.insert(0, {tests!r})
        from test_platform_stop_event import PID, FakeKernel32, windows_platform
        windows_platform(FakeKernel32(), []).request_stop(PID)
    """).format(tests=str(Path(__file__).parent))
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False,
                          env={**os.environ, "LANG": "C.UTF-8", "LANGUAGE": "", "LC_ALL": ""})
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == (f"imza-agent (pid {PID}) has no stop event (an older "
                                   "version?): it is ended at once, without its orderly stop")


def test_the_hint_for_a_hung_stop_is_each_os_own_command() -> None:
    """What ``imza-agent stop`` suggests when the orderly stop hangs: a command that
    exists on that OS (``kill -9`` is no Windows command)."""
    from agent.platform.linux import LinuxPlatform

    assert windows_platform(FakeKernel32()).force_stop_command(4242) == "taskkill /F /PID 4242"
    assert LinuxPlatform().force_stop_command(4242) == "kill -9 4242"
