"""Whether a Windows process is our agent (``Platform.agent_process``), from its program.

Another process's command line lives in its PEB: reading it means ``ReadProcessMemory``
at offsets that differ between 32- and 64-bit processes and Windows versions. Its image
path needs only ``OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION)`` (granted to the same
user even for an elevated process) and ``QueryFullProcessImageNameW``. What that tells:

- ``imza-agent.exe`` / ``imza-agentw.exe`` (installer/windows/imza-agent.spec): True, our
  program, though not whether it runs ``run`` or another subcommand;
- a Python interpreter (``python.exe``, ``pythonw.exe``, ``python3.12.exe``): None, a
  developer's ``python -m agent.cli run`` or any other script, cannot tell;
- anything else (``imza-agent-native-host.exe`` included: it never runs ``run``): False;
- a process that cannot be opened (gone, or another user's): False; the program of one
  that was opened but not named: None.

``ImageApi`` is the seam: ``Kernel32Images`` makes the calls, the tests record them.
"""

from __future__ import annotations

import ctypes
import re
from pathlib import PureWindowsPath
from typing import Any, Protocol

PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
OUR_IMAGES = frozenset({"imza-agent.exe", "imza-agentw.exe"})
PYTHON_IMAGE = re.compile(r"pythonw?(\d+(\.\d+)?)?\.exe")
MAX_PATH_CHARS = 32_768  # the longest path Windows has (with the \\?\ prefix)


class ImageApi(Protocol):
    """kernel32's calls, one method each (the real one passes them on as they are)."""

    def OpenProcess(self, access: int, inherit: bool, pid: int) -> int | None:
        """The process's handle; None: gone, or access denied."""

    def QueryFullProcessImageNameW(self, handle: int, flags: int) -> str | None:
        """The image's Win32 path (``flags`` 0); None: failed."""

    def CloseHandle(self, handle: int) -> bool: ...


def classify(image: str) -> bool | None:
    """Ours, a Python interpreter (None), or another program, by the image's file name."""
    name = PureWindowsPath(image).name.lower()
    if name in OUR_IMAGES:
        return True
    return None if PYTHON_IMAGE.fullmatch(name) else False


def agent_process(api: ImageApi, pid: int) -> bool | None:
    handle = api.OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    if not handle:
        return False  # own_process_alive opens it just so: not this user's live process
    try:
        image = api.QueryFullProcessImageNameW(handle, 0)
    finally:
        api.CloseHandle(handle)
    return None if not image else classify(image)


class Kernel32Images:  # pragma: no cover - needs Windows
    """The real ``ImageApi``: ctypes over kernel32."""

    def __init__(self) -> None:
        from ctypes import wintypes

        self._k: Any = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
        self._k.OpenProcess.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
        self._k.OpenProcess.restype = wintypes.HANDLE
        self._k.QueryFullProcessImageNameW.argtypes = [wintypes.HANDLE, wintypes.DWORD,
                                                       wintypes.LPWSTR, wintypes.PDWORD]
        self._k.QueryFullProcessImageNameW.restype = wintypes.BOOL
        self._k.CloseHandle.argtypes = [wintypes.HANDLE]
        self._k.CloseHandle.restype = wintypes.BOOL
        self._wintypes = wintypes

    def OpenProcess(self, access: int, inherit: bool, pid: int) -> int | None:
        handle = self._k.OpenProcess(access, inherit, pid)
        return int(handle) if handle else None

    def QueryFullProcessImageNameW(self, handle: int, flags: int) -> str | None:
        buffer = ctypes.create_unicode_buffer(MAX_PATH_CHARS)
        size = self._wintypes.DWORD(MAX_PATH_CHARS)
        if not self._k.QueryFullProcessImageNameW(handle, flags, buffer, ctypes.byref(size)):
            return None
        return buffer.value[:size.value]

    def CloseHandle(self, handle: int) -> bool:
        return bool(self._k.CloseHandle(handle))
