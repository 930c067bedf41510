"""Another process's arguments on macOS (``Platform.agent_process``): sysctl
``{CTL_KERN, KERN_PROCARGS2, pid}``, which a process of the same user may read.

The kernel fills the buffer (XNU ``bsd/kern/kern_sysctl.c``, ``sysctl_procargsx``) with an
``int`` argc, the executable's path and its NUL, NULs up to pointer alignment, then the
argc argument strings, each ending in NUL, then the environment strings. It is parsed
from raw bytes so the tests can hand in that layout on Linux (tests/
test_platform_agent_process.py); ``ProcArgs`` is the seam, ``SysctlProcArgs`` the real call.
"""

from __future__ import annotations

import ctypes
import struct
from typing import Any, Protocol

from agent.platform.agent_process import agent_argv

CTL_KERN = 1
KERN_ARGMAX = 8
KERN_PROCARGS2 = 49
ARGC = struct.Struct("=i")


class ProcArgs(Protocol):
    def procargs2(self, pid: int) -> bytes | None:
        """The KERN_PROCARGS2 buffer as the kernel filled it; None: refused (the process
        is gone, or another user's)."""


def parse_procargs2(data: bytes) -> list[str] | None:
    """The argv in a KERN_PROCARGS2 buffer; None when it is not laid out as expected.
    An empty ``argv[0]`` would be taken for padding: the kernel's layout cannot tell."""
    if len(data) < ARGC.size:
        return None
    (argc,) = ARGC.unpack_from(data, 0)
    path_end = data.find(b"\0", ARGC.size)
    if argc < 0 or argc > len(data) or path_end < 0:
        return None
    position = path_end
    while position < len(data) and data[position] == 0:
        position += 1
    argv = []
    for _argument in range(argc):
        end = data.find(b"\0", position)
        if end < 0:
            return None  # cut short: not the whole command line
        argv.append(data[position:end].decode("utf-8", "replace"))
        position = end + 1
    return argv


def agent_process(args: ProcArgs, pid: int) -> bool | None:
    raw = args.procargs2(pid)
    argv = parse_procargs2(raw) if raw else None
    return None if argv is None else agent_argv(argv)


class SysctlProcArgs:  # pragma: no cover - needs macOS
    """The real ``ProcArgs``: ``sysctl(3)`` from libSystem, into a buffer of the
    kernel's ``KERN_ARGMAX`` bytes (the most a process's arguments and environment take)."""

    def __init__(self) -> None:
        self._libc: Any = ctypes.CDLL("/usr/lib/libSystem.B.dylib", use_errno=True)
        self._libc.sysctl.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_uint,
                                      ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                                      ctypes.c_void_p, ctypes.c_size_t]
        self._libc.sysctl.restype = ctypes.c_int

    def _sysctl(self, mib: list[int], buffer: Any, size: int) -> int | None:
        names = (ctypes.c_int * len(mib))(*mib)
        length = ctypes.c_size_t(size)
        if self._libc.sysctl(names, len(mib), buffer, ctypes.byref(length), None, 0) != 0:
            return None
        return int(length.value)

    def procargs2(self, pid: int) -> bytes | None:
        argmax = ctypes.c_int(0)
        if self._sysctl([CTL_KERN, KERN_ARGMAX], ctypes.byref(argmax),
                        ctypes.sizeof(argmax)) is None or argmax.value <= 0:
            return None
        buffer = ctypes.create_string_buffer(argmax.value)
        size = self._sysctl([CTL_KERN, KERN_PROCARGS2, pid], buffer, len(buffer))
        return None if size is None else buffer.raw[:size]
