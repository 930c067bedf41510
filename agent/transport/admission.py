"""Who may open a connection: one decision for every transport.

A transport describes what it saw of a connection attempt (``Attempt``); ``Admission.admit``
answers with an ``Admitted`` connection that holds one of its origin's connection slots, or
with a ``Refused`` and its short reason, after writing the one refusal log line. The
transport only puts the answer on its own wire: an HTTP 403 for a WebSocket upgrade, a
``{"ok": false, "reason": …}`` frame on the local socket.

The checks run from the cheapest to the most specific: whether the request is meant for this
agent at all (a WebSocket's Host header and path, against DNS rebinding), then the origin
(well-formed, https or a configured development origin, not blocked, allow-listed when the
policy is locked), then the open connections: the origin's, its site's (registrable
domain, so sub-domains cannot multiply the origin's limit) and the agent's in all. One
``Admission`` serves every transport, so these limits hold across them: a page cannot
double them by using both the WebSocket and the browser extension.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from agent.limits import ConnectionCounter, ungranted_share
from agent.policy.origin import check_host_header, escape
from agent.policy.policy import Decision
from agent.policy.site import site_of
from agent.protocol.dispatch import Transport

log = logging.getLogger("imza_agent.transport")

OTHER_USER = "the connection comes from another OS user's program"
TOO_MANY = "too many connections from this origin"
TOO_MANY_SITE = "too many connections from this site"
TOO_MANY_TOTAL = "too many connections"
TOO_MANY_UNGRANTED = "too many connections from sites without a grant"


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
    """What a transport saw of a connection attempt. New facts about the peer (e.g. whether
    a loopback peer is this OS user) are added as fields with a default, so every
    transport keeps building it the same way."""

    transport: Transport
    origin: str | None  # as received; None when absent, repeated or not text
    http: HttpRequest | None = None
    # The client socket belongs to another OS user, or its owner could not be found where
    # the platform can tell (agent/platform/peer.py): refused before anything else.
    other_user: bool = False


# How a WebSocket tells a page that the agent will not serve its (well-formed) origin: a
# page cannot read an HTTP status (a 403 at the upgrade looks to it like "no agent"), so
# the agent accepts the upgrade and closes at once with this code and "refused: <reason>".
CLOSE_POLICY = 1008


@dataclass(frozen=True)
class Refused:
    reason: str  # short, for the log line and the peer; never anything secret
    # A WebSocket close code to refuse with after accepting the upgrade (a page reads it);
    # None: an HTTP 403 (what is refused there is no page's business: Host, path, peer,
    # a malformed origin, the connection limits).
    close_code: int | None = None


@dataclass(eq=False)
class Admitted:
    """An admitted connection. ``release`` frees its slot; calling it again is harmless,
    so a transport may release from more than one clean-up path."""

    origin: str  # serialized, canonical
    transport: Transport
    _admission: Admission = field(repr=False)
    granted: bool = True  # the origin held a grant when admitted (counted apart if not)
    _released: bool = field(default=False, repr=False)

    @property
    def site(self) -> str:
        return site_of(self.origin)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._admission.release(self.origin, granted=self.granted)

    @property
    def released(self) -> bool:
        return self._released


class Admission:
    def __init__(self, policy: ConnectionPolicy, *, dev_origins: Iterable[str] = (),
                 max_connections_per_origin: int, max_connections_per_site: int | None = None,
                 max_connections: int | None = None, reserved_for_granted: float = 0.0,
                 has_grant: Callable[[str], bool] | None = None) -> None:
        """``None`` for the site or overall limit means no limit (tests of other limits).
        Origins without a grant (``has_grant``) may hold only the unreserved part of
        ``max_connections``."""
        self.policy = policy
        self.dev_origins = tuple(dev_origins)
        self.connections = ConnectionCounter(max_connections_per_origin)
        self.sites = ConnectionCounter(max_connections_per_site or 2**31)
        self.max_connections = max_connections
        self.reserved_for_granted = reserved_for_granted
        self.has_grant = has_grant
        self.total = 0
        self.ungranted = 0  # of ``total``: connections of origins without a grant

    def admit(self, attempt: Attempt) -> Admitted | Refused:
        if attempt.other_user:
            return self._refuse(attempt, attempt.origin, OTHER_USER)
        http = attempt.http
        if http is not None:
            if not check_host_header(http.host, http.own_ports):
                return self._refuse(attempt, attempt.origin, "Host is not this agent on loopback")
            if http.path != http.expected_path:
                return self._refuse(attempt, attempt.origin, "unknown path")
        decision = self.policy.connection_decision(attempt.origin, self.dev_origins)
        if not decision.allowed or decision.origin is None:
            return self._refuse(attempt, attempt.origin, decision.reason,
                                None if decision.origin is None else CLOSE_POLICY)
        origin = decision.origin.serialize()
        granted = self.has_grant is None or self.has_grant(origin)
        if self.max_connections is not None:
            if self.total >= self.max_connections:
                return self._refuse(attempt, origin, TOO_MANY_TOTAL)
            if not granted and self.ungranted >= ungranted_share(self.max_connections,
                                                                 self.reserved_for_granted):
                return self._refuse(attempt, origin, TOO_MANY_UNGRANTED)
        if self.connections.count(origin) >= self.connections.limit:
            return self._refuse(attempt, origin, TOO_MANY)
        if not self.sites.acquire(site_of(origin)):
            return self._refuse(attempt, origin, TOO_MANY_SITE)
        self.connections.acquire(origin)
        self.total += 1
        self.ungranted += not granted
        return Admitted(origin, attempt.transport, self, granted)

    def release(self, origin: str, *, granted: bool = True) -> None:
        """Free one connection slot of ``origin`` (through ``Admitted.release``)."""
        self.connections.release(origin)
        self.sites.release(site_of(origin))
        self.total -= 1
        self.ungranted -= not granted

    @staticmethod
    def _refuse(attempt: Attempt, origin: str | None, reason: str,
                close_code: int | None = None) -> Refused:
        shown = "(none)" if origin is None else f"'{printable(origin)}'"  # escaped already
        log.warning("refused %s connection: origin=%s reason=%s", attempt.transport, shown,
                    reason)
        return Refused(reason, close_code)


def printable(value: str | None, limit: int = 200) -> str | None:
    """A header or handshake value made safe for one log line: control and invisible
    characters escaped (``\x00``, ``\u202e``), so the log shows what was sent."""
    return None if value is None else escape(value, limit)
