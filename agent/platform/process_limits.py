"""CPU time and memory limits for the process that calls this: a document worker
(agent/formats/worker.py) or the frame parser's worker (agent/transport/session.py),
before it reads a byte a page sent.

Linux and macOS: ``setrlimit`` (RLIMIT_CPU, RLIMIT_AS; macOS refuses RLIMIT_AS, the CPU
limit still holds). Windows has no rlimits; the equivalent is a job object the process
puts itself in: a user-mode time limit for the job (Windows then ends the process with
status ``ERROR_NOT_ENOUGH_QUOTA``, ``EXIT_TIME_QUOTA`` below) and a committed-memory limit
per process (an allocation beyond it fails, which Python raises as ``MemoryError``). The
job handle stays open for the life of the process, so the limits do too.
"""

from __future__ import annotations

import ctypes
from typing import Protocol

from agent.platform import os_name

# The status Windows gives a process its job's time limit ended (winerror.h).
EXIT_TIME_QUOTA = 1816  # ERROR_NOT_ENOUGH_QUOTA

JOB_OBJECT_LIMIT_JOB_TIME = 0x0000_0004
JOB_OBJECT_LIMIT_PROCESS_MEMORY = 0x0000_0100
JOB_OBJECT_EXTENDED_LIMIT_INFORMATION = 9  # the JOBOBJECTINFOCLASS value
TICKS_PER_SECOND = 10_000_000  # the job's times count 100-nanosecond ticks


def limit_this_process(*, cpu_seconds: int | None, memory_bytes: int | None) -> bool:
    """Limit this process's CPU time and memory (None: leave that one alone). Returns
    whether every requested limit is in force."""
    if os_name() == "windows":  # pragma: no cover - needs Windows; the logic is tested
        return job_limits(Kernel32Dll(), cpu_seconds=cpu_seconds, memory_bytes=memory_bytes)
    return rlimits(cpu_seconds=cpu_seconds, memory_bytes=memory_bytes)


# --- Linux and macOS ----------------------------------------------------------------------

def rlimits(*, cpu_seconds: int | None, memory_bytes: int | None) -> bool:
    try:
        import resource
    except ImportError:  # a POSIX system without it: nothing to set
        return False
    ok = True
    if cpu_seconds is not None:  # soft → SIGXCPU; the hard one, two seconds later, SIGKILL
        ok = _lower(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 2) and ok
    if memory_bytes is not None:
        ok = _lower(resource.RLIMIT_AS, memory_bytes, memory_bytes) and ok
    return ok


def _lower(which: int, soft: int, hard: int) -> bool:
    """Set a limit, never above one already in force (an unprivileged process cannot
    raise its hard limit, and an administrator's lower one stays)."""
    import resource

    try:
        _, current = resource.getrlimit(which)
        if current != resource.RLIM_INFINITY:
            hard = min(hard, current)
        resource.setrlimit(which, (min(soft, hard), hard))
    except (ValueError, OSError):
        return False
    return True


# --- Windows: a job object ----------------------------------------------------------------
# The structures as winnt.h lays them out (DWORD is 32 bits and SIZE_T pointer-sized on
# Windows whatever the C long is, hence c_uint32 / c_size_t rather than c_ulong).

class BasicLimits(ctypes.Structure):
    _fields_ = [("PerProcessUserTimeLimit", ctypes.c_int64),
                ("PerJobUserTimeLimit", ctypes.c_int64),
                ("LimitFlags", ctypes.c_uint32),
                ("MinimumWorkingSetSize", ctypes.c_size_t),
                ("MaximumWorkingSetSize", ctypes.c_size_t),
                ("ActiveProcessLimit", ctypes.c_uint32),
                ("Affinity", ctypes.c_size_t),
                ("PriorityClass", ctypes.c_uint32),
                ("SchedulingClass", ctypes.c_uint32)]


class IoCounters(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
        "ReadTransferCount", "WriteTransferCount", "OtherTransferCount")]


class ExtendedLimits(ctypes.Structure):
    _fields_ = [("BasicLimitInformation", BasicLimits),
                ("IoInfo", IoCounters),
                ("ProcessMemoryLimit", ctypes.c_size_t),
                ("JobMemoryLimit", ctypes.c_size_t),
                ("PeakProcessMemoryUsed", ctypes.c_size_t),
                ("PeakJobMemoryUsed", ctypes.c_size_t)]


class Kernel32(Protocol):
    """The three calls a job needs (a fake in the tests records them)."""

    def create_job(self) -> int | None:
        """A new unnamed job's handle; None when it could not be made."""

    def set_extended_limits(self, job: int, limits: ExtendedLimits) -> bool: ...

    def assign_current_process(self, job: int) -> bool: ...


def extended_limits(*, cpu_seconds: int | None, memory_bytes: int | None) -> ExtendedLimits:
    limits = ExtendedLimits()
    basic = limits.BasicLimitInformation
    if cpu_seconds is not None:
        basic.LimitFlags |= JOB_OBJECT_LIMIT_JOB_TIME
        basic.PerJobUserTimeLimit = cpu_seconds * TICKS_PER_SECOND
    if memory_bytes is not None:
        basic.LimitFlags |= JOB_OBJECT_LIMIT_PROCESS_MEMORY
        limits.ProcessMemoryLimit = memory_bytes
    return limits


def job_limits(api: Kernel32, *, cpu_seconds: int | None, memory_bytes: int | None) -> bool:
    if cpu_seconds is None and memory_bytes is None:
        return True
    job = api.create_job()
    if job is None:
        return False
    # Limits first, then the process joins: it never runs inside an unlimited job.
    limits = extended_limits(cpu_seconds=cpu_seconds, memory_bytes=memory_bytes)
    return api.set_extended_limits(job, limits) and api.assign_current_process(job)


class Kernel32Dll:  # pragma: no cover - needs Windows
    def __init__(self) -> None:
        from ctypes import wintypes

        dll = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
        self._create = dll.CreateJobObjectW
        self._create.argtypes = [ctypes.c_void_p, wintypes.LPCWSTR]
        self._create.restype = wintypes.HANDLE
        self._set = dll.SetInformationJobObject
        self._set.argtypes = [wintypes.HANDLE, ctypes.c_int, ctypes.c_void_p, wintypes.DWORD]
        self._set.restype = wintypes.BOOL
        self._assign = dll.AssignProcessToJobObject
        self._assign.argtypes = [wintypes.HANDLE, wintypes.HANDLE]
        self._assign.restype = wintypes.BOOL
        self._current = dll.GetCurrentProcess
        self._current.restype = wintypes.HANDLE

    def create_job(self) -> int | None:
        handle = self._create(None, None)
        return int(handle) if handle else None

    def set_extended_limits(self, job: int, limits: ExtendedLimits) -> bool:
        return bool(self._set(job, JOB_OBJECT_EXTENDED_LIMIT_INFORMATION,
                              ctypes.byref(limits), ctypes.sizeof(limits)))

    def assign_current_process(self, job: int) -> bool:
        return bool(self._assign(job, self._current()))
