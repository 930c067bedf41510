"""Windows' Smart Card service stops when the last reader is unplugged, and starts again
when one comes back. A fake WinSCard reproduces that sequence (reader removed →
SCARD_E_NO_SERVICE on every call, SCardEstablishContext included → the started event is
signalled → readers back), and the watcher must report "no readers", not "the service is
not running", then pick the new reader up on a fresh context. With no started event (pcscd
on Linux) the same NO_SERVICE still means the service is down."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from agent.doctor.verdict import verdict
from agent.pcsc.watcher import EventKind, PcscEvent, PcscWatcher, ServiceState
from agent.ui.tray_model import _pcsc_service

READER = "Feitian ePass2003 0"
OTHER_READER = "ACS ACR39U ICC Reader 0"
ATR = bytes.fromhex("3B9F958131FE9F006646530534")
OTHER_ATR = bytes.fromhex("3BFE1800008031FE45803180664090A5102E1083019000F2")
TIMEOUT = 10.0


class FakeWinScard:
    """Enough of pyscard's ``scard`` as WinSCard behaves: no PnP pseudo-reader here, card
    states with CHANGED bits, and a service that exists only while a reader does."""

    SCARD_S_SUCCESS = 0
    SCARD_SCOPE_USER = 0
    SCARD_E_CANCELLED = 0x80100002
    SCARD_E_UNKNOWN_READER = 0x80100009
    SCARD_E_TIMEOUT = 0x8010000A
    SCARD_E_NO_SERVICE = 0x8010001D
    SCARD_E_SERVICE_STOPPED = 0x8010001E
    SCARD_E_NO_READERS_AVAILABLE = 0x8010002E
    SCARD_E_INVALID_HANDLE = 0x80100003
    SCARD_STATE_UNAWARE = 0
    SCARD_STATE_IGNORE = 1
    SCARD_STATE_CHANGED = 2
    SCARD_STATE_UNKNOWN = 4
    SCARD_STATE_EMPTY = 0x10
    SCARD_STATE_PRESENT = 0x20
    SCARD_STATE_MUTE = 0x200

    def __init__(self, readers: dict[str, bytes | None]) -> None:
        self.readers = dict(readers)
        self.running = True
        self.generation = 1  # contexts from before a stop stay dead after a restart
        self.changed = threading.Condition()
        self.established: list[int] = []  # the result of each SCardEstablishContext
        self.calls_while_stopped = 0

    # --- what the test does -----------------------------------------------------------

    def unplug_all(self) -> None:
        with self.changed:
            self.readers.clear()
            self.running = False  # Windows stops the service with the last reader
            self.changed.notify_all()

    def plug(self, reader: str, atr: bytes | None) -> None:
        with self.changed:
            self.readers[reader] = atr
            self.running = True
            self.generation += 1
            self.changed.notify_all()

    # --- the API ------------------------------------------------------------------------

    def _dead(self, context: object) -> bool:
        if not self.running or context != self.generation:
            self.calls_while_stopped += 1
            return True
        return False

    def SCardEstablishContext(self, scope: int) -> tuple[int, object]:
        with self.changed:
            if not self.running:
                self.calls_while_stopped += 1
                self.established.append(self.SCARD_E_NO_SERVICE)
                return self.SCARD_E_NO_SERVICE, None
            self.established.append(self.SCARD_S_SUCCESS)
            return self.SCARD_S_SUCCESS, self.generation

    def SCardReleaseContext(self, context: object) -> int:
        return self.SCARD_S_SUCCESS

    def SCardGetErrorMessage(self, code: int) -> str:
        return f"error {code:#x}"

    def SCardCancel(self, context: object) -> int:
        with self.changed:
            self.changed.notify_all()
        return self.SCARD_S_SUCCESS

    def SCardListReaders(self, context: object, groups: list[str]) -> tuple[int, list[str]]:
        with self.changed:
            if self._dead(context):
                return self.SCARD_E_NO_SERVICE, []
            if not self.readers:
                return self.SCARD_E_NO_READERS_AVAILABLE, []
            return self.SCARD_S_SUCCESS, list(self.readers)

    def _state(self, reader: str) -> tuple[int, bytes]:
        atr = self.readers[reader]
        return (self.SCARD_STATE_PRESENT, atr) if atr else (self.SCARD_STATE_EMPTY, b"")

    def SCardGetStatusChange(self, context: object, timeout_ms: int,
                             wanted: list[tuple[str, int]]) -> tuple[int, list[Any]]:
        with self.changed:
            if timeout_ms == 0 and wanted[0][0].startswith("\\\\?PnP?"):
                if self._dead(context):
                    return self.SCARD_E_NO_SERVICE, []
                return self.SCARD_S_SUCCESS, [(wanted[0][0], self.SCARD_STATE_UNKNOWN, b"")]
            for _round in range(2):
                if self._dead(context):
                    return self.SCARD_E_NO_SERVICE, []
                if any(name not in self.readers for name, _state in wanted):
                    return self.SCARD_E_UNKNOWN_READER, []
                answer = []
                for name, known in wanted:
                    state, atr = self._state(name)
                    differs = state != known & ~self.SCARD_STATE_CHANGED
                    answer.append((name, state | (self.SCARD_STATE_CHANGED if differs else 0),
                                   atr))
                if any(s & self.SCARD_STATE_CHANGED for _n, s, _a in answer):
                    return self.SCARD_S_SUCCESS, answer
                if _round == 0:
                    self.changed.wait(timeout_ms / 1000)
            return self.SCARD_E_TIMEOUT, []


class FakeStartedEvent:
    """SCardAccessStartedEvent's event: signalled while the fake service runs."""

    def __init__(self, scard: FakeWinScard) -> None:
        self.scard = scard
        self.waits = 0

    def wait(self, timeout: float) -> bool:
        self.waits += 1
        with self.scard.changed:
            if not self.scard.running:
                self.scard.changed.wait(timeout)
            return self.scard.running


