"""The daemon's side of the Windows named pipe: an accept loop over pipe instances.

asyncio's own pipe server (``ProactorEventLoop.start_serving_pipe``) cannot be used: its
``PipeServer`` creates every instance with ``CreateNamedPipe(..., NULL)`` security
attributes (CPython, Lib/asyncio/windows_events.py, ``PipeServer._server_pipe_handle``), so
any local account could open the pipe. Here each instance is created through ``PipeApi``
with this user's security descriptor, and the Proactor loop only waits for clients
(``ConnectNamedPipe``, overlapped) and carries the bytes.

One instance always waits for the next client: as soon as one connects, the next is
created, so a second native host never finds the pipe busy. The first instance claims the
name (``FILE_FLAG_FIRST_PIPE_INSTANCE``): if somebody else created it first, ``start``
fails and the daemon runs without the extension transport rather than serve through a pipe
it does not own.

Before the handler (the local transport's handshake and admission) sees a connection, the
client's process (``GetNamedPipeClientProcessId``) must run as this user in this logon
session, through the same ``Identities`` seam as the TCP peer check: the DACL already keeps
other users out, and this also keeps out this user's other Remote Desktop session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from agent.platform.windows.identity import Identities
from agent.transport.admission import OTHER_USER

log = logging.getLogger("imza_agent.transport")

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
# When creating the next waiting instance fails (e.g. out of handles), try again after this.
RETRY_CREATE = 1.0


class PipeServerApi(Protocol):
    """What the accept loop needs of the OS; ``relay.PipeApi`` is the full seam."""

    async def accept(self, handle: Any) -> None:
        """Wait until a client has connected to this instance."""

    def client_pid(self, handle: Any) -> int | None:
        """The client's process id, None when Windows cannot tell."""

    async def open_streams(self, handle: Any, limit: int
                           ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The connected instance as asyncio streams (it then belongs to the writer)."""

    def close(self, handle: Any) -> None:
        """Disconnect and close an instance no stream owns."""


class NamedPipeServer(asyncio.AbstractServer):
    """Serves ``handler`` on pipe instances made by ``create(first)``; ``close`` stops."""

    def __init__(self, api: PipeServerApi, create: Callable[[bool], Any],
                 identities: Identities, handler: Handler, limit: int, name: str) -> None:
        self.api = api
        self._create = create
        self.identities = identities
        self.handler = handler
        self.limit = limit
        self.name = name
        self._own = identities.own()
        self._waiting: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()

    def start(self) -> None:
        """Claim the name (raises ``OSError`` when it cannot) and start accepting."""
        self._waiting = self._create(True)
        self._loop = asyncio.get_running_loop()
        self._accepting = self._loop.create_task(self._accept_loop())

    async def _accept_loop(self) -> None:
        while True:
            handle = self._waiting
            try:
                await self.api.accept(handle)
            except OSError as exc:  # the client went away between connect and accept
                log.info("extension pipe: accept failed: %s", exc)
                self.api.close(handle)
                self._waiting = await self._next_instance()
                continue
            self._waiting = await self._next_instance()
            task = asyncio.get_running_loop().create_task(self._serve(handle))
            self._clients.add(task)
            task.add_done_callback(self._clients.discard)

    async def _next_instance(self) -> Any:
        while True:
            try:
                return self._create(False)
            except OSError as exc:
                log.warning("extension pipe: cannot create the next instance: %s", exc)
                await asyncio.sleep(RETRY_CREATE)

    def same_user(self, pid: int | None) -> bool:
        owner = None if pid is None else self.identities.of_process(pid)
        return owner is not None and owner == self._own  # SID and session

    async def _serve(self, handle: Any) -> None:
        if not self.same_user(self.api.client_pid(handle)):
            # As the TCP transports' peer check: nothing but the refusal reaches the client.
            log.warning("refused extension connection: origin=(none) reason=%s", OTHER_USER)
            self.api.close(handle)
            return
        reader, writer = await self.api.open_streams(handle, self.limit)
        try:
            await self.handler(reader, writer)
        finally:
            writer.close()

    # --- asyncio.AbstractServer ----------------------------------------------------------

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        if self._accepting is not None:
            self._accepting.cancel()
        if self._waiting is not None:
            self.api.close(self._waiting)
            self._waiting = None

    async def wait_closed(self) -> None:
        await self._closed.wait()
        if self._accepting is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting

    def get_loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "start() first"
        return self._loop

    def is_serving(self) -> bool:
        return self._accepting is not None and not self._closed.is_set()

    async def start_serving(self) -> None:
        return None  # serving from start()

    async def serve_forever(self) -> None:
        await self.wait_closed()

    @property
    def clients(self) -> int:
        """Connections being served now (for the tests)."""
        return len(self._clients)
