"""What every transport does with an admitted connection's text frames.

Rate limit per origin, a cap on requests in flight per connection, one task per request
(so a request waiting for the user does not hold up ``agent.info``), and on close the
cancellation of what is still running and the connection's own clean-up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from agent.errors import RateLimited
from agent.limits import RateLimiter
from agent.protocol import jsonrpc
from agent.protocol.dispatch import CallContext, Dispatcher

Send = Callable[[str], Awaitable[None]]


class FrameSession:
    def __init__(self, dispatcher: Dispatcher, ctx: CallContext, send: Send,
                 rate: RateLimiter, clock: Callable[[], float],
                 closed_errors: tuple[type[BaseException], ...], max_in_flight: int) -> None:
        self.dispatcher = dispatcher
        self.ctx = ctx
        self._send = send
        self._rate = rate
        self._clock = clock
        self._closed_errors = closed_errors
        # Beyond this many unanswered requests, frames are refused, not queued without bound.
        self._max_in_flight = max_in_flight
        self._in_flight: set[asyncio.Task[None]] = set()

    async def submit(self, text: str) -> None:
        if (len(self._in_flight) >= self._max_in_flight
                or not self._rate.allow(self.ctx.origin, self._clock())):
            parsed = jsonrpc.parse_frame(text)
            await self.send_quietly(jsonrpc.error_frame(getattr(parsed, "id", None),
                                                        RateLimited().to_wire()))
            return
        task = asyncio.create_task(self._answer(text))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _answer(self, text: str) -> None:
        reply = await self.dispatcher.handle_frame(self.ctx, text)
        if reply is not None:
            await self.send_quietly(reply)

    async def send_quietly(self, text: str) -> None:
        """Send, ignoring a peer that has gone: its requests die with it."""
        with contextlib.suppress(*self._closed_errors):
            await self._send(text)

    async def close(self) -> None:
        for task in self._in_flight:
            task.cancel()
        await self.ctx.close()

