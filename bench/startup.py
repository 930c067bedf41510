"""Start-up and idle memory alone (a quick loop while working on them):

    .venv/bin/python bench/startup.py [--starts 5] [--keep DIR] [--importtime] [--page]

Builds the test bed, starts a first-run daemon and ``--starts`` restarts (as bench/run.py's
start-up section), prints spawn → first connection / stores ready (outside) with medians,
the daemon's CPU, and the PSS and anonymous memory of daemon + workers 1 s after ready.
``--importtime`` writes the last restart's ``-X importtime`` into its log
(``<keep>/start.log``).

``--page``: the first connection is made as a page makes it, on fixed ports named in the
config, from the moment of the spawn (refused connections retried every 2 ms) instead of
after ``runtime.json`` names the ports. It prints when the TCP connection was accepted
(by the kernel: the port listens) and when ``agent.info`` was answered (the daemon
served it): the answer is the figure of issue 17's bar 6.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]

from agent_process import (  # noqa: E402
    ORIGIN,
    AgentProcess,
    StartTimes,
    process_cpu,
    rpc,
    write_files,
)
from idle import cpu_seconds  # noqa: E402
from run import agent_env, anonymous_kib  # noqa: E402
from testbed.pki import build_pki  # noqa: E402
from testbed.softhsm import build_softhsm  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402


class PageStart(AgentProcess):
    """A start timed as a page meets it: connecting to the configured ws port from the
    spawn on, not waiting for runtime.json. ``first_connection`` is the answer;
    ``tcp_accepted`` when the kernel first accepted the TCP connection."""

    tcp_accepted = 0.0

    async def start(self) -> StartTimes:
        loop = asyncio.get_running_loop()
        t0 = self.spawn()
        while True:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, ("127.0.0.1", self.port))
                break
            except OSError:
                sock.close()
                await asyncio.sleep(0.002)
            if self.process.poll() is not None:
                raise RuntimeError(f"the agent exited with {self.process.returncode}")
        self.tcp_accepted = time.perf_counter() - t0
        async with connect(f"ws://127.0.0.1:{self.port}/v1", sock=sock, origin=ORIGIN,
                           max_size=None, compression=None, open_timeout=60) as ws:
            await rpc(ws, "agent.info")
        t_conn = time.perf_counter() - t0
        cpu_conn = process_cpu(self.process.pid)
        info = await self._poll(lambda i: "stores_ready" in (i or {}).get("timings", {}))
        t_ready = time.perf_counter() - t0
        return StartTimes(t_conn, t_conn, t_ready, dict(info["timings"]), cpu_conn)


def _free_port_pair() -> tuple[int, int]:
    """Two ports nothing listens on now (wss, ws), for configs with fixed ports."""
    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(int(probe.getsockname()[1]))
    return ports[0], ports[1]


async def measure(base: Path, starts: int, importtime: bool, page: bool) -> None:
    bed = build_softhsm(base / "softhsm", build_pki())
    spec = bed.tokens["A"]
    config, policy = write_files(base, bed.module, bed.identity("ec_sign").common_name,
                                 spec.pin)
    ws_port = 0
    if page:
        wss_port, ws_port = _free_port_pair()
        text = config.read_text(encoding="utf-8")
        config.write_text(text.replace("wss_port = 0\nws_port = 0\n",
                                       f"wss_port = {wss_port}\nws_port = {ws_port}\n"
                                       "port_range = 1\n"), encoding="utf-8")
    conn, ready, inside_listen, inside_ready, cpu, pss, anon = [], [], [], [], [], [], []
    cpu_conn, tcp = [], []
    for i in range(starts + 1):
        prefix = ["-X", "importtime"] if importtime and i == starts else []
        kind_of = PageStart if page else AgentProcess
        agent = kind_of(base / "start", config, policy, agent_env(bed, base), prefix=prefix)
        agent.port = ws_port
        try:
            times = await agent.start()
            assert agent.process is not None
            cpu_s = cpu_seconds(agent.process.pid)
            await asyncio.sleep(1.0)
            kind = "first run" if i == 0 else "restart"
            p, a = agent.pss_kib(), anonymous_kib(agent)
            accepted = (f"TCP accepted {agent.tcp_accepted * 1000:.0f} ms, "
                        if isinstance(agent, PageStart) else "")
            print(f"{kind}: {accepted}first connection {times.first_connection * 1000:.0f} ms, "
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
                if isinstance(agent, PageStart):
                    tcp.append(agent.tcp_accepted)
        finally:
            agent.stop()
    med = statistics.median
    accepted = f"TCP accepted {med(tcp) * 1000:.1f} ms, " if tcp else ""
    print(f"restarts, median of {starts}: {accepted}first connection {med(conn) * 1000:.1f} ms "
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
    parser.add_argument("--page", action="store_true",
                        help="connect as a page does: fixed ports, from the spawn on")
    args = parser.parse_args()
    if args.keep:
        base = Path(args.keep)
        base.mkdir(parents=True, exist_ok=True)
        asyncio.run(measure(base, args.starts, args.importtime, args.page))
        return 0
    with tempfile.TemporaryDirectory(prefix="imza-startup-") as tmp:
        asyncio.run(measure(Path(tmp), args.starts, args.importtime, args.page))
    return 0


if __name__ == "__main__":
    sys.exit(main())
