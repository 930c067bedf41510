"""One dialog on the screen at a time, in an order a flood of sites cannot take over.

A page can make the agent open a dialog; many pages (twelve sub-domains, say) could
otherwise keep a trusted site's dialog off the screen, or stack so many windows that a
person pressing Escape through them cancels the one that mattered.  So:

- at most one dialog is shown at a time, across all origins; later ones wait;
- a dialog of an origin that holds a grant goes ahead of those of origins that hold
  none (FIFO within each class), and takes the screen from such a dialog, which goes
  back to the head of its line and is shown again later;
- origins without a grant may have only ``max_pending_per_site`` dialogs waiting or
  shown per registrable domain, and ``max_pending`` in all; past that the request gets
  BUSY and no dialog;
- a dialog's time starts when it was asked for, so ``timeout`` bounds waiting plus
  showing; a dialog whose time runs out in the line is never shown, nor one with too
  little time left for a person to read and answer it (``MIN_SHOWING``), which would
  only flash a window under the user's pointer.

No threads or windows here: the UI backend's coroutine is what shows the dialog, and
cancelling it closes the dialog (``agent.app.dialogs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from agent.errors import AgentError, Busy, UserTimeout
from agent.policy.site import site_of

T = TypeVar("T")

# Least time left for a dialog to be opened at all: this share of the dialog timeout, at
# most MIN_SHOWING_SECONDS.
MIN_SHOWING_SHARE = 0.25
MIN_SHOWING_SECONDS = 3.0


@dataclass(frozen=True)
class DialogLimits:
    timeout: float = 120.0
    max_pending: int = 8
    max_pending_per_site: int = 2


class _Ticket:
    """One dialog's place in the line."""

    def __init__(self, origin: str, granted: bool, seq: int, deadline: float) -> None:
        self.origin = origin
        self.site = site_of(origin)
        self.granted = granted
        self.seq = seq
        self.deadline = deadline
        self.turn = asyncio.Event()     # set: this dialog has the screen
        self.preempt = asyncio.Event()  # set: give the screen back (or end, see ``ended``)
        self.ended: AgentError | None = None

    @property
    def rank(self) -> tuple[bool, int]:
        return (not self.granted, self.seq)


class _Preempted:
    pass


_PREEMPTED = _Preempted()


class DialogQueue:
    def __init__(self, limits: DialogLimits,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._seq = itertools.count()
        self._waiting: list[_Ticket] = []
        self._showing: _Ticket | None = None

    def __len__(self) -> int:
        """Dialogs waiting or shown."""
        return len(self._waiting) + (self._showing is not None)

    def _tickets(self) -> list[_Ticket]:
        return self._waiting + ([self._showing] if self._showing is not None else [])

    async def show(self, origin: str, open_dialog: Callable[[], Awaitable[T]], *,
                   granted: bool) -> T:
        """Wait for the screen, then run ``open_dialog()`` (again after losing the screen
        to a granted origin), all within the dialog timeout.  Raises BUSY when over a
        cap, USER_TIMEOUT when the time runs out."""
        if not granted:
            self._admit(origin)
        ticket = _Ticket(origin, granted, next(self._seq),
                         self._clock() + self.limits.timeout)
        self._waiting.append(ticket)
        try:
            while True:
                self._advance()
                await self._within(ticket, ticket.turn.wait())
                if ticket.ended is not None:
                    raise ticket.ended
                outcome = await self._run(ticket, open_dialog)
                if not isinstance(outcome, _Preempted):
                    return outcome
                if ticket.ended is not None:
                    raise ticket.ended
                # Back to the head of its line (its seq is older than the others').
                ticket.turn.clear()
                ticket.preempt.clear()
                self._showing = None
                self._waiting.append(ticket)
        finally:
            self._leave(ticket)
            self._advance()

    def end_origin(self, origin: str, error: AgentError) -> None:
        """End every dialog of ``origin``, waiting or shown, with ``error`` (a blocked
        site)."""
        for ticket in self._tickets():
            if ticket.origin == origin and ticket.ended is None:
                ticket.ended = error
                ticket.preempt.set()
                if ticket in self._waiting:
                    self._waiting.remove(ticket)
                    ticket.turn.set()

    # --- internals -----------------------------------------------------------------------

    def _admit(self, origin: str) -> None:
        ungranted = [t for t in self._tickets() if not t.granted]
        site = site_of(origin)
        if sum(t.site == site for t in ungranted) >= self.limits.max_pending_per_site:
            raise Busy("too many dialogs of this site are waiting")
        if len(ungranted) >= self.limits.max_pending:
            raise Busy("too many dialogs are waiting")

    def _advance(self) -> None:
        showing = self._showing
        if showing is None:
            if self._waiting:
                best = min(self._waiting, key=lambda t: t.rank)
                self._waiting.remove(best)
                self._showing = best
                best.turn.set()
        elif not showing.granted and any(t.granted for t in self._waiting):
            showing.preempt.set()

    def _leave(self, ticket: _Ticket) -> None:
        if ticket in self._waiting:
            self._waiting.remove(ticket)
        if self._showing is ticket:
            self._showing = None

    async def _within(self, ticket: _Ticket, waiting: Awaitable[object]) -> None:
        remaining = ticket.deadline - self._clock()
        try:
            if remaining <= 0:
                raise TimeoutError
            await asyncio.wait_for(waiting, remaining)
        except TimeoutError:
            raise UserTimeout() from None

    @property
    def min_showing(self) -> float:
        return min(MIN_SHOWING_SECONDS, self.limits.timeout * MIN_SHOWING_SHARE)

    async def _run(self, ticket: _Ticket, open_dialog: Callable[[], Awaitable[T]]
                   ) -> T | _Preempted:
        remaining = ticket.deadline - self._clock()
        if remaining < self.min_showing:
            raise UserTimeout()
        dialog: asyncio.Future[T] = asyncio.ensure_future(open_dialog())
        preempted = asyncio.ensure_future(ticket.preempt.wait())
        either: set[asyncio.Future[Any]] = {dialog, preempted}
        try:
            done, _ = await asyncio.wait(either, timeout=remaining,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            preempted.cancel()
            if not dialog.done():
                dialog.cancel()  # the backend closes its window
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await dialog
        if dialog in done:
            return dialog.result()
        if preempted in done:
            return _PREEMPTED
        raise UserTimeout()
