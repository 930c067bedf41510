"""The relay between the native messaging host and the daemon on Windows: a named pipe
per user, ``\\\\.\\pipe\\imza-agent-<user SID>``, instead of a Unix socket.

A pipe's default security lets every local account read it, so the daemon creates it with
its own security descriptor: a protected DACL (``P``: nothing inherited) that denies
network logons (``NU``) and grants access to this user's SID alone. It also rejects remote
clients (``PIPE_REJECT_REMOTE_CLIENTS``) and claims the name first
(``FILE_FLAG_FIRST_PIPE_INSTANCE``), so another user's process cannot squat on it. The
daemon then admits each connection as on every transport (agent/transport/admission.py).

``PipeApi`` is the seam (the tests record the name, descriptor and flags); ``Kernel32Pipes``
is the real one.
"""

from __future__ import annotations

import asyncio
import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from agent.platform.base import ClientHandler

PIPE_ACCESS_DUPLEX = 0x00000003
FILE_FLAG_OVERLAPPED = 0x40000000
FILE_FLAG_FIRST_PIPE_INSTANCE = 0x00080000
PIPE_TYPE_BYTE = 0x00000000
PIPE_READMODE_BYTE = 0x00000000
PIPE_WAIT = 0x00000000
PIPE_REJECT_REMOTE_CLIENTS = 0x00000008
PIPE_UNLIMITED_INSTANCES = 255
SDDL_REVISION_1 = 1

OPEN_MODE = PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED
PIPE_MODE = PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS


def pipe_name(sid: str) -> str:
    return f"\\\\.\\pipe\\imza-agent-{sid}"


def security_descriptor(sid: str) -> str:
    """SDDL: protected DACL, deny network logons, full access for ``sid`` only."""
    return f"D:P(D;;GA;;;NU)(A;;GA;;;{sid})"


class PipeApi(Protocol):
    def create(self, name: str, sddl: str, open_mode: int, pipe_mode: int) -> Any:
        """One server instance of the pipe; returns its handle."""


@dataclass
class NamedPipeRelay:
    """The ``RelayEndpoint`` of Windows: the pipe's name depends on the user, not on the
    socket path the Unix transports use."""

    sid: str
    pipes: PipeApi | None = None

    def address(self, socket_path: Path) -> str:
        return pipe_name(self.sid)

    def create_instance(self, first: bool) -> Any:
        """A server instance of the pipe (the daemon's side); the first one claims it."""
        if self.pipes is None:
            self.pipes = Kernel32Pipes()
        mode = OPEN_MODE | (FILE_FLAG_FIRST_PIPE_INSTANCE if first else 0)
        return self.pipes.create(pipe_name(self.sid), security_descriptor(self.sid), mode,
                                 PIPE_MODE)

    async def connect(self, socket_path: Path, limit: int
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        loop: Any = asyncio.get_running_loop()  # the Proactor loop, Windows' default
        reader = asyncio.StreamReader(limit=limit)
        protocol = asyncio.StreamReaderProtocol(reader)
        transport, _ = await loop.create_pipe_connection(lambda: protocol,
                                                         pipe_name(self.sid))
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


    async def listen(self, socket_path: Path, handler: ClientHandler, limit: int
                     ) -> asyncio.Server:
        # The accept loop over ``create_instance`` on the Proactor loop is not written
        # yet: until then the daemon says the extension transport is off and keeps serving
        # pages over WebSocket, rather than failing to start.
        raise OSError(f"the named pipe server ({pipe_name(self.sid)}) is not available yet")


class Kernel32Pipes:
    def __init__(self) -> None:
        self._k: Any = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
        self._a: Any = ctypes.WinDLL("advapi32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
        self._k.CreateNamedPipeW.restype = ctypes.c_void_p

    def create(self, name: str, sddl: str, open_mode: int, pipe_mode: int) -> Any:
        class SecurityAttributes(ctypes.Structure):
            _fields_ = [("nLength", ctypes.c_uint32), ("lpSecurityDescriptor", ctypes.c_void_p),
                        ("bInheritHandle", ctypes.c_int)]

        descriptor = ctypes.c_void_p()
        if not self._a.ConvertStringSecurityDescriptorToSecurityDescriptorW(
                sddl, SDDL_REVISION_1, ctypes.byref(descriptor), None):
            raise OSError(ctypes.get_last_error(), "bad security descriptor")  # type: ignore[attr-defined,unused-ignore]
        try:
            attributes = SecurityAttributes(ctypes.sizeof(SecurityAttributes), descriptor, 0)
            handle = self._k.CreateNamedPipeW(name, open_mode, pipe_mode,
                                              PIPE_UNLIMITED_INSTANCES, 65536, 65536, 0,
                                              ctypes.byref(attributes))
            if handle in (None, ctypes.c_void_p(-1).value):
                raise OSError(ctypes.get_last_error(), f"cannot create {name}")  # type: ignore[attr-defined,unused-ignore]
            return handle
        finally:
            self._k.LocalFree(descriptor)
