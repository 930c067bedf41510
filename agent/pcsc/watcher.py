"""Readers coming and going, cards inserted and removed: the PC/SC watcher thread.

``SCardGetStatusChange`` blocks, so it runs on its own thread, never on the event loop;
every change is posted into the loop with ``loop.call_soon_threadsafe``.  The wait has a
timeout (``WAIT_MS``) only so that ``stop()`` is noticed even where ``SCardCancel`` is
not; changes themselves wake the wait at once.

Reader arrival is watched through the ``\\\\?PnP?\\Notification`` pseudo-reader where the
resource manager supports it (pcsc-lite, Windows); elsewhere the reader list is read again
after every wait.

The service may go away under us: pcscd is stopped or restarted, or Windows stops its
smart card service when the last reader is unplugged.  Any error that says so ends the
context; the watcher reports the service as not running (readers gone, cards removed) and
establishes a new context, retrying after growing but bounded pauses (``RETRY_DELAYS``),
for as long as it runs.

Windows is the exception: its service stops by design once the last reader is unplugged,
answering ``SCARD_E_NO_SERVICE`` (or ``SCARD_E_SERVICE_STOPPED``) to everything. Where
the platform has WinSCard's started event (agent/pcsc/scard.py), those two mean "no
readers": the readers are reported gone, the service stays "running" (nothing for the tray
or doctor to warn about), and the watcher sleeps on the event until a reader starts the
service again, then establishes a new context.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.pcsc.scard import StartedEvent, load_started_event

log = logging.getLogger(__name__)

PNP_READER = "\\\\?PnP?\\Notification"
WAIT_MS = 500
# While stopping, how often SCardCancel is repeated until the thread has ended (seconds).
CANCEL_AGAIN = 0.05
# Pauses between attempts to reach the service; the last one repeats.
RETRY_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0)
SERVICE_NOT_RUNNING = "the smart card service is not running"


class EventKind(enum.StrEnum):
    SERVICE_UP = "service-up"
    SERVICE_DOWN = "service-down"
    READER_ADDED = "reader-added"
    READER_REMOVED = "reader-removed"
    CARD_INSERTED = "card-inserted"
    CARD_REMOVED = "card-removed"


@dataclass(frozen=True)
class PcscEvent:
    kind: EventKind
    reader: str | None = None
    atr: bytes | None = None  # CARD_INSERTED: the card's ATR; CARD_REMOVED: the last one
    reason: str | None = None  # SERVICE_DOWN: why


class ServiceState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    NOT_RUNNING = "not-running"
    UNAVAILABLE = "unavailable"  # no pyscard: PC/SC cannot be used at all


@dataclass
class PcscStatus:
    """What the tray and ``doctor`` show; updated on the watcher thread, read anywhere."""

    service: ServiceState = ServiceState.STARTING
    reason: str | None = None
    readers: dict[str, bytes | None] = field(default_factory=dict)  # name → ATR of its card

    def as_dict(self) -> dict[str, Any]:
        return {"service": self.service.value, "reason": self.reason,
                "readers": {name: atr.hex(" ").upper() if atr else None
                            for name, atr in self.readers.items()}}


def load_scard() -> Any:
    """pyscard's low-level module, or None when it is missing or broken."""
    try:
        from smartcard import scard
    except Exception as exc:  # ImportError, or a build that cannot load libpcsclite
        log.info("PC/SC is not available: %s", exc)
        return None
    return scard


