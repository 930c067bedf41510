"""The WebSocket transport: a thin adapter between `websockets` and the dispatcher.

Everything that can be decided from the HTTP upgrade request is decided there, before a
single message is read, by the admission every transport shares
(``agent/transport/admission.py``): the Host header (DNS rebinding), the path, the Origin
and the per-origin connection limit. A refusal is an HTTP 403 and one log line — never a
stack trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from agent.config import ServerConfig
from agent.limits import RateLimiter
from agent.policy.policy import Policy
from agent.protocol.dispatch import CallContext, Dispatcher, Transport
from agent.transport.admission import Admission, Admitted, Attempt, HttpRequest
from agent.transport.session import FrameSession

log = logging.getLogger("imza_agent.transport")

PATH = "/v1"
LOOPBACK_HOSTS = ("127.0.0.1", "::1")


class WebSocketTransport:
    """Serves one dispatcher on the configured loopback ports (wss and/or ws)."""

    def __init__(self, dispatcher: Dispatcher, policy: Policy,
                 settings: ServerConfig, admission: Admission, rate: RateLimiter, *,
                 clock: Callable[[], float] | None = None) -> None:
        self.dispatcher = dispatcher
        self.policy = policy  # for plain_websocket_allowed; admission has its own view
        self.settings = settings
        self.admission = admission
        self.rate = rate
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self._servers: list[Server] = []
        self.ports: dict[str, int] = {}
        # Upgrades admitted but not yet handed to the handler, and the tasks that free
        # their slots when their connection ends.
        self._admitted: dict[ServerConnection, Admitted] = {}
        self._releasers: set[asyncio.Task[None]] = set()

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self, ssl_context: ssl.SSLContext | None) -> None:
        s = self.settings
        if s.wss_enabled and ssl_context is not None:
            self.ports["wss"] = await self._listen("wss", s.wss_port, ssl_context)
        if s.ws_enabled and self.policy.plain_websocket_allowed:
            self.ports["ws"] = await self._listen("ws", s.ws_port, None)

    async def _listen(self, transport: Transport, port: int,
                      ssl_context: ssl.SSLContext | None) -> int:
        def process_request(conn: ServerConnection, request: Request) -> Response | None:
            return self._check_handshake(conn, request, transport)

        async def handler(conn: ServerConnection) -> None:
            await self._serve_connection(conn)

        kwargs: dict[str, Any] = dict(
            process_request=process_request, max_size=self.settings.max_frame_bytes,
            compression=None, ssl=ssl_context, server_header=None, max_queue=16)
        server = await serve(handler, LOOPBACK_HOSTS[0], port, **kwargs)
        self._servers.append(server)
        bound = int(server.sockets[0].getsockname()[1])
        try:  # the same port on IPv6 loopback (port 0 picked it on IPv4 first)
            self._servers.append(await serve(handler, LOOPBACK_HOSTS[1], bound, **kwargs))
        except OSError:
            log.info("IPv6 loopback unavailable; serving %s on 127.0.0.1 only", transport)
        log.info("listening on %s://127.0.0.1:%d%s", transport, bound, PATH)
        return bound

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        for task in list(self._releasers):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- handshake -----------------------------------------------------------------------

    def _check_handshake(self, conn: ServerConnection, request: Request,
                         transport: Transport) -> Response | None:
        headers: Headers = request.headers
        attempt = Attempt(transport, _single(headers, "Origin"), HttpRequest(
            _single(headers, "Host"), frozenset(self._own_ports(transport)), request.path,
            PATH))
        verdict = self.admission.admit(attempt)
        if not isinstance(verdict, Admitted):
            return conn.respond(HTTPStatus.FORBIDDEN, f"refused: {verdict.reason}\n")
        # The slot is taken now, so concurrent upgrades cannot overshoot the limit. The
        # handler frees it; if the upgrade fails and no handler runs, the end of the
        # connection does.
        self._admitted[conn] = verdict
        task = asyncio.get_running_loop().create_task(
            self._release_when_closed(conn, verdict))
        self._releasers.add(task)
        task.add_done_callback(self._releasers.discard)
        return None

    async def _release_when_closed(self, conn: ServerConnection, admitted: Admitted) -> None:
        try:
            await conn.wait_closed()
        finally:
            self._admitted.pop(conn, None)
            admitted.release()

    def _own_ports(self, transport: Transport) -> list[int]:
        port = self.ports.get(transport)
        if port is not None:
            return [port]
        # Before start() returned (port 0 in tests): the configured one.
        s = self.settings
        return [s.wss_port if transport == "wss" else s.ws_port]

    # --- messages ------------------------------------------------------------------------

    async def _serve_connection(self, conn: ServerConnection) -> None:
        admitted = self._admitted.pop(conn, None)
        if admitted is None:  # not through _check_handshake: cannot happen, never serve
            await conn.close(1008, "not admitted")
            return
        send_lock = asyncio.Lock()

        async def send(text: str) -> None:
            async with send_lock:
                await conn.send(text)

        ctx = CallContext(origin=admitted.origin, transport=admitted.transport,
                          connection_id=secrets.token_hex(6), send=send)
        session = FrameSession(self.dispatcher, ctx, send, self.rate, self._clock,
                               (ConnectionClosed,), self.settings.max_requests_in_flight)
        try:
            async for message in conn:
                if isinstance(message, bytes):
                    await conn.close(1003, "binary frames are not accepted")
                    break
                await session.submit(message)
        except ConnectionClosed:
            pass
        finally:
            admitted.release()
            await session.close()


def _single(headers: Headers, name: str) -> str | None:
    """The header's value, or None when absent or repeated (a repeated Origin is refused)."""
    values = headers.get_all(name)
    return values[0] if len(values) == 1 else None
