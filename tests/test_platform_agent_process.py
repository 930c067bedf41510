"""Whether a pid runs ``imza-agent run`` (``Platform.agent_process``), the question
``imza-agent stop`` and ``status`` ask of a pid that runtime.json recorded: on Linux real
processes' /proc command lines; on macOS the KERN_PROCARGS2 buffer laid out as the kernel
fills it; on Windows a fake kernel32 that records each call and names each process's
image; and how agent/daemon/instance.py and `imza-agent stop` take a "cannot tell"."""

from __future__ import annotations

import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.commands import status as status_command
from agent.daemon import instance
from agent.daemon.instance import RunningAgent
from agent.platform import current
from agent.platform.agent_process import agent_argv, proc_agent_process
from agent.platform.macos import MacPlatform
from agent.platform.macos.procargs import parse_procargs2
from agent.platform.windows import WindowsPlatform
from agent.platform.windows.identity import Identity
from agent.platform.windows.image_name import PROCESS_QUERY_LIMITED_INFORMATION

# Says so once it runs: right after exec the kernel may not show the new command line yet.
SLEEP = "import time; print('up', flush=True); time.sleep(60)"


# --- the rule on a command line (Linux and macOS) ----------------------------------------------

@pytest.mark.parametrize(("argv", "ours"), [
    (["/usr/bin/python3", "-m", "agent.cli", "run"], True),
    (["/usr/bin/python3", "-m", "agent.cli", "--config", "a.toml", "run", "--headless"], True),
    (["/home/u/.venv/bin/imza-agent", "run"], True),
    (["/Applications/imza-agent.app/Contents/MacOS/imza-agent", "run"], True),
    (["/usr/bin/python3", "-m", "agent.cli", "status"], False),
    (["/home/u/.venv/bin/imza-agent", "stop"], False),
    (["/usr/bin/imza-agent-native-host", "run"], False),
    (["/usr/bin/vim", "run"], False),
    ([], False),
])
def test_the_command_line_rule(argv: list[str], ours: bool) -> None:
    assert agent_argv(argv) is ours


# --- Linux: real processes ---------------------------------------------------------------------

@pytest.fixture
def spawn() -> Iterator[Any]:
    children: list[subprocess.Popen[bytes]] = []

    def start(*argv: str) -> int:
        child = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE)
        children.append(child)
        assert child.stdout is not None and child.stdout.readline() == b"up\n"
        return child.pid

    yield start
    for child in children:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


@pytest.mark.linux
def test_linux_knows_an_agent_by_its_command_line(spawn: Any, tmp_path: Path) -> None:
    script = tmp_path / "bin" / "imza-agent"  # an installed entry point's name
    script.parent.mkdir()
    script.write_text(SLEEP + "\n", encoding="utf-8")
    module = spawn("-c", SLEEP, "agent.cli", "run")
    installed = spawn(str(script), "run", "--headless")
    platform = current()
    assert platform.agent_process(module) is True
    assert platform.agent_process(installed) is True
    assert instance.is_agent_process(module) is True


@pytest.mark.linux
def test_linux_another_program_on_the_pid_is_not_the_agent(spawn: Any) -> None:
    other = spawn("-c", SLEEP)
    status = spawn("-c", SLEEP, "agent.cli", "status")
    assert current().agent_process(other) is False
    assert current().agent_process(status) is False
    assert instance.is_agent_process(other) is False


@pytest.mark.linux
def test_linux_an_ended_process_is_not_the_agent() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass", "agent.cli", "run"])
    child.wait()
    assert current().agent_process(child.pid) is False


def test_proc_missing_means_cannot_tell(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    assert proc_agent_process(123, proc) is None  # no /proc mounted at all
    (proc / "self").mkdir(parents=True)
    assert proc_agent_process(123, proc) is False  # /proc there, the pid not
    (proc / "123").mkdir()
    (proc / "123" / "cmdline").write_bytes(b"/usr/bin/python3\0-m\0agent.cli\0run\0")
    assert proc_agent_process(123, proc) is True
    (proc / "123" / "cmdline").write_bytes(b"")  # a zombie's
    assert proc_agent_process(123, proc) is False


# --- macOS: KERN_PROCARGS2 as the kernel lays it out --------------------------------------------

EXEC = b"/Applications/imza-agent.app/Contents/MacOS/imza-agent"
ENV = [b"PATH=/usr/bin:/bin", b"HOME=/Users/u", b"run", b"agent.cli"]


def procargs2(argv: list[bytes], exec_path: bytes = EXEC, env: list[bytes] = ENV,
              argc: int | None = None, pad: int | None = None) -> bytes:
    """argc, the exec path and its NUL, NULs up to 8-byte alignment (or ``pad`` more),
    the arguments, the environment, and the apple strings' trailing NULs."""
    head = struct.pack("=i", len(argv) if argc is None else argc) + exec_path + b"\0"
    padding = (-len(head)) % 8 if pad is None else pad
    body = b"".join(a + b"\0" for a in argv) + b"".join(e + b"\0" for e in env)
    return head + b"\0" * padding + body + b"executable_path=" + exec_path + b"\0\0\0"


@pytest.mark.parametrize("pad", [0, 1, 7, 8, None])
def test_macos_reads_the_arguments_after_the_exec_path_and_padding(pad: int | None) -> None:
    data = procargs2([EXEC, b"run", b"--headless"], pad=pad)
    assert parse_procargs2(data) == [EXEC.decode(), "run", "--headless"]


def test_macos_stops_at_argc_before_the_environment() -> None:
    # The environment holds "run" and "agent.cli": only argc strings are arguments.
    data = procargs2([b"/usr/bin/python3", b"-m", b"agent.cli", b"status"])
    assert parse_procargs2(data) == ["/usr/bin/python3", "-m", "agent.cli", "status"]
    # The exec path is no argument either: it names imza-agent, the arguments do not.
    assert parse_procargs2(procargs2([b"login", b"run"])) == ["login", "run"]


def test_macos_a_buffer_not_laid_out_so_is_unknown() -> None:
    whole = procargs2([EXEC, b"run"])
    assert parse_procargs2(whole[:whole.index(b"run\0") + 2]) is None  # cut inside "run"
    assert parse_procargs2(b"\x02\x00") is None
    assert parse_procargs2(procargs2([EXEC, b"run"], argc=-1)) is None
    assert parse_procargs2(procargs2([EXEC, b"run"], argc=10**6)) is None
    assert parse_procargs2(struct.pack("=i", 1) + EXEC) is None  # no NUL after the path


class FakeProcArgs:
    def __init__(self, buffers: dict[int, bytes]) -> None:
        self.buffers = buffers
        self.asked: list[int] = []

    def procargs2(self, pid: int) -> bytes | None:
        self.asked.append(pid)
        return self.buffers.get(pid)  # None: sysctl refused (gone, another user's)


def test_macos_platform_answers_from_the_arguments() -> None:
    fake = FakeProcArgs({
        10: procargs2([EXEC, b"run"]),
        11: procargs2([b"/usr/local/bin/python3", b"-m", b"agent.cli", b"run", b"--headless"]),
        12: procargs2([b"/usr/bin/vim", b"notes.txt"]),
        13: b"\x05\x00",
    })
    run: Any = None  # the command runner: not reached
    mac = MacPlatform(run, 501, list, procargs=fake)
    assert [mac.agent_process(pid) for pid in (10, 11, 12, 13, 14)] == [
        True, True, False, None, None]
    assert fake.asked == [10, 11, 12, 13, 14]


# --- Windows: the image's name, through a fake kernel32 ------------------------------------------

SID = "S-1-5-21-1000-2000-3000-1001"


class FakeKernel32:
    """Processes by pid: the image path ``QueryFullProcessImageNameW`` gives, "" where
    that call fails; a pid not there cannot be opened. Every call is recorded."""

    def __init__(self, images: dict[int, str]) -> None:
        self.images = images
        self.calls: list[tuple[Any, ...]] = []
        self.handles: dict[int, int] = {}
        self._next = 100

    def OpenProcess(self, access: int, inherit: bool, pid: int) -> int | None:
        self.calls.append(("OpenProcess", access, inherit, pid))
        if pid not in self.images:
            return None
        self._next += 1
        self.handles[self._next] = pid
        return self._next

    def QueryFullProcessImageNameW(self, handle: int, flags: int) -> str | None:
        self.calls.append(("QueryFullProcessImageNameW", handle, flags))
        return self.images[self.handles[handle]] or None

    def CloseHandle(self, handle: int) -> bool:
        self.calls.append(("CloseHandle", handle))
        del self.handles[handle]
        return True


class FakeIdentities:
    def __init__(self, gone: set[int]) -> None:
        self.gone = gone

    def own(self) -> Identity:
        return Identity(SID, 2)

    def of_process(self, pid: int) -> Identity | None:
        return None if pid in self.gone else Identity(SID, 2)


def windows(kernel: FakeKernel32, gone: set[int] | None = None) -> WindowsPlatform:
    none: Any = None
    return WindowsPlatform(none, none, FakeIdentities(gone if gone is not None else set()),
                           none, {}, list, images=kernel)


IMAGES = {
    20: "C:\\Program Files\\imza-agent\\imza-agentw.exe",
    21: "C:\\Program Files\\imza-agent\\IMZA-AGENT.EXE",
    22: "C:\\Users\\u\\src\\imza\\.venv\\Scripts\\pythonw.exe",
    23: "C:\\Python312\\python.exe",
    24: "C:\\Users\\u\\AppData\\Local\\Microsoft\\WindowsApps\\python3.12.exe",
    25: "C:\\Windows\\System32\\notepad.exe",
    26: "C:\\Program Files\\imza-agent\\imza-agent-native-host.exe",
    27: "C:\\tools\\python-imza-agent.exe",
    28: "",  # opened, but its image not named
}


@pytest.mark.parametrize(("pid", "answer"), [
    (20, True), (21, True), (22, None), (23, None), (24, None), (25, False), (26, False),
    (27, False), (28, None), (29, False),  # 29: cannot be opened (gone, another user's)
])
def test_windows_answers_by_the_image_name(pid: int, answer: bool | None) -> None:
    kernel = FakeKernel32(IMAGES)
    assert windows(kernel).agent_process(pid) is answer
    assert kernel.calls[0] == ("OpenProcess", PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    if pid in IMAGES:
        assert [c[0] for c in kernel.calls] == ["OpenProcess", "QueryFullProcessImageNameW",
                                               "CloseHandle"]
        assert kernel.calls[1][2] == 0  # the Win32 path format
    else:
        assert len(kernel.calls) == 1  # nothing opened, nothing to close
    assert kernel.handles == {}


# --- what instance.py and `imza-agent stop` make of the answer -----------------------------------

@pytest.mark.parametrize(("pid", "gone", "ours"), [
    (20, set(), True),  # our program
    (22, set(), True),  # a Python interpreter: cannot tell, alive is all we know
    (22, {22}, False),  # ... and ended meanwhile
    (25, set(), False),  # another program took the pid
])
def test_instance_takes_cannot_tell_as_alive(monkeypatch: pytest.MonkeyPatch, pid: int,
                                             gone: set[int], ours: bool) -> None:
    platform = windows(FakeKernel32(IMAGES), gone)
    monkeypatch.setattr(instance, "current_platform", lambda: platform)
    assert instance.is_agent_process(pid) is ours


@pytest.mark.parametrize(("pid", "stopped"), [(25, False), (20, True), (23, True)])
def test_stop_on_windows_signals_only_what_may_be_the_agent(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], pid: int,
        stopped: bool) -> None:
    gone: set[int] = set()
    platform = windows(FakeKernel32(IMAGES), gone)
    requests: list[int] = []

    def request_stop(target: int) -> None:
        requests.append(target)
        gone.add(target)  # the agent ends in its orderly way

    monkeypatch.setattr(platform, "request_stop", request_stop)
    monkeypatch.setattr(instance, "current_platform", lambda: platform)
    monkeypatch.setattr(status_command, "current_platform", lambda: platform)
    monkeypatch.setattr(status_command, "find_running", lambda: RunningAgent(pid))
    code = status_command.stop(timeout=1.0)
    out = capsys.readouterr()
    assert requests == ([pid] if stopped else [])
    assert code == (0 if stopped else 1)
    assert str(pid) in (out.out if stopped else out.err)
