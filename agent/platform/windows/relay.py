"""The relay between the native messaging host and the daemon on Windows: a named pipe
per user, ``\\\\.\\pipe\\imza-agent-<user SID>``, instead of a Unix socket.

A pipe's default security lets every local account read it, so the daemon creates it with
its own security descriptor: a protected DACL (``P``: nothing inherited) that denies
network logons (``NU``) and grants access to this user's SID alone. It also rejects remote
clients (``PIPE_REJECT_REMOTE_CLIENTS``) and claims the name first
(``FILE_FLAG_FIRST_PIPE_INSTANCE``), so another user's process cannot squat on it. The
daemon then checks the client's process (same user SID and logon session) and admits
each connection as on every transport (agent/transport/admission.py); the accept loop is
``agent/platform/windows/pipe_server.py``.

``PipeApi`` is the seam (the tests record the name, descriptor, flags and instance count,
and serve in-memory streams); ``ProactorPipes`` is the real one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from agent.platform.windows.identity import Identities

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
MAX_INSTANCES = PIPE_UNLIMITED_INSTANCES  # one per native host; admission caps the rest
BUFFER_SIZE = 65536
SDDL_REVISION_1 = 1

OPEN_MODE = PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED
PIPE_MODE = PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS


def pipe_name(sid: str) -> str:
    return f"\\\\.\\pipe\\imza-agent-{sid}"


def security_descriptor(sid: str) -> str:
    """SDDL: protected DACL, deny network logons, full access for ``sid`` only."""
    return f"D:P(D;;GA;;;NU)(A;;GA;;;{sid})"


class PipeApi(Protocol):
    def create(self, name: str, sddl: str, open_mode: int, pipe_mode: int,
               max_instances: int) -> Any:
        """One server instance of the pipe; returns its handle."""

    async def accept(self, handle: Any) -> None:
        """Wait until a client has connected to this instance (``ConnectNamedPipe``)."""

    def client_pid(self, handle: Any) -> int | None:
        """``GetNamedPipeClientProcessId``; None when Windows cannot tell."""

    async def open_streams(self, handle: Any, limit: int
                           ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The connected instance as asyncio streams (it then belongs to the writer)."""

    def close(self, handle: Any) -> None:
        """Disconnect and close an instance no stream owns."""


@dataclass
class NamedPipeRelay:
    """The ``RelayEndpoint`` of Windows: the pipe's name depends on the user, not on the
    socket path the Unix transports use."""

    sid: str
    pipes: PipeApi | None = None
    identities: Identities | None = None  # who a client process is; None: serve nobody

    def address(self, socket_path: Path) -> str:
        return pipe_name(self.sid)

    def _api(self) -> PipeApi:
        if self.pipes is None:
            self.pipes = ProactorPipes()
        return self.pipes

    def create_instance(self, first: bool) -> Any:
        """A server instance of the pipe (the daemon's side); the first one claims it."""
        mode = OPEN_MODE | (FILE_FLAG_FIRST_PIPE_INSTANCE if first else 0)
        return self._api().create(pipe_name(self.sid), security_descriptor(self.sid), mode,
                                  PIPE_MODE, MAX_INSTANCES)

    async def connect(self, socket_path: Path, limit: int
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        loop: Any = asyncio.get_running_loop()  # the Proactor loop, Windows' default
        reader = asyncio.StreamReader(limit=limit)
        protocol = asyncio.StreamReaderProtocol(reader)
        transport, _ = await loop.create_pipe_connection(lambda: protocol,
                                                         pipe_name(self.sid))
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)

    def answers(self, socket_path: Path, timeout: float) -> bool:
        """Connect as the native host would, on a loop of its own in a thread of its own
        (the caller may be inside a loop; a pipe client needs the Proactor loop)."""
        async def probe() -> None:
            _, writer = await asyncio.wait_for(self.connect(socket_path, BUFFER_SIZE), timeout)
            writer.close()

        def run() -> bool:
            try:
                asyncio.run(probe())
            except OSError:  # TimeoutError is one
                return False
            return True

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(run).result()

    async def listen(self, socket_path: Path, handler: ClientHandler, limit: int
                     ) -> asyncio.Server:
        from agent.platform.windows.pipe_server import NamedPipeServer

        if self.identities is None:  # cannot check clients: better no extension transport
            raise OSError(f"no identity lookup for the clients of {pipe_name(self.sid)}")
        server = NamedPipeServer(self._api(), self.create_instance, self.identities, handler,
                                 limit, pipe_name(self.sid))
        server.start()  # OSError when the name is taken: the transport is off
        # An AbstractServer with the close/wait_closed the local transport uses.
        return cast("asyncio.Server", server)


