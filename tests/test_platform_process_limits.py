"""A worker's own CPU and memory limits (agent/platform/process_limits.py): rlimits here,
for real in a child process; the Windows job object against a fake kernel32 that records
what it is given, and the structures' layout against winnt.h's offsets (64-bit)."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.platform.process_limits import (
    JOB_OBJECT_LIMIT_JOB_TIME,
    JOB_OBJECT_LIMIT_PROCESS_MEMORY,
    BasicLimits,
    ExtendedLimits,
    IoCounters,
    job_limits,
)

ROOT = Path(__file__).resolve().parents[1]


def _child(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.linux
def test_rlimits_are_set_in_the_process_that_asks() -> None:
    done = _child("""
        import resource
        from agent.platform.process_limits import limit_this_process
        print(limit_this_process(cpu_seconds=7, memory_bytes=3 << 30))
        print(resource.getrlimit(resource.RLIMIT_CPU), resource.getrlimit(resource.RLIMIT_AS))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["True", f"(7, 9) ({3 << 30}, {3 << 30})"]


@pytest.mark.linux
def test_a_memory_limit_makes_a_large_allocation_a_memory_error() -> None:
    done = _child("""
        from agent.platform.process_limits import limit_this_process
        assert limit_this_process(cpu_seconds=None, memory_bytes=1 << 30)
        try:
            bytearray(2 << 30)
        except MemoryError:
            print("MemoryError")
    """)
    assert done.stdout.strip() == "MemoryError", done.stderr


@pytest.mark.linux
def test_none_leaves_a_limit_alone() -> None:
    done = _child("""
        import resource
        from agent.platform.process_limits import limit_this_process
        before = resource.getrlimit(resource.RLIMIT_AS)
        limit_this_process(cpu_seconds=5, memory_bytes=None)
        print(resource.getrlimit(resource.RLIMIT_AS) == before)
    """)
    assert done.stdout.strip() == "True", done.stderr


def test_job_structures_have_winnt_layout() -> None:
    assert ctypes.sizeof(ctypes.c_void_p) == 8  # the agent ships 64-bit builds only
    assert ctypes.sizeof(BasicLimits) == 64 and ctypes.sizeof(IoCounters) == 48
    assert ctypes.sizeof(ExtendedLimits) == 144
    assert BasicLimits.PerJobUserTimeLimit.offset == 8
    assert BasicLimits.LimitFlags.offset == 16
    assert BasicLimits.SchedulingClass.offset == 60
    assert ExtendedLimits.ProcessMemoryLimit.offset == 112


class FakeKernel32:
    def __init__(self, *, create: bool = True, set_ok: bool = True) -> None:
        self.calls: list[tuple[str, object]] = []
        self.create, self.set_ok = create, set_ok

    def create_job(self) -> int | None:
        self.calls.append(("create", None))
        return 0x1234 if self.create else None

    def set_extended_limits(self, job: int, limits: ExtendedLimits) -> bool:
        basic = limits.BasicLimitInformation
        self.calls.append(("set", (job, basic.LimitFlags, basic.PerJobUserTimeLimit,
                                   basic.PerProcessUserTimeLimit, limits.ProcessMemoryLimit)))
        return self.set_ok

    def assign_current_process(self, job: int) -> bool:
        self.calls.append(("assign", job))
        return True


def test_windows_job_limits_time_and_memory_before_the_process_joins() -> None:
    api = FakeKernel32()
    assert job_limits(api, cpu_seconds=30, memory_bytes=1536 << 20) is True
    flags = JOB_OBJECT_LIMIT_JOB_TIME | JOB_OBJECT_LIMIT_PROCESS_MEMORY
    assert api.calls == [("create", None),
                         ("set", (0x1234, flags, 30 * 10_000_000, 0, 1536 << 20)),
                         ("assign", 0x1234)]


def test_windows_memory_only_sets_no_time_flag() -> None:
    api = FakeKernel32()
    assert job_limits(api, cpu_seconds=None, memory_bytes=2 << 30) is True
    assert api.calls[1] == ("set", (0x1234, JOB_OBJECT_LIMIT_PROCESS_MEMORY, 0, 0, 2 << 30))


def test_windows_never_joins_a_job_whose_limits_failed() -> None:
    api = FakeKernel32(set_ok=False)
    assert job_limits(api, cpu_seconds=5, memory_bytes=None) is False
    assert [c[0] for c in api.calls] == ["create", "set"]
    assert job_limits(FakeKernel32(create=False), cpu_seconds=5, memory_bytes=None) is False


def test_windows_nothing_asked_makes_no_job() -> None:
    api = FakeKernel32()
    assert job_limits(api, cpu_seconds=None, memory_bytes=None) is True
    assert api.calls == []
