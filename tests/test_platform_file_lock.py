"""The platform layer's file lock (agent/platform/file_lock.py): ``flock`` here, between
two real processes; the Windows ``msvcrt.locking`` logic against a fake that records the
file position, mode and length of each call and refuses like Windows when held."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.platform import file_lock
from agent.platform.file_lock import LOCK_OFFSET, windows_lock, windows_unlock


def _holder(path: Path) -> subprocess.Popen[str]:
    """Another process that takes the lock through the same module and waits for stdin."""
    code = textwrap.dedent(f"""
        import os, sys
        from agent.platform import file_lock
        fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)
        print(file_lock.lock(fd, wait=False), flush=True)
        sys.stdin.readline()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "True"
    return proc


def test_a_held_lock_refuses_another_process_until_its_holder_ends(tmp_path: Path) -> None:
    path = tmp_path / "agent.lock"
    holder = _holder(path)
    fd = os.open(path, os.O_RDWR)
    try:
        assert file_lock.lock(fd, wait=False) is False
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=30)
        assert file_lock.lock(fd, wait=True) is True  # the OS dropped the ended holder's
    finally:
        os.close(fd)


def test_unlock_lets_another_process_in(tmp_path: Path) -> None:
    path = tmp_path / "agent.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        assert file_lock.lock(fd, wait=False) is True
        file_lock.unlock(fd)
        other = _holder(path)  # asserts that it got the lock
        assert other.stdin is not None
        other.stdin.close()
        other.wait(timeout=30)
    finally:
        os.close(fd)


class FakeMsvcrt:
    """Windows' byte-range lock as the C runtime reports it: PermissionError (EACCES)
    for a range another process holds."""

    LK_UNLCK = 0
    LK_NBLCK = 2

    def __init__(self, held_for: int = 0) -> None:
        self.calls: list[tuple[int, int, int, int]] = []  # fd, mode, nbytes, position
        self.held_for = held_for  # refuse this many tries first: another holder

    def locking(self, fd: int, mode: int, nbytes: int, /) -> None:
        self.calls.append((fd, mode, nbytes, os.lseek(fd, 0, os.SEEK_CUR)))
        if mode == self.LK_NBLCK and self.held_for > 0:
            self.held_for -= 1
            raise PermissionError(13, "Permission denied")


@pytest.fixture
def fd(tmp_path: Path) -> Iterator[int]:
    descriptor = os.open(tmp_path / "agent.lock", os.O_RDWR | os.O_CREAT)
    os.write(descriptor, b'{"pid": 1}')  # the holder's facts, which readers must reach
    yield descriptor
    os.close(descriptor)


def test_windows_locks_one_byte_beyond_the_facts_and_keeps_the_position(fd: int) -> None:
    api = FakeMsvcrt()
    assert windows_lock(api, fd, wait=False) is True
    windows_unlock(api, fd)
    assert api.calls == [(fd, api.LK_NBLCK, 1, LOCK_OFFSET), (fd, api.LK_UNLCK, 1, LOCK_OFFSET)]
    assert LOCK_OFFSET > 1 << 20  # never inside what the holder writes
    assert os.lseek(fd, 0, os.SEEK_CUR) == len(b'{"pid": 1}')


def test_windows_held_elsewhere_is_false_without_waiting(fd: int) -> None:
    api = FakeMsvcrt(held_for=1)
    assert windows_lock(api, fd, wait=False) is False
    assert [c[1] for c in api.calls] == [api.LK_NBLCK]  # never a blocking LK_LOCK


def test_windows_waits_in_steps_until_the_holder_lets_go(fd: int) -> None:
    api = FakeMsvcrt(held_for=3)
    slept: list[float] = []
    assert windows_lock(api, fd, wait=True, sleep=slept.append) is True
    assert len(api.calls) == 4 and slept == [file_lock.WAIT_STEP_SECONDS] * 3


def test_windows_other_errors_are_not_taken_for_a_holder(fd: int) -> None:
    class Broken(FakeMsvcrt):
        def locking(self, fd: int, mode: int, nbytes: int, /) -> None:
            raise OSError(9, "Bad file descriptor")

    with pytest.raises(OSError, match="Bad file"):
        windows_lock(Broken(), fd, wait=True, sleep=lambda _: None)
