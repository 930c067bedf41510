"""Start-up and idle memory alone (a quick loop while working on them):

    .venv/bin/python bench/startup.py [--starts 5] [--keep DIR] [--importtime]

Builds the test bed, starts a first-run daemon and ``--starts`` restarts (as bench/run.py's
start-up section), prints spawn → first connection / stores ready (outside) with medians,
the daemon's CPU, and the PSS and anonymous memory of daemon + workers 1 s after ready.
``--importtime`` writes the last restart's ``-X importtime`` to ``<keep>/importtime.txt``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]

from agent_process import AgentProcess, write_files  # noqa: E402
from idle import cpu_seconds  # noqa: E402
from run import agent_env, anonymous_kib  # noqa: E402
from testbed.pki import build_pki  # noqa: E402
from testbed.softhsm import build_softhsm  # noqa: E402


async def measure(base: Path, starts: int, importtime: bool) -> None:
    bed = build_softhsm(base / "softhsm", build_pki())
    spec = bed.tokens["A"]
    paths = write_files(base, bed.module, bed.identity("ec_sign").common_name, spec.pin)
    conn, ready, inside_listen, inside_ready, cpu, pss, anon = [], [], [], [], [], [], []
    cpu_conn = []
    for i in range(starts + 1):
        prefix = ["-X", "importtime"] if importtime and i == starts else []
        agent = AgentProcess(base / "start", *paths, agent_env(bed, base), prefix=prefix)
        try:
            times = await agent.start()
            assert agent.process is not None
            cpu_s = cpu_seconds(agent.process.pid)
            await asyncio.sleep(1.0)
            kind = "first run" if i == 0 else "restart"
            p, a = agent.pss_kib(), anonymous_kib(agent)
            print(f"{kind}: first connection {times.first_connection * 1000:.0f} ms, "
                  f"stores ready {times.stores_ready * 1000:.0f} ms (inside: "
                  + ", ".join(f"{k} {v * 1000:.0f}" for k, v in times.inside.items())
                  + f"), CPU at first connection {times.cpu_at_connection * 1000:.0f} ms, "
                  f"to ready {cpu_s * 1000:.0f} ms, PSS {sum(p) / 1024:.1f} MiB "
                  f"({' + '.join(f'{k / 1024:.1f}' for k in p)}), anonymous "
                  f"{sum(a) / 1024:.1f} MiB ({' + '.join(f'{k / 1024:.1f}' for k in a)})",
                  flush=True)
            if i:
                conn.append(times.first_connection)
                ready.append(times.stores_ready)
                inside_listen.append(times.inside.get("listening", 0.0))
                inside_ready.append(times.inside.get("stores_ready", 0.0))
                cpu.append(cpu_s)
                cpu_conn.append(times.cpu_at_connection)
                pss.append(sum(p))
                anon.append(sum(a))
        finally:
            agent.stop()
    med = statistics.median
    print(f"restarts, median of {starts}: first connection {med(conn) * 1000:.1f} ms "
          f"(max {max(conn) * 1000:.1f}), stores ready {med(ready) * 1000:.1f} ms outside / "
          f"{med(inside_ready) * 1000:.1f} ms inside, listening (inside) "
          f"{med(inside_listen) * 1000:.1f} ms, daemon CPU to first connection "
          f"{med(cpu_conn) * 1000:.0f} ms, to ready {med(cpu) * 1000:.0f} ms, "
          f"PSS {med(pss) / 1024:.1f} MiB, anonymous {med(anon) / 1024:.1f} MiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--keep", help="work in this directory and keep it")
    parser.add_argument("--importtime", action="store_true")
    args = parser.parse_args()
    if args.keep:
        base = Path(args.keep)
        base.mkdir(parents=True, exist_ok=True)
        asyncio.run(measure(base, args.starts, args.importtime))
        return 0
    with tempfile.TemporaryDirectory(prefix="imza-startup-") as tmp:
        asyncio.run(measure(Path(tmp), args.starts, args.importtime))
    return 0


if __name__ == "__main__":
    sys.exit(main())