class Events:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[PcscEvent] = asyncio.Queue()
        self.seen: list[PcscEvent] = []

    def __call__(self, event: PcscEvent) -> None:
        self.seen.append(event)
        self.queue.put_nowait(event)

    async def until(self, kind: EventKind, reader: str | None = None) -> list[PcscEvent]:
        """Events up to and including the next one of ``kind``."""
        got: list[PcscEvent] = []

        async def collect() -> None:
            while True:
                event = await self.queue.get()
                got.append(event)
                if event.kind is kind and (reader is None or event.reader == reader):
                    return
        await asyncio.wait_for(collect(), TIMEOUT)
        return got


def tray_and_doctor(watcher: PcscWatcher) -> tuple[str | None, dict[str, Any]]:
    service = _pcsc_service(SimpleNamespace(pcsc=SimpleNamespace(status=watcher.status)))
    return service, verdict({"pcsc": {"service": service}})


def run(scenario: Callable[[], Any]) -> None:
    asyncio.run(scenario())


def test_the_last_reader_gone_is_no_readers_then_a_new_reader_is_picked_up() -> None:
    scard = FakeWinScard({READER: ATR})
    started = FakeStartedEvent(scard)
    watcher = PcscWatcher(scard, wait_ms=100, started=lambda: started)
    events = Events()

    async def scenario() -> None:
        watcher.start(asyncio.get_running_loop(), events)
        try:
            first = await events.until(EventKind.CARD_INSERTED, READER)
            assert [e.kind for e in first] == [EventKind.SERVICE_UP, EventKind.READER_ADDED,
                                               EventKind.CARD_INSERTED]
            assert first[-1].atr == ATR

            scard.unplug_all()
            gone = await events.until(EventKind.READER_REMOVED, READER)
            assert [(e.kind, e.reader, e.atr) for e in gone] == [
                (EventKind.CARD_REMOVED, READER, ATR), (EventKind.READER_REMOVED, READER, None)]
            # Idle, not broken: the watcher sleeps on the started event...
            await asyncio.sleep(0.6)
            assert started.waits >= 2
            assert watcher.status.service is ServiceState.RUNNING
            assert watcher.status.reason is None and watcher.status.readers == {}
            service, health = tray_and_doctor(watcher)
            assert service == "running" and health == {"level": "ok", "problems": []}
            # ...instead of asking a stopped service again and again.
            assert scard.established.count(scard.SCARD_E_NO_SERVICE) <= 1
            assert scard.calls_while_stopped <= 3

            scard.plug(OTHER_READER, OTHER_ATR)
            back = await events.until(EventKind.CARD_INSERTED, OTHER_READER)
            assert [(e.kind, e.reader) for e in back] == [
                (EventKind.READER_ADDED, OTHER_READER), (EventKind.CARD_INSERTED, OTHER_READER)]
            assert back[-1].atr == OTHER_ATR
            assert scard.established.count(scard.SCARD_S_SUCCESS) == 2  # a new context
            assert watcher.status.readers == {OTHER_READER: OTHER_ATR}
        finally:
            await asyncio.to_thread(watcher.stop)
        assert not any(e.kind is EventKind.SERVICE_DOWN for e in events.seen)

    run(scenario)


