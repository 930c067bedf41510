"""The relay endpoint on Linux and macOS: the daemon's Unix socket, whose 0700 directory
and 0600 mode admit only this user (agent/transport/local.py creates it)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.platform.base import ClientHandler


class UnixSocketRelay:
    def address(self, socket_path: Path) -> str:
        return str(socket_path)

    async def connect(self, socket_path: Path, limit: int
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_unix_connection(str(socket_path), limit=limit)

    async def listen(self, socket_path: Path, handler: ClientHandler, limit: int
                     ) -> asyncio.Server:
        old_umask = os.umask(0o177)  # the socket is created 0600, never briefly wider
        try:
            server = await asyncio.start_unix_server(handler, path=str(socket_path),
                                                     limit=limit)
        finally:
            os.umask(old_umask)
        os.chmod(socket_path, 0o600)
        return server

    def answers(self, socket_path: Path, timeout: float) -> bool:
        # A plain connect, no event loop: the native host asks every 10 ms while the
        # daemon starts.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect(str(socket_path))
            except OSError:
                return False
        return True


def process_exists(pid: int) -> bool | None:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, as another user
    return True


def own_process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process took the pid: not ours
        return False
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """An ended child nobody reaped yet still has a pid: it is gone all the same. Linux
    tells through /proc; macOS has none (its zombies pass as alive)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]