class _ServiceLost(Exception):
    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class PcscWatcher:
    """``start(loop, on_event)`` → events arrive as ``on_event(event)`` on ``loop``."""

    def __init__(self, scard: Any, *, wait_ms: int = WAIT_MS,
                 retry_delays: tuple[float, ...] = RETRY_DELAYS,
                 started: Callable[[], StartedEvent | None] = load_started_event) -> None:
        self.scard = scard
        self.started = started()  # WinSCard's "service started" event; None elsewhere
        self.wait_ms = wait_ms
        self.retry_delays = retry_delays
        self.status = PcscStatus()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._context: Any = None
        self._context_lock = threading.Lock()
        self._post: Callable[[PcscEvent], None] = lambda event: None
        self._saw_reader = False  # this context listed a reader (the service works)

    # --- control, from the event loop ----------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop,
              on_event: Callable[[PcscEvent], None]) -> None:
        def post(event: PcscEvent) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(on_event, event)

        self._post = post
        self._thread = threading.Thread(target=self._run, name="pcsc-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ends the thread; blocks at most ``timeout`` (call through ``to_thread``)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        while True:
            self._cancel()
            left = deadline - time.monotonic()
            if self._thread is None or not self._thread.is_alive() or left <= 0:
                return
            # SCardCancel wakes only a wait already under way: a thread that was between
            # its stop check and SCardGetStatusChange starts waiting after it. Cancel again.
            self._thread.join(min(CANCEL_AGAIN, left))

    def _cancel(self) -> None:
        with self._context_lock:
            if self._context is not None:
                try:  # wakes a waiting SCardGetStatusChange at once
                    self.scard.SCardCancel(self._context)
                except Exception:
                    log.debug("SCardCancel failed", exc_info=True)

    # --- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        idle_waits = 0
        while not self._stop.is_set():
            try:
                context = self._establish()
            except _ServiceLost as lost:
                if self._idle(lost):
                    self._no_readers()
                    self._wait_started(idle_waits)
                    idle_waits += 1
                    continue
                self._service_down(lost.reason)
                delay = self.retry_delays[min(failures, len(self.retry_delays) - 1)]
                failures += 1
                self._stop.wait(delay)
                continue
            failures = 0
            idle = False
            self._saw_reader = False
            try:
                self._watch(context)
            except _ServiceLost as lost:
                idle = self._idle(lost)
                if idle:
                    log.info("the smart card service stopped: no readers left")
                    self._no_readers()
                else:
                    log.info("PC/SC service lost: %s", lost.reason)
                    self._service_down(lost.reason)
            except Exception:  # a bug must not end the watching for good
                log.exception("PC/SC watcher failed; starting over")
                self._service_down("the smart card watcher failed")
                self._stop.wait(self.retry_delays[-1])
            finally:
                self._release(context)
            if self._saw_reader:  # the service worked this time: back to plain waiting
                idle_waits = 0
            if idle:
                self._wait_started(idle_waits)
                idle_waits += 1

    def _idle(self, lost: _ServiceLost) -> bool:
        """Windows' service stopped for want of readers (only where its event exists)."""
        s = self.scard
        return self.started is not None and lost.code is not None and lost.code in {
            getattr(s, "SCARD_E_NO_SERVICE", None), getattr(s, "SCARD_E_SERVICE_STOPPED", None)}

    def _no_readers(self) -> None:
        for reader in list(self.status.readers):
            self._reader_gone(reader)
        was = self.status.service
        self.status.service, self.status.reason = ServiceState.RUNNING, None
        if was is not ServiceState.RUNNING:
            self._post(PcscEvent(EventKind.SERVICE_UP))

    def _wait_started(self, attempt: int) -> None:
        """Until the service runs again or ``stop()``. A signalled event that still
        leads to NO_SERVICE (attempt > 0) is not waited on again at once: no busy loop."""
        assert self.started is not None
        if attempt > 0:
            self._stop.wait(self.retry_delays[min(attempt - 1, len(self.retry_delays) - 1)])
        while not self._stop.is_set():
            try:
                if self.started.wait(self.wait_ms / 1000):
                    return
            except OSError:
                log.info("cannot wait for the smart card service", exc_info=True)
                self._stop.wait(self.retry_delays[-1])
                return

    def _error(self, code: int) -> str:
        try:
            return str(self.scard.SCardGetErrorMessage(code)).strip()
        except Exception:
            return f"error 0x{code & 0xFFFFFFFF:08X}"

    def _establish(self) -> Any:
        s = self.scard
        hresult, context = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
        if hresult != s.SCARD_S_SUCCESS:
            raise _ServiceLost(f"{SERVICE_NOT_RUNNING} ({self._error(hresult)})", hresult)
        with self._context_lock:
            self._context = context
        return context

    def _release(self, context: Any) -> None:
        with self._context_lock:
            self._context = None
        try:
            self.scard.SCardReleaseContext(context)
        except Exception:
            log.debug("SCardReleaseContext failed", exc_info=True)

    def _lost(self, hresult: int) -> bool:
        """Errors after which the context is dead: the service stopped or restarted."""
        s = self.scard
        codes = {getattr(s, name, None) for name in (
            "SCARD_E_NO_SERVICE", "SCARD_E_SERVICE_STOPPED", "SCARD_E_INVALID_HANDLE",
            "SCARD_F_COMM_ERROR", "SCARD_F_INTERNAL_ERROR")}
        return hresult in codes

    def _list_readers(self, context: Any) -> list[str]:
        s = self.scard
        hresult, names = s.SCardListReaders(context, [])
        if hresult == s.SCARD_S_SUCCESS:
            return [n for n in names if n != PNP_READER]
        if hresult == s.SCARD_E_NO_READERS_AVAILABLE:
            return []
        if self._lost(hresult):
            raise _ServiceLost(f"{SERVICE_NOT_RUNNING} ({self._error(hresult)})", hresult)
        log.info("listing readers failed: %s", self._error(hresult))
        return []

    def _pnp_supported(self, context: Any) -> bool:
        s = self.scard
        hresult, states = s.SCardGetStatusChange(
            context, 0, [(PNP_READER, s.SCARD_STATE_UNAWARE)])
        if self._lost(hresult):
            raise _ServiceLost(f"{SERVICE_NOT_RUNNING} ({self._error(hresult)})", hresult)
        return hresult in (s.SCARD_S_SUCCESS, s.SCARD_E_TIMEOUT) and not (
            states and states[0][1] & s.SCARD_STATE_UNKNOWN)

    def _watch(self, context: Any) -> None:
        s = self.scard
        pnp = self._pnp_supported(context)
        was = self.status.service
        self.status.service, self.status.reason = ServiceState.RUNNING, None
        if was is not ServiceState.RUNNING:  # Windows' idle service stayed "running"
            self._post(PcscEvent(EventKind.SERVICE_UP))
        known: dict[str, int] = {}  # reader → state we last saw
        pnp_state = s.SCARD_STATE_UNAWARE
        relist = True
        while not self._stop.is_set():
            if relist or not pnp:
                self._sync_readers(self._list_readers(context), known)
            wanted = [(name, state) for name, state in known.items()]
            if pnp:
                wanted.append((PNP_READER, pnp_state))
            if not wanted:  # no readers and no PnP: look again shortly
                self._stop.wait(self.wait_ms / 1000)
                relist = True
                continue
            hresult, states = s.SCardGetStatusChange(context, self.wait_ms, wanted)
            relist = False
            if hresult in (s.SCARD_E_TIMEOUT, s.SCARD_E_CANCELLED):
                continue
            if hresult == s.SCARD_E_UNKNOWN_READER:  # a reader left during the wait
                relist = True
                continue
            if hresult != s.SCARD_S_SUCCESS:
                if self._lost(hresult):
                    raise _ServiceLost(f"{SERVICE_NOT_RUNNING} ({self._error(hresult)})", hresult)
                log.info("waiting for card events failed: %s", self._error(hresult))
                self._stop.wait(self.wait_ms / 1000)
                relist = True
                continue
            for name, event_state, atr in states:
                if name == PNP_READER:
                    if event_state & s.SCARD_STATE_CHANGED:
                        relist = True
                    pnp_state = event_state & ~s.SCARD_STATE_CHANGED
                    continue
                if name in known:
                    if event_state & (s.SCARD_STATE_UNKNOWN | s.SCARD_STATE_IGNORE):
                        relist = True
                        continue
                    self._card_state(name, event_state, bytes(atr or b""))
                    known[name] = event_state & ~s.SCARD_STATE_CHANGED

    def _sync_readers(self, names: list[str], known: dict[str, int]) -> None:
        s = self.scard
        for name in [n for n in known if n not in names]:
            del known[name]
            self._reader_gone(name)
        for name in names:
            if name not in known:
                self._saw_reader = True
                known[name] = s.SCARD_STATE_UNAWARE
                self.status.readers[name] = None
                self._post(PcscEvent(EventKind.READER_ADDED, name))

    def _card_state(self, reader: str, event_state: int, atr: bytes) -> None:
        s = self.scard
        present = bool(event_state & s.SCARD_STATE_PRESENT) and not (
            event_state & s.SCARD_STATE_MUTE)
        before = self.status.readers.get(reader)
        if present and atr and before != atr:
            if before is not None:  # swapped between two waits
                self._post(PcscEvent(EventKind.CARD_REMOVED, reader, before))
            self.status.readers[reader] = atr
            self._post(PcscEvent(EventKind.CARD_INSERTED, reader, atr))
        elif not present and before is not None:
            self.status.readers[reader] = None
            self._post(PcscEvent(EventKind.CARD_REMOVED, reader, before))

    def _reader_gone(self, reader: str) -> None:
        atr = self.status.readers.pop(reader, None)
        if atr is not None:
            self._post(PcscEvent(EventKind.CARD_REMOVED, reader, atr))
        self._post(PcscEvent(EventKind.READER_REMOVED, reader))

    def _service_down(self, reason: str) -> None:
        for reader in list(self.status.readers):
            self._reader_gone(reader)
        was = self.status.service
        self.status.service, self.status.reason = ServiceState.NOT_RUNNING, reason
        if was is not ServiceState.NOT_RUNNING:
            self._post(PcscEvent(EventKind.SERVICE_DOWN, reason=reason))

