"""WinSCard's "service started" event, behind a seam.

Since Windows 8 the Smart Card service runs only while a reader is attached: when the last
one is unplugged the service stops, and every call (``SCardEstablishContext`` included)
answers ``SCARD_E_NO_SERVICE`` until a reader comes back and the service starts again.
``SCardAccessStartedEvent`` returns an event that is signalled while the service runs, so
the watcher waits on it instead of polling a service that is merely idle (Microsoft's
documentation of SCardAccessStartedEvent and SCardReleaseStartedEvent).

pcsc-lite has no such event (and pcscd does not stop for want of readers): there
``load_started_event()`` answers None and the watcher keeps its Linux behaviour, where
``SCARD_E_NO_SERVICE`` really means that pcscd is not running.
"""

from __future__ import annotations

import ctypes
from typing import Any, Protocol

WAIT_OBJECT_0 = 0


class StartedEvent(Protocol):
    def wait(self, timeout: float) -> bool:
        """True once the smart card service runs; False after ``timeout`` seconds.
        Raises ``OSError`` when the event cannot be had."""


class WinScardStartedEvent:  # pragma: no cover - needs Windows
    def __init__(self) -> None:
        self._scard: Any = ctypes.WinDLL("winscard")  # type: ignore[attr-defined,unused-ignore]
        self._kernel: Any = ctypes.WinDLL("kernel32")  # type: ignore[attr-defined,unused-ignore]
        self._scard.SCardAccessStartedEvent.restype = ctypes.c_void_p
        self._kernel.WaitForSingleObject.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        self._kernel.WaitForSingleObject.restype = ctypes.c_uint32

    def wait(self, timeout: float) -> bool:
        handle = self._scard.SCardAccessStartedEvent()
        if not handle:
            raise OSError("SCardAccessStartedEvent failed")
        try:  # the handle belongs to WinSCard: released, never closed
            return bool(self._kernel.WaitForSingleObject(handle, int(timeout * 1000))
                        == WAIT_OBJECT_0)
        finally:
            self._scard.SCardReleaseStartedEvent()


def load_started_event() -> StartedEvent | None:
    """WinSCard's event where winscard.dll exists (Windows), else None."""
    try:
        return WinScardStartedEvent()
    except (AttributeError, OSError):  # no ctypes.WinDLL, or no winscard.dll
        return None
