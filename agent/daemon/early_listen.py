"""The WebSocket ports bound and listening before the daemon imports its stack.

``imza-agent run`` binds its ports right after it holds the instance lock, before it
imports the daemon (runtime, protocol, key stores, transports: a few hundred
milliseconds on a slow machine): from then on the kernel accepts a page's connection and
queues it, instead of refusing it, and the transport serves it once it starts
(``agent/transport/websocket.py`` takes these sockets through ``prebound``). The page is
then answered by the one admission path as soon as it exists; nothing here reads a byte.

The ports are the ones the transport would take: the configured port, else the next free
one of its range (``range_ports``), IPv4 loopback and the same port on IPv6 loopback. A
socket the transport does not take (wss without TLS material, ws forbidden by the system
policy, a start that failed) is closed by ``close``; a page queued on it sees the
connection closed, as it would have seen it refused.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from typing import TYPE_CHECKING

from agent.platform import reuses_listening_addresses

if TYPE_CHECKING:
    from agent.config import ServerConfig

# agent/transport/websocket.py's LOOPBACK_HOSTS, PORT_STEP and range_ports (not imported:
# that module imports the protocol stack this one is here to run before;
# tests/test_early_listen.py holds them equal).
LOOPBACK_HOSTS = ("127.0.0.1", "::1")
PORT_STEP = 2
# What asyncio's create_server listens with, and whether it sets SO_REUSEADDR.
BACKLOG = 100
REUSE_ADDRESS = reuses_listening_addresses()


def range_ports(first: int, count: int) -> list[int]:
    if first == 0:
        return [0]
    return [p for p in (first + PORT_STEP * i for i in range(count)) if p <= 65535]


class EarlySockets:
    """Listening loopback sockets, waiting for the transport to take them."""

    def __init__(self) -> None:
        # (transport, host, port asked for) → socket; IPv6 under the port IPv4 got (what
        # the transport asks for on ::1).
        self._sockets: dict[tuple[str, str, int], socket.socket] = {}

    @classmethod
    def bind(cls, server: ServerConfig) -> EarlySockets:
        """Bind what ``server`` configures (wss, and ws if enabled); never raises: a port
        that cannot be bound here is left to the transport, which says why."""
        early = cls()
        if server.wss_enabled:
            early._bind_range("wss", server.wss_port, server.port_range)
        if server.ws_enabled:
            early._bind_range("ws", server.ws_port, server.port_range)
        return early

    def _bind_range(self, transport: str, first: int, count: int) -> None:
        for candidate in range_ports(first, count):
            try:
                ipv4 = _listening(socket.AF_INET, LOOPBACK_HOSTS[0], candidate)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    continue  # the transport will skip it too
                return
            self._sockets[(transport, LOOPBACK_HOSTS[0], candidate)] = ipv4
            port = int(ipv4.getsockname()[1])
            with contextlib.suppress(OSError):  # no IPv6, or [::1]:port taken: as the transport
                self._sockets[(transport, LOOPBACK_HOSTS[1], port)] = _listening(
                    socket.AF_INET6, LOOPBACK_HOSTS[1], port)
            return

    @property
    def ports(self) -> list[int]:
        return sorted({int(s.getsockname()[1]) for s in self._sockets.values()})

    def take(self, transport: str, host: str, port: int) -> socket.socket | None:
        """``transport``'s listening socket for ``host``:``port`` (port 0: the one bound
        for it), now the caller's; None if none was bound."""
        return self._sockets.pop((transport, host, port), None)

    def close(self) -> None:
        """Close every socket nobody took."""
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()


def _listening(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    """A listening socket with the options asyncio's create_server would set."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if REUSE_ADDRESS:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock
