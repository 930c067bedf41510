"""WinSCard's "service started" event (see agent/pcsc/scard.py for why the watcher waits
on it); ctypes over winscard.dll and kernel32, Windows only."""

from __future__ import annotations

import ctypes
from typing import Any

WAIT_OBJECT_0 = 0


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
