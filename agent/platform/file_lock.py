"""An exclusive lock on an open file that the OS drops when its holder ends, however it
ends: ``flock`` on Linux and macOS, ``msvcrt.locking`` (LockFileEx underneath) on Windows.

The daemon's instance lock and the native host's start lock use it
(agent/daemon/instance.py, agent/daemon/launcher.py), so neither imports ``fcntl``, which
Windows does not have.

Windows locks a byte range, and a locked range cannot be read by another process; the
lock file also carries the holder's facts for others to read. So the lock sits on one
byte far beyond anything written (``LOCK_OFFSET``): Windows allows locking past the end
of a file, and readers of the facts never touch it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from agent.platform import os_name

LOCK_OFFSET = 1 << 30  # far beyond the few hundred bytes of facts
# msvcrt's LK_LOCK gives up after ten one-second tries; waiting is a loop over LK_NBLCK.
WAIT_STEP_SECONDS = 0.05


class Msvcrt(Protocol):
    """What is used of Windows' ``msvcrt`` module (a fake in the tests)."""

    LK_NBLCK: int
    LK_UNLCK: int

    def locking(self, fd: int, mode: int, nbytes: int, /) -> None: ...


def lock(fd: int, *, wait: bool) -> bool:
    """Take the exclusive lock on ``fd``; False when another process holds it and
    ``wait`` is False. Raises ``OSError`` for anything but "held by another"."""
    if os_name() == "windows":  # pragma: no cover - needs Windows; the logic is tested
        import msvcrt

        return windows_lock(msvcrt, fd, wait=wait)  # type: ignore[arg-type,unused-ignore]
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def unlock(fd: int) -> None:
    if os_name() == "windows":  # pragma: no cover - needs Windows; the logic is tested
        import msvcrt

        windows_unlock(msvcrt, fd)  # type: ignore[arg-type,unused-ignore]
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


def is_held(path: Path) -> bool:
    """Whether another process holds the lock on ``path`` now (a look, not a take: on
    Linux and macOS a shared lock, which no other look blocks)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        if os_name() == "windows":  # pragma: no cover - needs Windows; the logic is tested
            import msvcrt

            return windows_is_held(msvcrt, fd)  # type: ignore[arg-type,unused-ignore]
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False
    finally:
        os.close(fd)  # closing drops a shared lock taken here


def windows_is_held(api: Msvcrt, fd: int) -> bool:
    if not windows_lock(api, fd, wait=False):
        return True
    windows_unlock(api, fd)  # Windows may drop a closed handle's lock late: at once here
    return False


def windows_lock(api: Msvcrt, fd: int, *, wait: bool,
                 sleep: Callable[[float], None] = time.sleep) -> bool:
    while True:
        try:
            _at_lock_byte(fd, lambda: api.locking(fd, api.LK_NBLCK, 1))
        except PermissionError:  # ERROR_LOCK_VIOLATION: another process holds it
            if not wait:
                return False
            sleep(WAIT_STEP_SECONDS)
            continue
        return True


def windows_unlock(api: Msvcrt, fd: int) -> None:
    _at_lock_byte(fd, lambda: api.locking(fd, api.LK_UNLCK, 1))


def _at_lock_byte(fd: int, call: Callable[[], None]) -> None:
    """``msvcrt.locking`` works at the file position: go to the lock byte, come back."""
    position = os.lseek(fd, 0, os.SEEK_CUR)
    os.lseek(fd, LOCK_OFFSET, os.SEEK_SET)
    try:
        call()
    finally:
        os.lseek(fd, position, os.SEEK_SET)
