"""Login challenges: issued by the portal's server, used once, fresh for a short time.

``ChallengeStore`` keeps them in memory (one process). A portal with several processes
backs the same ``ChallengeBackend`` protocol with a shared store (e.g. Redis: ``SET key
issued_at NX EX lifetime`` on issue, an atomic get-and-mark on consume)."""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import threading
from dataclasses import dataclass
from typing import Protocol

from .clock import Clock, system_clock
from .errors import ErrorCode, LoginError

DEFAULT_LIFETIME = 300.0  # seconds; docs/protocol.md asks for a fresh challenge
CHALLENGE_BYTES = 32  # docs/protocol.md: at least 32 random bytes


class ChallengeBackend(Protocol):
    """What ``LoginVerifier.verify`` needs from a challenge store."""

    def issue(self, session: str = "") -> str:
        """A new base64url challenge (no padding) for ``session``."""
        ...

    def consume(self, challenge: str, session: str = "") -> None:
        """Mark ``challenge`` used, or raise ``LoginError`` with CHALLENGE_UNKNOWN (never
        issued to this session), CHALLENGE_USED or CHALLENGE_EXPIRED."""
        ...


@dataclass
class _Entry:
    issued_at: dt.datetime
    used: bool = False


class ChallengeStore:
    """In-memory, thread-safe, single-use challenges bound to a session id."""

    def __init__(self, lifetime: float = DEFAULT_LIFETIME, clock: Clock | None = None) -> None:
        self.lifetime = dt.timedelta(seconds=lifetime)
        self._clock = clock or system_clock
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._lock = threading.Lock()

    def issue(self, session: str = "") -> str:
        challenge = base64.urlsafe_b64encode(secrets.token_bytes(CHALLENGE_BYTES)).decode()
        self.register(challenge, session)
        return challenge.rstrip("=")

    def register(self, challenge: str, session: str = "",
                 issued_at: dt.datetime | None = None, *, used: bool = False) -> None:
        """Record a challenge made elsewhere (or replayed from a test vector)."""
        with self._lock:
            self._purge()
            self._entries[(session, _canonical(challenge))] = _Entry(
                issued_at or self._clock(), used)

    def consume(self, challenge: str, session: str = "") -> None:
        now = self._clock()
        with self._lock:
            entry = self._entries.get((session, _canonical(challenge)))
            if entry is None:
                raise LoginError(ErrorCode.CHALLENGE_UNKNOWN,
                                 "this challenge was not issued to this session")
            if entry.used:
                raise LoginError(ErrorCode.CHALLENGE_USED, "this challenge was already used")
            entry.used = True  # consumed whatever the later checks say
            if now - entry.issued_at > self.lifetime:
                raise LoginError(ErrorCode.CHALLENGE_EXPIRED,
                                 f"the challenge is older than {self.lifetime.total_seconds():g} s")

    def _purge(self) -> None:
        # Used and expired entries are kept for one more lifetime, so a quick replay is
        # reported as a replay rather than as an unknown challenge.
        horizon = self._clock() - 2 * self.lifetime
        for key in [k for k, e in self._entries.items() if e.issued_at < horizon]:
            del self._entries[key]


def _canonical(challenge: str) -> str:
    """docs/protocol.md lets ``=`` padding be optional: one challenge, one key."""
    return challenge.rstrip("=")


def decode_challenge(challenge: str) -> bytes:
    """The challenge's bytes (base64url, padding optional); what the agent signed over."""
    text = _canonical(challenge)
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
