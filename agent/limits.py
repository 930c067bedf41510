"""Per-origin limits, kept free of I/O: the caller passes the clock.

Each limit is a named setting in ``[server]`` (see docs/configuration.md); the transport
and the dispatcher consult these objects and answer with the contract's errors.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    rate: float  # tokens per second
    burst: int
    tokens: float = field(init=False)
    stamp: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class RateLimiter:
    """Requests per second per origin, shared by all of that origin's connections."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, TokenBucket] = {}

    def allow(self, origin: str, now: float) -> bool:
        bucket = self._buckets.get(origin)
        if bucket is None:
            bucket = self._buckets[origin] = TokenBucket(self.rate, self.burst)
            bucket.stamp = now
        return bucket.take(now)


class ConnectionCounter:
    """Open connections per origin; ``acquire`` fails past the configured number."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: defaultdict[str, int] = defaultdict(int)

    def acquire(self, origin: str) -> bool:
        if self._open[origin] >= self.limit:
            return False
        self._open[origin] += 1
        return True

    def release(self, origin: str) -> None:
        self._open[origin] -= 1
        if self._open[origin] <= 0:
            del self._open[origin]

    def count(self, origin: str) -> int:
        return self._open.get(origin, 0)