def test_starting_with_no_reader_waits_for_the_service_without_a_warning() -> None:
    scard = FakeWinScard({})
    scard.running = False  # Windows 8+: no reader, no service, at logon already
    started = FakeStartedEvent(scard)
    watcher = PcscWatcher(scard, wait_ms=100, started=lambda: started)
    events = Events()

    async def scenario() -> None:
        watcher.start(asyncio.get_running_loop(), events)
        try:
            up = await events.until(EventKind.SERVICE_UP)
            assert [e.kind for e in up] == [EventKind.SERVICE_UP]
            assert tray_and_doctor(watcher)[1]["level"] == "ok"
            scard.plug(READER, None)
            added = await events.until(EventKind.READER_ADDED, READER)
            assert [e.kind for e in added] == [EventKind.READER_ADDED]
        finally:
            await asyncio.to_thread(watcher.stop)

    run(scenario)


def test_without_a_started_event_no_service_means_the_service_is_down() -> None:
    # pcscd's case: NO_SERVICE is a stopped daemon, shown as such, retried on a timer.
    scard = FakeWinScard({READER: ATR})
    watcher = PcscWatcher(scard, wait_ms=100, retry_delays=(0.05,), started=lambda: None)
    events = Events()

    async def scenario() -> None:
        watcher.start(asyncio.get_running_loop(), events)
        try:
            await events.until(EventKind.CARD_INSERTED, READER)
            scard.unplug_all()
            down = await events.until(EventKind.SERVICE_DOWN)
            assert [e.kind for e in down] == [EventKind.CARD_REMOVED,
                                              EventKind.READER_REMOVED, EventKind.SERVICE_DOWN]
            assert watcher.status.service is ServiceState.NOT_RUNNING
            service, health = tray_and_doctor(watcher)
            assert service == "not-running" and health["level"] == "attention"
            assert health["problems"] == ["The smart card service is not running"]
            scard.plug(OTHER_READER, None)
            back = await events.until(EventKind.READER_ADDED, OTHER_READER)
            assert back[0].kind is EventKind.SERVICE_UP
            assert watcher.status.service is ServiceState.RUNNING
        finally:
            await asyncio.to_thread(watcher.stop)

    run(scenario)


@pytest.mark.posix
def test_on_linux_there_is_no_started_event() -> None:
    from agent.pcsc.scard import load_started_event

    assert load_started_event() is None  # no winscard.dll: pcscd behaviour
