"""How often one site may ask the picker with a filter.

A filter that matches nothing still costs the user a picker ("no certificate matches"),
but a site holding ``select`` could otherwise test personal ID numbers or issuer names
one by one, as fast as the user closes pickers.  Past ``limit`` filtered selects in
``window`` seconds, a site gets RATE_LIMITED without a dialog; the answer does not depend
on the certificates, so it tells the site nothing about them.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from agent.errors import RateLimited
from agent.policy.site import site_of


class FilteredSelects:
    def __init__(self, limit: int, window: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._recent: dict[str, deque[float]] = {}

    def take(self, origin: str) -> None:
        """Count one filtered select of ``origin``'s site, or raise RATE_LIMITED."""
        now = self._clock()
        self._forget_before(now - self.window)
        site = site_of(origin)
        recent = self._recent.setdefault(site, deque())
        if len(recent) >= self.limit:
            raise RateLimited("too many filtered certificate selections from this site")
        recent.append(now)

    def __len__(self) -> int:
        """Sites with filtered selects in the window (what this keeps in memory)."""
        return len(self._recent)

    def _forget_before(self, cutoff: float) -> None:
        # Only sites that asked within the window are kept, so idle ones cost nothing.
        for site in list(self._recent):
            recent = self._recent[site]
            while recent and recent[0] <= cutoff:
                recent.popleft()
            if not recent:
                del self._recent[site]
