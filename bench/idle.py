"""Idle is idle: the CPU an idle headless daemon and its workers use, and whether anything
still talks to the PKCS#11 workers while no page is connected.

    .venv/bin/python bench/idle.py [--seconds 60] [--json out.json]

Builds the SoftHSM test bed, starts a real `imza-agent run --headless` (bench config),
lets it settle, then reads for ``--seconds``:

* CPU: utime + stime of the daemon and every process below it (``/proc/<pid>/stat``);
* worker traffic: the read system calls of each PKCS#11 worker (``/proc/<pid>/io``
  ``syscr``). A worker blocks in one read on its pipe between requests, so the count does
  not move unless the daemon asks the worker something;
* PSS of the daemon and of the workers (``smaps_rollup``), as bench/run.py reads it.

``measure_idle`` is reused by bench/run.py for its idle rows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]

from agent_process import AgentProcess, _pss_kib, _tree, write_files  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
SETTLE = 3.0  # seconds after "stores ready" before the window opens


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (its own threads included), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 of proc(5)


def read_calls(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("syscr:"):
            return int(line.split()[1])
    return 0


def workers(daemon: int) -> list[int]:
    """The PKCS#11 worker processes below the daemon (by their command line)."""
    found = []
    for pid in _tree(daemon)[1:]:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"agent.keystores.pkcs11.worker" in cmdline:
            found.append(pid)
    return found


@dataclass
class IdleResult:
    seconds: float
    cpu_daemon: float          # s of CPU in the window
    cpu_workers: float
    worker_reads: int          # read syscalls of the PKCS#11 workers in the window
    workers: int               # how many workers were alive
    pss_kib: list[int]         # daemon, then each process below it

    @property
    def cpu_total(self) -> float:
        return self.cpu_daemon + self.cpu_workers

    def per_minute(self) -> float:
        return self.cpu_total * 60.0 / self.seconds


def tree_cpu(daemon: int) -> dict[int, float]:
    """CPU seconds of the daemon and of every process below it, by pid."""
    found = {}
    for pid in _tree(daemon):
        with contextlib.suppress(OSError):  # a process that just ended
            found[pid] = cpu_seconds(pid)
    return found


def cpu_between(before: dict[int, float], after: dict[int, float],
                daemon: int) -> tuple[float, float]:
    """(daemon, the rest) CPU used between two readings: a process that ended in between
    counts with zero (its last reading is gone with it), one that started counts whole."""
    used = {pid: cpu - before.get(pid, 0.0) for pid, cpu in after.items()}
    own = used.pop(daemon, 0.0)
    return own, sum(used.values())


async def watch(agent: AgentProcess, seconds: float) -> IdleResult:
    """Measure an already started daemon over ``seconds`` with nothing connected."""
    assert agent.process is not None
    daemon = agent.process.pid
    await asyncio.sleep(SETTLE)
    pids = workers(daemon)
    reads0 = {pid: read_calls(pid) for pid in pids}
    cpu0 = tree_cpu(daemon)
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    own, below = cpu_between(cpu0, tree_cpu(daemon), daemon)
    elapsed = time.monotonic() - t0
    reads = sum(read_calls(pid) - reads0[pid] for pid in pids if Path(f"/proc/{pid}").exists())
    pss = [_pss_kib(pid) for pid in _tree(daemon)]
    return IdleResult(elapsed, own, below, reads, len(pids), pss)


async def measure_idle(paths: tuple[Path, Path], env: dict[str, str], base: Path,
                       seconds: float) -> IdleResult:
    agent = AgentProcess(base / "idle", *paths, env)
    try:
        await agent.start()
        return await watch(agent, seconds)
    finally:
        agent.stop()


def rows(result: IdleResult) -> list[tuple[str, str, str]]:
    total = result.cpu_total
    return [
        (f"CPU of an idle headless daemon + workers over {result.seconds:.0f} s, no page",
         f"{total:.2f} s ({result.cpu_daemon:.2f} + {result.cpu_workers:.2f}: daemon + "
         f"workers; {result.per_minute():.2f} s/min)",
         "≤ 0.2 s / 60 s: " + ("met" if result.per_minute() <= 0.2 else "NOT met")),
        ("PKCS#11 worker read calls while idle (no page, no card event)",
         f"{result.worker_reads} ({result.workers} worker(s))",
         "0: " + ("met" if result.worker_reads == 0 else "NOT met")),
    ]


async def main_async(args: argparse.Namespace) -> int:
    from testbed.pki import build_pki
    from testbed.softhsm import build_softhsm

    with tempfile.TemporaryDirectory(prefix="imza-idle-") as tmp:
        base = Path(tmp)
        bed = build_softhsm(base / "softhsm", build_pki())
        spec = bed.tokens["A"]
        paths = write_files(base, bed.module, bed.identity("ec_sign").common_name, spec.pin)
        home = base / "user-home"  # a first run puts its CA into stores under HOME
        home.mkdir()
        result = await measure_idle(paths, {**bed.env, "HOME": str(home)}, base, args.seconds)
    for what, value, bar in rows(result):
        print(f"| {what} | {value} | {bar} |")
    parts = " + ".join(f"{k / 1024:.1f}" for k in result.pss_kib)
    print(f"| PSS daemon + workers, idle | {sum(result.pss_kib) / 1024:.1f} MiB ({parts}) | |")
    if args.json:
        Path(args.json).write_text(json.dumps({**asdict(result),
                                               "per_minute": result.per_minute()}),
                                   encoding="utf-8")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--json", help="also write the result to this file")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
