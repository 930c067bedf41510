"""Stopping the PC/SC watcher when SCardCancel arrives before the wait it should end.

pcsc-lite's SCardCancel wakes only an SCardGetStatusChange already under way. A stop that
lands while the watcher thread is between its stop check and the wait used to be lost, and
the daemon then waited out the whole timeout. The fake library here loses early cancels
the same way, and the test holds the thread at exactly that point: no pcscd needed."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from agent.pcsc.watcher import PcscWatcher

READER = "Fake Reader 00 00"


class LosingCancels:
    """Enough of pyscard's ``scard`` for the watcher: one reader, no PnP, and a cancel
    that only reaches a wait in progress."""

    SCARD_S_SUCCESS = 0
    SCARD_SCOPE_USER = 0
    SCARD_E_TIMEOUT = 0x8010000A
    SCARD_E_CANCELLED = 0x80100002
    SCARD_E_NO_READERS_AVAILABLE = 0x8010002E
    SCARD_E_UNKNOWN_READER = 0x80100009
    SCARD_STATE_UNAWARE = 0
    SCARD_STATE_IGNORE = 1
    SCARD_STATE_CHANGED = 2
    SCARD_STATE_UNKNOWN = 4
    SCARD_STATE_PRESENT = 0x20
    SCARD_STATE_MUTE = 0x200

    def __init__(self) -> None:
        self.listing = threading.Event()   # the thread is inside SCardListReaders
        self.go_on = threading.Event()     # the test lets it continue to the wait
        self._waiting = threading.Event()
        self._woken = threading.Event()
        self.cancels = 0
        self.lost_cancels = 0

    def SCardEstablishContext(self, scope: int) -> tuple[int, object]:
        return self.SCARD_S_SUCCESS, object()

    def SCardReleaseContext(self, context: object) -> int:
        return self.SCARD_S_SUCCESS

    def SCardGetErrorMessage(self, code: int) -> str:
        return f"error {code:#x}"

    def SCardListReaders(self, context: object, groups: list[str]) -> tuple[int, list[str]]:
        self.listing.set()
        self.go_on.wait(5)
        return self.SCARD_S_SUCCESS, [READER]

    def SCardGetStatusChange(self, context: object, timeout_ms: int,
                             wanted: list[tuple[str, int]]) -> tuple[int, list[Any]]:
        if timeout_ms == 0:  # the PnP probe: not supported by this "reader driver"
            return self.SCARD_S_SUCCESS, [(wanted[0][0], self.SCARD_STATE_UNKNOWN, b"")]
        self._woken.clear()
        self._waiting.set()
        try:
            woken = self._woken.wait(timeout_ms / 1000)
        finally:
            self._waiting.clear()
        return (self.SCARD_E_CANCELLED if woken else self.SCARD_E_TIMEOUT), []

    def SCardCancel(self, context: object) -> int:
        self.cancels += 1
        if self._waiting.is_set():
            self._woken.set()
        else:
            self.lost_cancels += 1
        return self.SCARD_S_SUCCESS


def test_a_cancel_that_came_before_the_wait_does_not_hold_up_stop() -> None:
    scard = LosingCancels()
    watcher = PcscWatcher(scard, wait_ms=60_000)  # a lost cancel would cost a minute

    async def scenario() -> None:
        watcher.start(asyncio.get_running_loop(), lambda event: None)
        assert await asyncio.to_thread(scard.listing.wait, 5)
        # The thread is past its stop check and about to wait: stop now, then let it go.
        stopping = asyncio.create_task(asyncio.to_thread(watcher.stop, 3.0))
        await asyncio.sleep(0.1)
        scard.go_on.set()
        await stopping

    asyncio.run(scenario())
    assert watcher._thread is not None and not watcher._thread.is_alive()
    assert scard.lost_cancels >= 1  # the race did happen: the first cancel went nowhere
