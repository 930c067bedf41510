"""The WebSocket transport: a thin adapter between `websockets` and the dispatcher.

Everything that can be decided from the HTTP upgrade request is decided there, before a
single message is read: the Host header (DNS rebinding), the Origin (well-formed https or
a configured development origin, not blocked, allow-listed when the policy is locked),
the path, and the per-origin connection limit.  A refusal is an HTTP 403 and one log
line — never a stack trace.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from agent.config import ServerConfig
from agent.limits import ConnectionCounter, RateLimiter
from agent.policy.origin import check_host_header
from agent.policy.policy import Policy
from agent.protocol.dispatch import CallContext, Dispatcher, Transport
from agent.transport.session import FrameSession, printable

log = logging.getLogger("imza_agent.transport")

PATH = "/v1"
LOOPBACK_HOSTS = ("127.0.0.1", "::1")


@dataclass
class _Admitted:
    origin: str
    transport: Transport


class WebSocketTransport:
    """Serves one dispatcher on the configured loopback ports (wss and/or ws)."""

    def __init__(self, dispatcher: Dispatcher, services: Any, policy: Policy,
                 settings: ServerConfig, *, clock: Callable[[], float] | None = None) -> None:
        self.dispatcher = dispatcher
        self.services = services
        self.policy = policy
        self.settings = settings
        self.connections = ConnectionCounter(settings.max_connections_per_origin)
        self.rate = RateLimiter(settings.rate_per_second, settings.rate_burst)
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self._servers: list[Server] = []
        self.ports: dict[str, int] = {}

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
        bound = server.sockets[0].getsockname()[1]
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

    # --- handshake -----------------------------------------------------------------------

    def _refuse(self, conn: ServerConnection, origin: str | None, reason: str) -> Response:
        log.warning("refused connection: origin=%r reason=%s", printable(origin), reason)
        return conn.respond(HTTPStatus.FORBIDDEN, f"refused: {reason}\n")

    def _check_handshake(self, conn: ServerConnection, request: Request,
                         transport: Transport) -> Response | None:
        headers: Headers = request.headers
        origin_header = _single(headers, "Origin")
        if not check_host_header(_single(headers, "Host"), set(self._own_ports(transport))):
            return self._refuse(conn, origin_header, "Host is not this agent on loopback")
        if request.path != PATH:
            return self._refuse(conn, origin_header, "unknown path")
        decision = self.policy.connection_decision(origin_header, self.settings.dev_origins)
        if not decision.allowed or decision.origin is None:
            return self._refuse(conn, origin_header, decision.reason)
        origin = decision.origin.serialize()
        if self.connections.count(origin) >= self.connections.limit:
            return self._refuse(conn, origin, "too many connections from this origin")
        conn.admitted = _Admitted(origin, transport)  # type: ignore[attr-defined]
        return None

    def _own_ports(self, transport: Transport) -> list[int]:
        port = self.ports.get(transport)
        if port is not None:
            return [port]
        # Before start() returned (port 0 in tests): the configured one.
        s = self.settings
        return [s.wss_port if transport == "wss" else s.ws_port]

    # --- messages ------------------------------------------------------------------------

    async def _serve_connection(self, conn: ServerConnection) -> None:
        admitted: _Admitted = conn.admitted  # type: ignore[attr-defined]
        if not self.connections.acquire(admitted.origin):
            await conn.close(1008, "too many connections from this origin")
            return
        send_lock = asyncio.Lock()

        async def send(text: str) -> None:
            async with send_lock:
                await conn.send(text)

        ctx = CallContext(origin=admitted.origin, transport=admitted.transport,
                          connection_id=secrets.token_hex(6), services=self.services,
                          send=send)
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
            self.connections.release(admitted.origin)
            await session.close()


def _single(headers: Headers, name: str) -> str | None:
    """The header's value, or None when absent or repeated (a repeated Origin is refused)."""
    values = headers.get_all(name)
    return values[0] if len(values) == 1 else None
