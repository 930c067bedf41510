"""Waiting for every task of a batch to hand its item over.

``sign.batch`` runs each item's own method (``agent.app.documents.sign_in_batch``), and a
batch's builders each run as they would alone (``agent.formats.isolation.build_together``),
until each reaches the point where it hands its item over instead of finishing it; the
caller then works with every item at once.  Both wait the same way, here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from agent.errors import InternalError


async def wait_for_handover(tasks: Iterable[asyncio.Future[Any]],
                            complete: asyncio.Future[None], stray: str) -> None:
    """Return once ``complete`` is done (every task handed its item over).  A task that
    ends before — with its item's own refusal, which becomes the batch's, or without
    handing anything over (``stray``: an InternalError) — ends the wait with its error."""
    waiting: set[asyncio.Future[Any]] = set(tasks)
    while not complete.done():
        done, waiting = await asyncio.wait({*waiting, complete},
                                           return_when=asyncio.FIRST_COMPLETED)
        waiting.discard(complete)
        for task in done:
            if task is not complete:
                task.result()
                raise InternalError(stray)
