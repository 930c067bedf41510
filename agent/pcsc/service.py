"""The daemon's PC/SC part: the watcher thread plus the event → key-store sync.

``start_pcsc`` returns None when PC/SC cannot be used at all (pyscard missing, or
``[pcsc] enabled = false``).  The runtime's slow token poll (agent/daemon/token_watch.py)
runs for subscribed pages either way: it is what notices changes no reader reports.  For
the tray it runs only while card events do not flow (no PC/SC, or its service down:
``status`` tells the tray so); an idle agent with nobody connected polls nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from agent.config import Config
from agent.keystores.manager import StoreManager
from agent.pcsc.atr import AtrDatabase
from agent.pcsc.sync import TokenEventSync
from agent.pcsc.watcher import PcscStatus, PcscWatcher, load_scard


def atr_database(config: Config) -> AtrDatabase:
    return AtrDatabase.load(rule.model_dump() for rule in config.pcsc.atr)


class PcscService:
    def __init__(self, watcher: PcscWatcher, sync: TokenEventSync) -> None:
        self.watcher = watcher
        self.sync = sync
        self._task: asyncio.Task[Any] | None = None

    @property
    def status(self) -> PcscStatus:
        return self.watcher.status

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self.sync.run())
        self.watcher.start(loop, self.sync.on_event)

    async def stop(self) -> None:
        await asyncio.to_thread(self.watcher.stop)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.sync.close()


def start_pcsc(config: Config, stores: StoreManager,
               publish: Callable[[], Awaitable[None]]) -> PcscService | None:
    if not config.pcsc.enabled:
        return None
    scard = load_scard()
    if scard is None:
        return None
    database = atr_database(config)
    sync = TokenEventSync(stores.card_stores(), database, publish)
    # The listing's one row per certificate and card asks which card each reader holds,
    # and which module the ATR table prefers for it (agent/keystores/manager.py).
    stores.reader_atrs = lambda: {reader: card.atr for reader, card in sync.cards.items()}
    stores.module_order = lambda atr: database.module_paths(database.match(atr) if atr else None)
    service = PcscService(PcscWatcher(scard), sync)
    service.start()
    return service
