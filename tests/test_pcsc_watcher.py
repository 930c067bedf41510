"""The PC/SC watcher against a real pcscd with the vpcd virtual reader: readers, cards
with their ATRs, and pcscd stopped and started under it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from vcard import READER_NAME, Pcscd, VirtualCard

from agent.pcsc.watcher import EventKind, PcscEvent, PcscWatcher, ServiceState, load_scard

pytestmark = [pytest.mark.pcscd]

ATR = bytes.fromhex("3B8B015275746F6B656E20454350A0")  # a Rutoken ECP's
OTHER_ATR = bytes.fromhex("3B9F968131FE45806755454B41451293318073B3A1806B")  # AKİS v1.3
EVENT_TIMEOUT = 15.0  # generous for CI; never asserted on


@pytest.fixture
def pcscd(tmp_path: Path) -> Iterator[Pcscd]:
    daemon = Pcscd(tmp_path).start()
    try:
        yield daemon
    finally:
        daemon.stop()


class Recorder:
    def __init__(self) -> None:
        self.events: asyncio.Queue[PcscEvent] = asyncio.Queue()

    def __call__(self, event: PcscEvent) -> None:
        self.events.put_nowait(event)

    async def wait_for(self, kind: EventKind, reader: str | None = None) -> PcscEvent:
        """The next event of this kind (for this reader), skipping others."""
        async def next_match() -> PcscEvent:
            while True:
                event = await self.events.get()
                if event.kind is kind and (reader is None or event.reader == reader):
                    return event
        return await asyncio.wait_for(next_match(), EVENT_TIMEOUT)


def scard_module() -> object:
    scard = load_scard()
    assert scard is not None, "pyscard is not installed (pip install 'pyscard>=2,<3')"
    return scard


def test_readers_cards_and_atrs(pcscd: Pcscd) -> None:
    async def scenario() -> None:
        watcher = PcscWatcher(scard_module(), wait_ms=200)
        seen = Recorder()
        watcher.start(asyncio.get_running_loop(), seen)
        try:
            await seen.wait_for(EventKind.SERVICE_UP)
            await seen.wait_for(EventKind.READER_ADDED, READER_NAME)
            assert watcher.status.service is ServiceState.RUNNING
            assert watcher.status.readers.get(READER_NAME) is None

            card = VirtualCard(ATR, pcscd.port).insert()
            inserted = await seen.wait_for(EventKind.CARD_INSERTED, READER_NAME)
            assert inserted.atr == ATR
            assert watcher.status.readers[READER_NAME] == ATR

            card.remove()
            removed = await seen.wait_for(EventKind.CARD_REMOVED, READER_NAME)
            assert removed.atr == ATR
            assert watcher.status.readers[READER_NAME] is None

            other = VirtualCard(OTHER_ATR, pcscd.port).insert()
            assert (await seen.wait_for(EventKind.CARD_INSERTED, READER_NAME)).atr == OTHER_ATR
            other.remove()
            await seen.wait_for(EventKind.CARD_REMOVED, READER_NAME)
        finally:
            await asyncio.to_thread(watcher.stop)

    asyncio.run(scenario())


def test_survives_pcscd_stopping_and_starting(pcscd: Pcscd) -> None:
    async def scenario() -> None:
        watcher = PcscWatcher(scard_module(), wait_ms=200, retry_delays=(0.05, 0.2))
        seen = Recorder()
        watcher.start(asyncio.get_running_loop(), seen)
        try:
            await seen.wait_for(EventKind.READER_ADDED, READER_NAME)
            card = VirtualCard(ATR, pcscd.port).insert()
            await seen.wait_for(EventKind.CARD_INSERTED, READER_NAME)

            await asyncio.to_thread(pcscd.stop)
            card.remove()
            # The card and the readers leave with the service, and the state says why.
            await seen.wait_for(EventKind.CARD_REMOVED, READER_NAME)
            await seen.wait_for(EventKind.READER_REMOVED, READER_NAME)
            down = await seen.wait_for(EventKind.SERVICE_DOWN)
            assert down.reason and "smart card service is not running" in down.reason
            assert watcher.status.service is ServiceState.NOT_RUNNING
            assert watcher.status.readers == {}

            await asyncio.to_thread(pcscd.start)
            await seen.wait_for(EventKind.SERVICE_UP)
            await seen.wait_for(EventKind.READER_ADDED, READER_NAME)
            card = VirtualCard(ATR, pcscd.port).insert()
            assert (await seen.wait_for(EventKind.CARD_INSERTED, READER_NAME)).atr == ATR
            assert watcher.status.service is ServiceState.RUNNING
            card.remove()
        finally:
            await asyncio.to_thread(watcher.stop)

    asyncio.run(scenario())


def test_stop_ends_the_thread_while_waiting(pcscd: Pcscd) -> None:
    watcher = PcscWatcher(scard_module(), wait_ms=60_000)  # only SCardCancel can wake it

    async def scenario() -> None:
        seen = Recorder()
        watcher.start(asyncio.get_running_loop(), seen)
        await seen.wait_for(EventKind.READER_ADDED, READER_NAME)
        await asyncio.to_thread(watcher.stop, 10.0)

    asyncio.run(scenario())
    assert watcher._thread is not None and not watcher._thread.is_alive()
