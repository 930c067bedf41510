"""Which macOS user owns the client end of a loopback TCP connection.

macOS has no /proc: the owner is found by walking processes with libproc
(``proc_listpids`` → ``proc_pidinfo(PROC_PIDLISTFDS)`` → ``proc_pidfdinfo(
PROC_PIDFDSOCKETINFO)`` for each socket) to the one whose TCP socket is bound at the
client's address and connected to ours, then its uid (``PROC_PIDTBSDINFO``). Without root
only this user's processes can be inspected, so "not found" is the answer for everybody
else's — and unknown counts as another user.

``ProcSockets`` is the seam; ``agent/platform/macos/libproc.py`` is the real walk (ctypes
over libproc, its structures read at XNU's offsets). Where libproc cannot be loaded
``MacPlatform.peer_check()`` answers None and the agent runs without the check.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agent.platform.peer import Endpoint


@dataclass(frozen=True)
class ProcSocket:
    pid: int
    local: Endpoint
    remote: Endpoint


class ProcSockets(Protocol):
    def tcp_sockets(self) -> Iterable[ProcSocket]:
        """Connected TCP sockets of the processes this user may inspect."""

    def uid_of(self, pid: int) -> int | None: ...


@dataclass
class MacPeerCheck:
    sockets: ProcSockets
    own_uid: int

    def same_user(self, local: Sequence[Any], remote: Sequence[Any]) -> bool:
        try:
            client, server = Endpoint.of(remote), Endpoint.of(local)
        except (ValueError, IndexError, TypeError):
            return False
        pids = {s.pid for s in self.sockets.tcp_sockets()
                if s.local == client and s.remote == server}
        if len(pids) != 1:
            return False
        return self.sockets.uid_of(pids.pop()) == self.own_uid