class Kernel32Pipes:
    def __init__(self) -> None:
        self._k: Any = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
        self._a: Any = ctypes.WinDLL("advapi32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
        self._k.CreateNamedPipeW.restype = ctypes.c_void_p

    def create(self, name: str, sddl: str, open_mode: int, pipe_mode: int,
               max_instances: int = MAX_INSTANCES) -> Any:
        class SecurityAttributes(ctypes.Structure):
            _fields_ = [("nLength", ctypes.c_uint32), ("lpSecurityDescriptor", ctypes.c_void_p),
                        ("bInheritHandle", ctypes.c_int)]

        descriptor = ctypes.c_void_p()
        if not self._a.ConvertStringSecurityDescriptorToSecurityDescriptorW(
                sddl, SDDL_REVISION_1, ctypes.byref(descriptor), None):
            raise OSError(ctypes.get_last_error(), "bad security descriptor")  # type: ignore[attr-defined,unused-ignore]
        try:
            attributes = SecurityAttributes(ctypes.sizeof(SecurityAttributes), descriptor, 0)
            handle = self._k.CreateNamedPipeW(name, open_mode, pipe_mode, max_instances,
                                              BUFFER_SIZE, BUFFER_SIZE, 0,
                                              ctypes.byref(attributes))
            if handle in (None, ctypes.c_void_p(-1).value):
                raise OSError(ctypes.get_last_error(), f"cannot create {name}")  # type: ignore[attr-defined,unused-ignore]
            return handle
        finally:
            self._k.LocalFree(descriptor)


class ProactorPipes:  # pragma: no cover - needs Windows
    """The real ``PipeApi``: instances from ``Kernel32Pipes``, carried by the Proactor loop
    (the same private steps ``start_serving_pipe`` takes: ``accept_pipe`` and
    ``_make_duplex_pipe_transport``, which stdlib offers no public way to reach)."""

    def __init__(self) -> None:
        self._kernel = Kernel32Pipes()

    def create(self, name: str, sddl: str, open_mode: int, pipe_mode: int,
               max_instances: int) -> Any:
        import importlib

        # asyncio's wrapper of a pipe handle, which its Proactor's accept_pipe expects.
        windows_utils: Any = importlib.import_module("asyncio.windows_utils")
        return windows_utils.PipeHandle(self._kernel.create(name, sddl, open_mode, pipe_mode,
                                                            max_instances))

    async def accept(self, handle: Any) -> None:
        loop: Any = asyncio.get_running_loop()
        await loop._proactor.accept_pipe(handle)

    def client_pid(self, handle: Any) -> int | None:
        pid = ctypes.c_uint32()
        if not self._kernel._k.GetNamedPipeClientProcessId(ctypes.c_void_p(handle.fileno()),
                                                           ctypes.byref(pid)):
            return None
        return int(pid.value)

    async def open_streams(self, handle: Any, limit: int
                           ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        loop: Any = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=limit)
        protocol = asyncio.StreamReaderProtocol(reader)
        transport = loop._make_duplex_pipe_transport(handle, protocol,
                                                     extra={"addr": "imza-agent pipe"})
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)

    def close(self, handle: Any) -> None:
        self._kernel._k.DisconnectNamedPipe(ctypes.c_void_p(handle.fileno()))
        handle.close()
