"""The daemon's PC/SC part: the watcher thread plus the event → key-store sync.

``start_pcsc`` returns None when PC/SC cannot be used at all (pyscard missing, or
``[pcsc] enabled = false``); the runtime then keeps polling for token changes.  While the
smart card service is down the runtime polls too (``events_flowing`` is False).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from agent.config import Config
from agent.keystores.manager import StoreManager
from agent.keystores.pkcs11.store import Pkcs11Store
from agent.pcsc.atr import AtrDatabase
from agent.pcsc.sync import TokenEventSync
from agent.pcsc.watcher import PcscStatus, PcscWatcher, ServiceState, load_scard

log = logging.getLogger(__name__)


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

    @property
    def events_flowing(self) -> bool:
        return self.watcher.status.service is ServiceState.RUNNING

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
    pkcs11 = [m.store for m in stores.managed if isinstance(m.store, Pkcs11Store)]
    service = PcscService(PcscWatcher(scard), TokenEventSync(pkcs11, atr_database(config),
                                                             publish))
    service.start()
    return service
