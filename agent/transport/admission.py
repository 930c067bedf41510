"""Who may open a connection: one decision for every transport.

A transport describes what it saw of a connection attempt (``Attempt``); ``Admission.admit``
answers with an ``Admitted`` connection that holds one of its origin's connection slots, or
with a ``Refused`` and its short reason, after writing the one refusal log line. The
transport only puts the answer on its own wire: an HTTP 403 for a WebSocket upgrade, a
``{"ok": false, "reason": …}`` frame on the local socket.

The checks run from the cheapest to the most specific: whether the request is meant for this
agent at all (a WebSocket's Host header and path, against DNS rebinding), then the origin
(well-formed, https or a configured development origin, not blocked, allow-listed when the
policy is locked), then the origin's open connections. One ``Admission`` serves every
transport, so an origin's connection limit holds across them: a page cannot double it by
using both the WebSocket and the browser extension.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from agent.limits import ConnectionCounter
from agent.policy.origin import check_host_header
from agent.policy.policy import Decision
from agent.protocol.dispatch import Transport

log = logging.getLogger("imza_agent.transport")

TOO_MANY = "too many connections from this origin"


class ConnectionPolicy(Protocol):
    """The part of ``agent.policy.policy.Policy`` that admission consults."""

    def connection_decision(self, origin_text: str | None,
                            dev_origins: Iterable[str] = ()) -> Decision: ...


@dataclass(frozen=True)
class HttpRequest:
    """What a WebSocket upgrade adds to the origin: checked first."""

    host: str | None  # the Host header; None when absent or repeated
    own_ports: frozenset[int]  # the ports this agent serves the transport on
    path: str
    expected_path: str


@dataclass(frozen=True)
class Attempt:
    transport: Transport
    origin: str | None  # as received; None when absent, repeated or not text
    http: HttpRequest | None = None


@dataclass(frozen=True)
class Refused:
    reason: str  # short, for the log line and the peer; never anything secret


@dataclass(eq=False)
class Admitted:
    """An admitted connection. ``release`` frees its slot; calling it again is harmless,
    so a transport may release from more than one clean-up path."""

    origin: str  # serialized, canonical
    transport: Transport
    _counter: ConnectionCounter = field(repr=False)
    _released: bool = field(default=False, repr=False)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._counter.release(self.origin)

    @property
    def released(self) -> bool:
        return self._released


class Admission:
    def __init__(self, policy: ConnectionPolicy, *, dev_origins: Iterable[str] = (),
                 max_connections_per_origin: int) -> None:
        self.policy = policy
        self.dev_origins = tuple(dev_origins)
        self.connections = ConnectionCounter(max_connections_per_origin)

    def admit(self, attempt: Attempt) -> Admitted | Refused:
        http = attempt.http
        if http is not None:
            if not check_host_header(http.host, http.own_ports):
                return self._refuse(attempt, attempt.origin, "Host is not this agent on loopback")
            if http.path != http.expected_path:
                return self._refuse(attempt, attempt.origin, "unknown path")
        decision = self.policy.connection_decision(attempt.origin, self.dev_origins)
        if not decision.allowed or decision.origin is None:
            return self._refuse(attempt, attempt.origin, decision.reason)
        origin = decision.origin.serialize()
        if not self.connections.acquire(origin):
            return self._refuse(attempt, origin, TOO_MANY)
        return Admitted(origin, attempt.transport, self.connections)

    @staticmethod
    def _refuse(attempt: Attempt, origin: str | None, reason: str) -> Refused:
        log.warning("refused %s connection: origin=%r reason=%s", attempt.transport,
                    printable(origin), reason)
        return Refused(reason)


def printable(value: str | None, limit: int = 200) -> str | None:
    """A header or handshake value made safe for one log line."""
    if value is None:
        return None
    return "".join(ch if ch.isprintable() else "?" for ch in value)[:limit]
