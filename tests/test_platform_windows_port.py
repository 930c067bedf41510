"""What the daemon's start and its instance lock need from the platform layer so that
agent/daemon asks no OS itself (a pid file's agent still ours, "does a daemon listen
there", a detached start): real on Linux, and the Windows implementations against fakes
(tests/test_platform_windows.py's identities) or an overridden pipe connect."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.platform import current, file_lock
from agent.platform.spawn import (
    CREATE_NEW_PROCESS_GROUP,
    DETACHED_PROCESS,
    detached_popen_options,
)
from agent.platform.unix_relay import UnixSocketRelay
from agent.platform.windows.identity import Identity
from agent.platform.windows.relay import NamedPipeRelay
from tests.test_platform_windows import SID, FakeIdentities, windows

OTHER_SID = "S-1-5-21-1111111111-2222222222-3333333333-1002"
ROOT = Path(__file__).resolve().parents[1]


# --- is the pid file's agent still ours ---------------------------------------------------

@pytest.mark.linux
def test_linux_own_process_alive_sees_itself_and_not_the_ended() -> None:
    platform = current()
    assert platform.own_process_alive(os.getpid()) is True
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: the pid is free
    assert platform.own_process_alive(child.pid) is False


@pytest.mark.linux
def test_linux_a_zombie_is_not_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # ended, not reaped
    try:
        assert Path(f"/proc/{child.pid}").exists()
        assert current().own_process_alive(child.pid) is False
    finally:
        child.wait()


def test_windows_own_process_alive_is_this_users_process_only(tmp_path: Path) -> None:
    platform = windows(tmp_path)
    platform.identities = FakeIdentities({10: Identity(SID, 2), 11: Identity(SID, 7),
                                          12: Identity(OTHER_SID, 2)}, Identity(SID, 2))
    assert [platform.own_process_alive(pid) for pid in (10, 11, 12, 13)] == [
        True, True, False, False]  # any session of this user; another user; gone


# --- does a daemon listen there -----------------------------------------------------------

@pytest.mark.posix
def test_unix_relay_answers_while_listening_only(tmp_path: Path) -> None:
    relay, path = UnixSocketRelay(), tmp_path / "agent.sock"
    assert relay.answers(path, 1.0) is False  # nothing there

    async def serve() -> tuple[bool, bool]:
        async def quiet(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.close()

        server = await relay.listen(path, quiet, 2**16)
        listening = await asyncio.to_thread(relay.answers, path, 1.0)
        server.close()
        await server.wait_closed()
        return listening, await asyncio.to_thread(relay.answers, path, 1.0)

    assert asyncio.run(serve()) == (True, False)


class ProbedPipe(NamedPipeRelay):
    """The Windows relay with ``connect`` (Proactor-only) replaced by a recorded outcome."""

    outcome: BaseException | None = None
    probes: list[str]
    closed: int = 0

    async def connect(self, socket_path: Path, limit: int
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.probes.append(self.address(socket_path))
        if isinstance(self.outcome, TimeoutError):
            await asyncio.sleep(10)
        if self.outcome is not None:
            raise self.outcome
        relay = self

        class Writer:
            def close(self) -> None:
                relay.closed += 1

        return asyncio.StreamReader(), Writer()  # type: ignore[return-value]


@pytest.mark.parametrize(("outcome", "answers"), [
    (None, True), (FileNotFoundError(2, "no pipe"), False),
    (PermissionError(5, "another user's pipe"), False), (TimeoutError(), False)])
def test_windows_relay_answers_by_connecting_to_this_users_pipe(
        outcome: BaseException | None, answers: bool) -> None:
    relay = ProbedPipe(SID)
    relay.outcome, relay.probes = outcome, []

    async def from_inside_a_loop() -> bool:  # the daemon's own callers are in one
        return relay.answers(Path("ignored.sock"), 0.2)

    assert asyncio.run(from_inside_a_loop()) is answers
    assert relay.probes == [f"\\\\.\\pipe\\imza-agent-{SID}"]
    assert relay.closed == (1 if answers else 0)  # the probe does not stay connected


# --- the instance lock, looked at from outside --------------------------------------------

def test_is_held_sees_another_process_holding_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "agent.lock"
    assert file_lock.is_held(path) is False  # no file
    code = textwrap.dedent(f"""
        import os, sys
        from agent.platform import file_lock
        fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)
        print(file_lock.lock(fd, wait=False), flush=True)
        sys.stdin.readline()
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline().strip() == "True"
    try:
        assert file_lock.is_held(path) is True
        assert file_lock.is_held(path) is True  # looking took nothing
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert file_lock.is_held(path) is False


def test_windows_is_held_gives_back_what_it_took(tmp_path: Path) -> None:
    from tests.test_platform_file_lock import FakeMsvcrt

    fd = os.open(tmp_path / "agent.lock", os.O_RDWR | os.O_CREAT)
    try:
        free, held = FakeMsvcrt(), FakeMsvcrt(held_for=1)
        assert file_lock.windows_is_held(free, fd) is False
        assert [c[1] for c in free.calls] == [free.LK_NBLCK, free.LK_UNLCK]
        assert file_lock.windows_is_held(held, fd) is True
        assert [c[1] for c in held.calls] == [held.LK_NBLCK]  # nothing to give back
    finally:
        os.close(fd)


# --- a start that outlives the starter ----------------------------------------------------

@pytest.mark.parametrize(("system", "options"), [
    ("linux", {"start_new_session": True}), ("darwin", {"start_new_session": True}),
    ("win32", {"creationflags": DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP})])
def test_detached_start_options(system: str, options: dict[str, object]) -> None:
    assert detached_popen_options(system) == options
    assert DETACHED_PROCESS == 0x8 and CREATE_NEW_PROCESS_GROUP == 0x200  # winbase.h


@pytest.mark.posix
def test_a_detached_child_has_a_session_of_its_own() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import os; print(os.getsid(0))"],
                             stdout=subprocess.PIPE, text=True, **detached_popen_options())
    out, _ = child.communicate(timeout=30)
    assert int(out) == child.pid != os.getsid(0)
