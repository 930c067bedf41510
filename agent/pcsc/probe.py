"""A one-shot look at PC/SC: which readers there are and which hold a card (with ATR).

Used by ``imza-agent doctor`` (the daemon watches with ``watcher.py``).  pyscard is
optional: without it, or without a running PC/SC service, the report says why instead
of failing.  The probe only asks the resource manager for reader states
(SCardGetStatusChange); it never connects to a card, so it cannot disturb a token
another program is using.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

# pcscd can wedge; a diagnostic tool must answer anyway.
PROBE_TIMEOUT = 5.0


@dataclass(frozen=True)
class ReaderState:
    name: str
    card_present: bool
    atr: str | None  # upper-case hex bytes separated by spaces, as pcsc_scan shows them
    state_flags: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "cardPresent": self.card_present, "atr": self.atr,
                "state": list(self.state_flags)}


@dataclass(frozen=True)
class PcscReport:
    available: bool
    reason: str | None = None  # why PC/SC is not available
    readers: tuple[ReaderState, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {"available": self.available, "reason": self.reason,
                "readers": [r.as_dict() for r in self.readers]}


def _atr_hex(atr: list[int] | bytes | None) -> str | None:
    if not atr:
        return None
    return " ".join(f"{b:02X}" for b in bytes(atr))


def _probe_with_pyscard() -> PcscReport:
    try:
        from smartcard import scard
    except ImportError:
        return PcscReport(False, "pyscard is not installed (pip install pyscard)")
    except Exception as exc:  # a broken build of the extension module
        return PcscReport(False, f"pyscard cannot be loaded: {exc}")

    def error(code: int) -> str:
        try:
            return str(scard.SCardGetErrorMessage(code)).strip()
        except Exception:
            return f"error 0x{code & 0xFFFFFFFF:08X}"

    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        return PcscReport(False, f"no PC/SC service (is pcscd running?): {error(hresult)}")
    try:
        hresult, names = scard.SCardListReaders(context, [])
        if hresult == scard.SCARD_E_NO_READERS_AVAILABLE:
            return PcscReport(True, None, ())
        if hresult != scard.SCARD_S_SUCCESS:
            return PcscReport(False, f"cannot list readers: {error(hresult)}")
        hresult, states = scard.SCardGetStatusChange(
            context, 0, [(name, scard.SCARD_STATE_UNAWARE) for name in names])
        if hresult != scard.SCARD_S_SUCCESS:
            # The reader names are still worth showing.
            return PcscReport(True, None, tuple(ReaderState(n, False, None, ("unknown",))
                                                for n in names))
        flags = {
            "present": scard.SCARD_STATE_PRESENT, "empty": scard.SCARD_STATE_EMPTY,
            "exclusive": scard.SCARD_STATE_EXCLUSIVE, "inuse": scard.SCARD_STATE_INUSE,
            "mute": scard.SCARD_STATE_MUTE, "unavailable": scard.SCARD_STATE_UNAVAILABLE,
        }
        readers = []
        for name, event_state, atr in states:
            present = bool(event_state & scard.SCARD_STATE_PRESENT)
            readers.append(ReaderState(
                name=name, card_present=present, atr=_atr_hex(atr) if present else None,
                state_flags=tuple(k for k, bit in flags.items() if event_state & bit)))
        return PcscReport(True, None, tuple(readers))
    finally:
        scard.SCardReleaseContext(context)


def probe_pcsc(timeout: float = PROBE_TIMEOUT) -> PcscReport:
    """Readers and cards now, or why PC/SC cannot be asked; never raises."""
    box: list[PcscReport] = []

    def run() -> None:
        try:
            box.append(_probe_with_pyscard())
        except Exception as exc:
            box.append(PcscReport(False, f"PC/SC probe failed: {type(exc).__name__}: {exc}"))

    # A daemon thread: a hung pcscd must not keep the doctor from exiting.
    worker = threading.Thread(target=run, name="pcsc-probe", daemon=True)
    worker.start()
    worker.join(timeout)
    if not box:
        return PcscReport(False, f"the PC/SC service did not answer within {timeout:g} s")
    return box[0]
