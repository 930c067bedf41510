"""The WebSocket transport: a thin adapter between `websockets` and the dispatcher.

Everything that can be decided from the HTTP upgrade request is decided there, before a
single message is read, by the admission every transport shares
(``agent/transport/admission.py``): the Host header (DNS rebinding), the path, the Origin
and the connection limits. A refusal is an HTTP 403 and one log line — never a stack
trace; except that a well-formed origin the policy will not serve gets an accepted upgrade
closed at once with 1008 "refused: …", because a page cannot read an HTTP status and would
take the 403 for "no agent here" (the page SDK reports SITE_REFUSED).

Plain ``ws://`` is served only when both the configuration (a development setting) and the
system policy allow it: without TLS, a page cannot tell the agent from any program that
took the port first. A port another program holds (on a terminal server: another user's
agent) is skipped for the next of a small range (``[server] port_range``, ``range_ports``;
``ports`` says which one serves). When the whole range is taken that costs only that
transport: the agent logs one line, serves the rest, and ``unavailable`` says why (for
runtime.json, doctor and the tray).

A frame's size limit is set per connection on the WebSocket parser, so a frame over it is
never buffered: small until the origin holds a grant, afterwards the document methods' limit
(``max_document_frame_bytes``; the session answers a larger frame of any other method
TOO_LARGE against ``max_frame_bytes``).

Binary frames carry the bytes of the connection's uploads (``document.upload``,
agent/transport/uploads.py); one that no upload is waiting for closes the connection with
1008. The answer to a request that used an upload may be followed by one binary frame: the
two are sent under the connection's send lock, so nothing comes between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import secrets
import socket
import ssl
import weakref
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from agent.config import ServerConfig
from agent.platform.peer import can_check_peers, same_user
from agent.policy.policy import Policy
from agent.protocol.dispatch import CallContext, Dispatcher, Transport
from agent.transport.admission import Admission, Admitted, Attempt, HttpRequest, Refused
from agent.transport.heap import TRIM_AFTER_BYTES
from agent.transport.session import FrameSession, OversizedFrame, SessionLimits

log = logging.getLogger("imza_agent.transport")

PATH = "/v1"
LOOPBACK_HOSTS = ("127.0.0.1", "::1")


class WebSocketTransport:
    """Serves one dispatcher on the configured loopback ports (wss and/or ws)."""

    def __init__(self, dispatcher: Dispatcher, policy: Policy,
                 settings: ServerConfig, admission: Admission, limits: SessionLimits) -> None:
        self.dispatcher = dispatcher
        self.policy = policy  # for plain_websocket_allowed; admission has its own view
        self.settings = settings
        self.admission = admission
        self.limits = limits
        self._servers: list[Server] = []
        self.ports: dict[str, int] = {}
        # Transports that are configured but could not listen: transport → why, in words
        # fit for the user ("port 29170 is used by another program").
        self.unavailable: dict[str, str] = {}
        # Upgrades admitted but not yet handed to the handler, and the tasks that free
        # their slots when their connection ends.
        self._admitted: dict[ServerConnection, Admitted] = {}
        # Upgrades of refused origins, accepted only to be closed with the refusal's code
        # and reason (weak: an upgrade that fails afterwards leaves nothing behind).
        self._refused: weakref.WeakKeyDictionary[ServerConnection, Refused] = \
            weakref.WeakKeyDictionary()
        self._releasers: set[asyncio.Task[None]] = set()
        # (transport, host, port) → a socket already listening there, or None: the ports
        # `imza-agent run` bound before importing the daemon (agent/daemon/early_listen.py).
        self.prebound: Callable[[str, str, int], socket.socket | None] | None = None

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self, ssl_context: ssl.SSLContext | None) -> None:
        s = self.settings
        if s.wss_enabled and ssl_context is not None:
            await self._try_listen("wss", s.wss_port, ssl_context)
        if s.ws_enabled and not self.policy.plain_websocket_allowed:
            log.info("ws:// is enabled in the configuration but the system policy forbids "
                     "it (plain_websocket = false): not serving it")
        elif s.ws_enabled:
            await self._try_listen("ws", s.ws_port, None)

    async def _try_listen(self, transport: Transport, port: int,
                          ssl_context: ssl.SSLContext | None) -> None:
        # On a shared machine another user's agent (or any program) may hold the port: the
        # first free one of the range serves, and the page SDK tries the same range.
        candidates = range_ports(port, self.settings.port_range)
        why = f"port {port} is used by another program"
        for candidate in candidates:
            try:
                self.ports[transport] = await self._listen(transport, candidate, ssl_context)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    why = f"cannot listen on port {candidate}: {exc.strerror or exc}"
                    break
                continue
            if candidate != port:
                log.warning("port(s) %s taken by other programs or users; serving %s on %d",
                            ", ".join(str(p) for p in candidates if p < candidate),
                            transport, candidate)
            return
        if len(candidates) > 1 and why.startswith("port "):
            log.warning("every port of the %s range is taken: %s", transport,
                        ", ".join(str(p) for p in candidates))
        self.unavailable[transport] = why
        # One line, no traceback: the other transports still serve.
        log.warning("%s; pages cannot reach the agent over %s", why, transport)

    async def _listen(self, transport: Transport, port: int,
                      ssl_context: ssl.SSLContext | None) -> int:
        def process_request(conn: ServerConnection, request: Request) -> Response | None:
            return self._check_handshake(conn, request, transport)

        async def handler(conn: ServerConnection) -> None:
            await self._serve_connection(conn)

        # Until the handshake names an origin with a grant, only small frames: a frame
        # sent along with the upgrade request is read under this limit. At most four
        # received frames wait per connection (then TCP holds the rest back), so a peer
        # that does not read its answers cannot make the agent buffer its flood.
        kwargs: dict[str, Any] = dict(
            process_request=process_request, max_size=self.limits.max_frame_bytes_ungranted,
            compression=None, ssl=ssl_context, server_header=None, max_queue=4)
        server = await self._serve(handler, transport, LOOPBACK_HOSTS[0], port, kwargs)
        self._servers.append(server)
        bound = int(server.sockets[0].getsockname()[1])
        try:  # the same port on IPv6 loopback (port 0 picked it on IPv4 first)
            self._servers.append(await self._serve(handler, transport, LOOPBACK_HOSTS[1],
                                                   bound, kwargs))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                log.warning("port %d on [::1] is used by another program; serving %s on "
                            "127.0.0.1 only", bound, transport)
            else:
                log.info("IPv6 loopback unavailable; serving %s on 127.0.0.1 only", transport)
        log.info("listening on %s://127.0.0.1:%d%s", transport, bound, PATH)
        return bound

    async def _serve(self, handler: Callable[[ServerConnection], Any], transport: Transport,
                     host: str, port: int, kwargs: dict[str, Any]) -> Server:
        """A server on ``host``:``port``, on the socket already listening there if there is
        one (connections queued on it since are served like any other)."""
        sock = self.prebound(transport, host, port) if self.prebound is not None else None
        if sock is not None:
            return await serve(handler, sock=sock, **kwargs)
        return await serve(handler, host, port, **kwargs)

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
        # Another OS user's program on this machine may send any Origin: who owns the
        # client socket is checked first (Linux: /proc/net/tcp*, agent/platform/peer.py).
        local = conn.transport.get_extra_info("sockname")
        remote = conn.transport.get_extra_info("peername")
        other_user = can_check_peers() and not same_user(local, remote)
        attempt = Attempt(transport, _single(headers, "Origin"), HttpRequest(
            _single(headers, "Host"), frozenset(self._own_ports(transport)), request.path,
            PATH), other_user=other_user)
        verdict = self.admission.admit(attempt)
        if not isinstance(verdict, Admitted):
            if verdict.close_code is not None:
                # A page sees a 403 as "nothing there"; a close code and reason it can
                # read tell it that the agent is there and refuses this site. The refused
                # connection holds no slot and nothing it sends is read.
                self._refused[conn] = verdict
                return None
            return conn.respond(HTTPStatus.FORBIDDEN, f"refused: {verdict.reason}\n")
        # The slot is taken now, so concurrent upgrades cannot overshoot the limit. The
        # handler frees it; if the upgrade fails and no handler runs, the end of the
        # connection does.
        self._admitted[conn] = verdict
        set_max_size(conn, self.limits.frame_limit(verdict.origin))
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
        refused = self._refused.pop(conn, None)
        if refused is not None and refused.close_code is not None:
            # A close reason is at most 123 bytes of UTF-8.
            text = f"refused: {refused.reason}".encode()[:123].decode(errors="ignore")
            await conn.close(refused.close_code, text)
            return
        admitted = self._admitted.pop(conn, None)
        if admitted is None:  # not through _check_handshake: cannot happen, never serve
            await conn.close(1008, "not admitted")
            return
        send_lock = asyncio.Lock()

        async def send(text: str) -> None:
            async with send_lock:
                await conn.send(text)

        async def send_with_binary(text: str, data: memoryview) -> None:
            async with send_lock:
                await conn.send(text)
                await conn.send(data)

        ctx = CallContext(origin=admitted.origin, transport=admitted.transport,
                          connection_id=secrets.token_hex(6), send=send)
        session = FrameSession(self.dispatcher, ctx, send, self.limits, (ConnectionClosed,),
                               on_frame_limit=lambda limit: set_max_size(conn, limit),
                               send_with_binary=send_with_binary)
        set_max_size(conn, session.frame_limit)
        expiry = asyncio.get_running_loop().create_task(
            self._expire_uploads(conn, session, admitted.origin))
        try:
            async for message in conn:
                expired = session.expire_uploads()  # a frame may come before the timer
                if expired is not None:
                    await self._close_for(conn, admitted.origin, expired)
                    break
                if isinstance(message, bytes):
                    violation = session.receive_binary(message)
                    del message
                    if violation is not None:
                        await self._close_for(conn, admitted.origin, violation)
                        break
                    continue
                large = len(message) >= TRIM_AFTER_BYTES
                await session.submit(message)
                # Not held until the next frame arrives: a document's frame is large, and
                # the session keeps what it needs.
                del message
                if large:
                    # websockets' parser keeps the last frame it read (this one's raw
                    # bytes) until the next one arrives: the page's pong replaces it.
                    await conn.ping()
        except OversizedFrame:
            await conn.close(1009, "frame too big")
        except ConnectionClosed:
            pass
        finally:
            expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await expiry
            admitted.release()
            await session.close()

    async def _expire_uploads(self, conn: ServerConnection, session: FrameSession,
                              origin: str) -> None:
        """Each connection's timer for its uploads (``[server] upload_timeout``): a page
        that announces an upload and goes quiet gets its budgets taken back all the same."""
        while True:
            await asyncio.sleep(session.upload_wait())
            violation = session.expire_uploads()
            if violation is not None:
                # Shielded: the connection's end cancels this timer, not its close.
                await asyncio.shield(self._close_for(conn, origin, violation))
                return

    @staticmethod
    async def _close_for(conn: ServerConnection, origin: str, violation: str) -> None:
        log.info("closed a connection of %s: %s", origin, violation)
        await conn.close(1008, violation)


# wss takes the even ports of the range, ws the odd ones (29170, 29172, … and 29171, 29173,
# …): the default ports stay where they were and the two ranges never overlap.
PORT_STEP = 2


def range_ports(first: int, count: int) -> list[int]:
    """The ports a transport configured on ``first`` may take, in the order it tries them
    (port 0, "any free port" in tests, is a range of its own)."""
    if first == 0:
        return [0]
    return [p for p in (first + PORT_STEP * i for i in range(count)) if p <= 65535]


def set_max_size(conn: ServerConnection, limit: int) -> None:
    """Set the largest message this connection's parser accepts from the next frame on
    (websockets >= 15 names the attribute ``max_message_size``, 14 ``max_size``)."""
    protocol = conn.protocol
    name = "max_message_size" if hasattr(protocol, "max_message_size") else "max_size"
    setattr(protocol, name, limit)


def _single(headers: Headers, name: str) -> str | None:
    """The header's value, or None when absent or repeated (a repeated Origin is refused)."""
    values = headers.get_all(name)
    return values[0] if len(values) == 1 else None
