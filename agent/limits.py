"""Limits on what pages may make the agent hold or do, kept free of I/O: the caller passes
the clock.

Each limit is a named setting in ``[server]`` (see docs/configuration.md); the transports
and the frame session consult these objects and answer with the contract's errors. Limits
that a page could multiply by opening sub-domains are counted per *site* (registrable
domain, ``agent.policy.site.site_of``), and each also has an overall cap, so many sites
together cannot exhaust the agent either.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    rate: float  # tokens per second
    burst: float
    tokens: float = field(init=False)
    stamp: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens. A cost above the burst passes on a full bucket and leaves
        it in debt, so one frame larger than the burst is slow, not impossible."""
        self.refill(now)
        if self.tokens >= min(cost, self.burst):
            self.tokens -= cost
            return True
        return False

    def full_at(self) -> float:
        """When the bucket is full again, i.e. no different from a new one."""
        return self.stamp + max(0.0, self.burst - self.tokens) / self.rate


class RateLimiter:
    """A token bucket per key (an origin for requests, a site for bytes), shared by all of
    that key's connections.

    A bucket that has refilled completely is the same as a new one, so it is dropped:
    otherwise every origin that ever connected would keep a bucket for the life of the
    agent. The sweep runs at most once per ``sweep_every`` seconds, so its cost is spread
    over the calls."""

    def __init__(self, rate: float, burst: float, *, sweep_every: float = 60.0) -> None:
        self.rate, self.burst = rate, burst
        self.sweep_every = sweep_every
        self._buckets: dict[str, TokenBucket] = {}
        self._last_sweep: float | None = None

    def allow(self, key: str, now: float, cost: float = 1.0) -> bool:
        self._maybe_sweep(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
            bucket.stamp = now
        return bucket.take(now, cost)

    def sweep(self, now: float) -> None:
        """Forget every bucket that is full again by ``now``."""
        self._last_sweep = now
        for key in [k for k, b in self._buckets.items() if b.full_at() <= now]:
            del self._buckets[key]

    def _maybe_sweep(self, now: float) -> None:
        if self._last_sweep is None:
            self._last_sweep = now
        elif now - self._last_sweep >= self.sweep_every:
            self.sweep(now)

    def __len__(self) -> int:
        return len(self._buckets)


class ConnectionCounter:
    """Open connections per key; ``acquire`` fails past the configured number."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: defaultdict[str, int] = defaultdict(int)

    def acquire(self, key: str) -> bool:
        if self._open.get(key, 0) >= self.limit:
            return False
        self._open[key] += 1
        return True

    def release(self, key: str) -> None:
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]

    def count(self, key: str) -> int:
        return self._open.get(key, 0)

    def total(self) -> int:
        return sum(self._open.values())


@dataclass(frozen=True)
class PendingLimits:
    per_site_requests: int
    total_requests: int
    per_site_bytes: int
    total_bytes: int
    # Share of the overall caps only origins with a grant may use (``reserved_for_granted``).
    reserved_for_granted: float = 0.0


def ungranted_share(total: int, reserved: float) -> int:
    """The part of an overall cap that origins without a grant may use (at least one)."""
    return max(1, int(total * (1.0 - reserved)))


class PendingLedger:
    """Requests in flight (running, or waiting for the user) and the frame bytes they hold,
    per site and overall, across every connection and transport.

    ``reserve`` answers None when the request may run (and books it), else the reason it
    may not; ``release`` gives the booking back when the request is answered or dropped."""

    def __init__(self, limits: PendingLimits) -> None:
        self.limits = limits
        self._requests: defaultdict[str, int] = defaultdict(int)
        self._bytes: defaultdict[str, int] = defaultdict(int)
        self.total_requests = 0
        self.total_bytes = 0

    def reserve(self, site: str, size: int, *, granted: bool = True) -> str | None:
        """``granted``: whether the requesting origin holds a grant; without one, only the
        unreserved part of the overall caps is open to it."""
        lim = self.limits
        total_requests, total_bytes = lim.total_requests, lim.total_bytes
        if not granted:
            total_requests = ungranted_share(total_requests, lim.reserved_for_granted)
            total_bytes = ungranted_share(total_bytes, lim.reserved_for_granted)
        if self._requests.get(site, 0) >= lim.per_site_requests:
            return "too many requests pending for this site"
        if self.total_requests >= total_requests:
            return "too many requests pending"
        if self._requests.get(site, 0) and self._bytes.get(site, 0) + size > lim.per_site_bytes:
            # The first request of a site always fits (the frame limit bounds it); later
            # ones wait until the site's earlier documents are done.
            return "too much data pending for this site"
        if self.total_requests and self.total_bytes + size > total_bytes:
            return "too much data pending"
        self._requests[site] += 1
        self._bytes[site] += size
        self.total_requests += 1
        self.total_bytes += size
        return None

    def release(self, site: str, size: int) -> None:
        self._requests[site] -= 1
        self._bytes[site] -= size
        self.total_requests -= 1
        self.total_bytes -= size
        if self._requests[site] <= 0:
            del self._requests[site]
            self._bytes.pop(site, None)

    def requests(self, site: str) -> int:
        return self._requests.get(site, 0)

    def bytes(self, site: str) -> int:
        return self._bytes.get(site, 0)
