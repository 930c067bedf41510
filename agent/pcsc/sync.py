"""PC/SC events → key-store work → ``tokens.changed``.

Drives the stores that follow card events (``CardEvents`` in ``keystores/base.py``; today
the PKCS#11 stores).  Runs on the event loop and handles events one at a time, in order:

* a card arrives: the stores whose module serves its ATR (``atr.py``; all of them when
  the ATR is unknown or its module is not loaded) drop their cached certificates and
  list their tokens again.  A store that shows no new token and is not busy is
  re-initialised once and listed again: some vendor modules read their slots only at start.
* a card leaves: the same stores drop their caches and list again, re-initialising one
  that still shows every token it showed before.  A call that is still running in one of
  the card's own modules after ``PULL_GRACE`` seconds is ended: a well-behaved module
  answers CKR_DEVICE_REMOVED by then, a hung one would hold the signature forever, and
  either way the caller gets TOKEN_NOT_PRESENT.
* a card came or went, or the smart card service started or stopped: subscribers hear
  about it once per burst of events (``publish``: the runtime's token watch, which tells
  the pages and the tray).

Handles keep working across re-insertion because they name tokens by their stable id
(manufacturer/serial), not by slot.  An unknown ATR is logged with a pointer to
``imza-agent doctor``, which reports the card on its own PC/SC look (``report.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agent.keystores.base import CardEvents
from agent.pcsc.atr import AtrDatabase, AtrEntry, same_file
from agent.pcsc.watcher import EventKind, PcscEvent

log = logging.getLogger(__name__)

PULL_GRACE = 1.0  # seconds a module gets to fail a call by itself after its card left


@dataclass(frozen=True)
class CardSeen:
    """A card in a reader, as identified when it arrived (its ATR may be gone when it
    leaves)."""

    reader: str
    atr: bytes
    entry: AtrEntry | None


class TokenEventSync:
    def __init__(self, stores: Sequence[CardEvents], atr_db: AtrDatabase,
                 publish: Callable[[], Awaitable[None]], *,
                 pull_grace: float = PULL_GRACE) -> None:
        self.stores = list(stores)
        self.atr_db = atr_db
        self.publish = publish
        self.pull_grace = pull_grace
        self.cards: dict[str, CardSeen] = {}  # reader → card now in it
        self._known: dict[str, set[str]] = {}  # store id → token ids last listed
        self._queue: asyncio.Queue[PcscEvent] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- plumbing --------------------------------------------------------------------------

    def on_event(self, event: PcscEvent) -> None:
        """The watcher's callback (already on the loop)."""
        self._queue.put_nowait(event)

    async def run(self) -> None:
        for store in self.stores:
            await self._list(store)
        while True:
            event = await self._queue.get()
            try:
                changed = await self._handle(event)
                while not self._queue.empty():  # a burst: one publication for all of it
                    changed |= await self._handle(self._queue.get_nowait())
                if changed:
                    await self.publish()
            except Exception:
                log.warning("handling %s failed", event.kind, exc_info=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- events ------------------------------------------------------------------------------

    async def _handle(self, event: PcscEvent) -> bool:
        log.info("PC/SC: %s %s %s", event.kind, event.reader or "",
                 event.atr.hex(" ").upper() if event.atr else "")
        if event.kind is EventKind.CARD_INSERTED and event.reader and event.atr:
            await self._inserted(event.reader, event.atr)
            return True
        if event.kind is EventKind.CARD_REMOVED and event.reader:
            await self._removed(event.reader, event.atr)
            return True
        return event.kind in (EventKind.SERVICE_UP, EventKind.SERVICE_DOWN)

    def stores_for(self, entry: AtrEntry | None) -> list[CardEvents]:
        """The loaded stores whose module the ATR table names for this card."""
        if entry is None:
            return []
        wanted = self.atr_db.module_paths(entry)  # the entry's modules, then OpenSC
        return [s for s in self.stores if any(same_file(s.module, p) for p in wanted)]

    def _targets(self, entry: AtrEntry | None) -> tuple[list[CardEvents], bool]:
        """(stores to refresh, whether they are the card's own modules)."""
        own = self.stores_for(entry)
        return (own, True) if own else (list(self.stores), False)

    async def _inserted(self, reader: str, atr: bytes) -> None:
        entry = self.atr_db.match(atr)
        self.cards[reader] = CardSeen(reader, atr, entry)
        targets, _own = self._targets(entry)
        for store in targets:
            before = set(self._known.get(store.store_id, set()))
            store.invalidate()
            found = await self._list(store)
            if found is not None and not found - before and not store.busy:
                await store.reinitialize()
                await self._list(store)
        if entry is None:
            log.warning("unknown card in %s: ATR %s (see `imza-agent doctor`)", reader,
                        atr.hex(" ").upper())

    async def _removed(self, reader: str, atr: bytes | None) -> None:
        card = self.cards.pop(reader, None)
        entry = card.entry if card else (self.atr_db.match(atr) if atr else None)
        targets, own = self._targets(entry)
        if own:
            for store in targets:
                if store.busy:
                    self._spawn(self._end_stuck_call(store))
        for store in targets:
            before = set(self._known.get(store.store_id, set()))
            store.invalidate()
            found = await self._list(store)
            if found is not None and before and found >= before and not store.busy:
                await store.reinitialize()
                await self._list(store)

    async def _end_stuck_call(self, store: CardEvents) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.pull_grace
        while store.busy and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if store.busy:
            log.warning("a call into %s outlived its card; ending it", store.module)
            store.token_pulled()

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _list(self, store: CardEvents) -> set[str] | None:
        try:
            found = {t.token_id for t in await store.tokens()}
        except Exception as exc:
            log.info("listing %s after a card event failed: %s", store.module, exc)
            return None
        self._known[store.store_id] = found
        return found
