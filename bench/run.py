"""Performance bench of the agent against raw python-pkcs11 on the same SoftHSM token.

    .venv/bin/python bench/run.py [--quick] [--json results.json] [--no-profile]

Builds the test bed (two SoftHSM tokens, test PKI) in a temporary directory, measures the
raw token, then starts real `imza-agent run --headless` daemons and measures them from a
WebSocket client, measures one daemon in desktop mode under Xvfb (its Qt UI process's
memory next to its own, bench/ui_process.py), watches an idle daemon (bench/idle.py), and
finally profiles the daemon's per-signature path with cProfile. The soak
(bench/soak.py, about ten minutes) runs on its own.
Prints one table; docs/performance.md records a run. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]

from agent_process import AgentProcess, StartTimes, _tree, rpc, write_files  # noqa: E402
from idle import cpu_seconds, measure_idle  # noqa: E402
from idle import rows as idle_rows  # noqa: E402
from raw_pkcs11 import RawKey, RawSigner  # noqa: E402
from testbed.pki import build_pki  # noqa: E402
from testbed.softhsm import build_softhsm  # noqa: E402
from ui_process import measure as measure_ui  # noqa: E402
from ui_process import rows as ui_rows  # noqa: E402

IDENTITIES = {"RSA-2048": "rsa_sign", "P-256": "ec_sign"}


@dataclass(frozen=True)
class Sizes:
    rsa_singles: int
    ec_singles: int     # rsa_singles + ec_singles = signatures before "after N" memory
    raw_loop: int
    batch_size: int
    batch_reps: int
    starts: int
    warm_lists: int
    info_seconds: float
    profiled: int
    idle_seconds: float


FULL = Sizes(rsa_singles=400, ec_singles=1600, raw_loop=400, batch_size=1000, batch_reps=5,
             starts=5, warm_lists=100, info_seconds=2.0, profiled=500, idle_seconds=60.0)
QUICK = Sizes(rsa_singles=50, ec_singles=150, raw_loop=50, batch_size=1000, batch_reps=1,
              starts=2, warm_lists=10, info_seconds=0.5, profiled=100, idle_seconds=5.0)

# The bars (issue 17), printed next to each figure.
BAR_PSS_MIB = 45.0
BAR_FIRST_CONNECTION = 0.200
BAR_STORES_READY = 0.300
BAR_BATCH = 1.15
BAR_OVERHEAD = 0.001


# --- statistics ------------------------------------------------------------------------------

def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def p99(xs: Sequence[float]) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[98] if len(xs) > 1 else xs[0]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def mem(kib: list[int]) -> str:
    """Total MiB, then the daemon's and each worker's share."""
    parts = " + ".join(f"{k / 1024:.1f}" for k in kib)
    return f"{sum(kib) / 1024:.1f} MiB ({parts}: daemon + workers)"


def anonymous_kib(agent: AgentProcess) -> list[int]:
    """Anonymous memory (heap, Python objects, stacks; no file-backed pages) in KiB of the
    daemon, then of each process below it. PSS, and even USS, move with how many other
    processes map the same libraries; this does not."""
    assert agent.process is not None
    out = []
    for pid in _tree(agent.process.pid):
        total = 0
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except (FileNotFoundError, ProcessLookupError):  # a child that ended meanwhile
            rollup = ""
        for line in rollup.splitlines():
            if line.startswith("Anonymous:"):
                total += int(line.split()[1])
        out.append(total)
    return out


def hashes(n: int) -> list[bytes]:
    return [os.urandom(32) for _ in range(n)]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- the machine -----------------------------------------------------------------------------

def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    try:
        softhsm = subprocess.run(["softhsm2-util", "--version"], capture_output=True,
                                 text=True, check=False).stdout.strip()
    except OSError:
        softhsm = "not found"
    import pkcs11
    import websockets
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "memory": f"{mem_kib / 1048576:.1f} GiB",
            "os": platform.platform(), "python": platform.python_version(),
            "load average at start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
            "softhsm": softhsm, "python-pkcs11": getattr(pkcs11, "__version__", "0.10.x"),
            "websockets": str(getattr(websockets, "__version__", "unknown"))}


HEAVY = ("pyhanko", "pyhanko_certvalidator", "tkinter", "PySide6", "lxml", "signxml",
         "pkcs11")
_IMPORT_PROBE = (
    "import sys\n"
    "from agent.protocol.dispatch import Dispatcher\n"
    "from agent.methods import register_all\n"
    "import agent.daemon.run, agent.daemon.runtime, agent.tls.material\n"
    # The method modules only keep the services for their calls: None is enough to
    # import and register them.
    "register_all(Dispatcher(), None)\n"
    f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n")


def heavy_imports() -> str:
    """Heavy packages the daemon imports before it listens (same imports as `run`)."""
    done = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], cwd=REPO, text=True,
                          capture_output=True, check=False)
    if done.returncode != 0:
        return f"probe failed: {done.stderr.strip().splitlines()[-1:]}"
    return done.stdout.strip() or "none"


# --- raw baseline ----------------------------------------------------------------------------

def raw_baseline(bed: Any, sizes: Sizes) -> dict[str, Any]:
    spec = bed.tokens["A"]
    signer = RawSigner(bed.module, spec.label, spec.pin)
    out: dict[str, Any] = {}
    try:
        for name, identity in IDENTITIES.items():
            key = RawKey(name, bed.objects[identity].key_id, rsa=name.startswith("RSA"))
            out[name] = {
                "logged_in": signer.logged_in_loop(key, hashes(sizes.raw_loop)),
                "login_sign_logout": signer.login_sign_logout_loop(key, hashes(sizes.raw_loop)),
            }
        ec = RawKey("P-256", bed.objects["ec_sign"].key_id, rsa=False)
        out["batch"] = [signer.logged_in_batch(ec, hashes(sizes.batch_size))
                        for _ in range(sizes.batch_reps)]
    finally:
        signer.close()
    return out


# --- the daemon ------------------------------------------------------------------------------

async def handles(ws: Any, bed: Any) -> dict[str, str]:
    """Handles are per connection: list on the connection that will sign."""
    listed = await rpc(ws, "certificates.list", {"purpose": "sign"})
    by_der = {c["certificate"]: c["handle"] for c in listed["certificates"]}
    return {name: by_der[b64(bed.identity(identity).der)]
            for name, identity in IDENTITIES.items()}


async def sign_loop(ws: Any, handle: str, digests: list[bytes]) -> list[float]:
    samples = []
    for digest in digests:
        start = time.perf_counter()
        await rpc(ws, "sign.hash", {"handle": handle, "hash": b64(digest),
                                    "hashAlgorithm": "SHA-256"})
        samples.append(time.perf_counter() - start)
    return samples


def agent_env(bed: Any, base: Path) -> dict[str, str]:
    """The bed's variables and a HOME of the bench's own: a daemon's first start installs
    its local CA into the browsers' certificate stores under HOME, which must not be the
    user's (nor grow with every bench run, which made each later start slower)."""
    home = base / "user-home"
    home.mkdir(exist_ok=True)
    return {**bed.env, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local/share")}


async def starts(paths: tuple[Path, Path], bed: Any, base: Path,
                 sizes: Sizes) -> list[dict[str, Any]]:
    """Daemons started one after the other on one data directory: the first is a first
    run (TLS material made, its CA installed in the browsers' stores), the rest are the
    restarts a person meets at every login. Start-up times and the first (cold)
    certificates.list of each."""
    runs = []
    for i in range(sizes.starts + 1):
        agent = AgentProcess(base / "start", *paths, agent_env(bed, base))
        try:
            times = await agent.start()
            assert agent.process is not None
            # CPU rather than wall time: what a busy machine cannot inflate much.
            cpu = cpu_seconds(agent.process.pid)
            async with agent.connect() as ws:
                t = time.perf_counter()
                await rpc(ws, "certificates.list", {"purpose": "sign"})
                cold = time.perf_counter() - t
            runs.append({"times": times, "cold_list": cold, "first_run": i == 0, "cpu": cpu})
        finally:
            agent.stop()
    return runs


async def main_run(paths: tuple[Path, Path], bed: Any, base: Path,
                   sizes: Sizes) -> dict[str, Any]:
    agent = AgentProcess(base / "main", *paths, agent_env(bed, base))
    out: dict[str, Any] = {}
    try:
        await agent.start()
        await asyncio.sleep(1.0)
        out["pss_idle"] = agent.pss_kib()
        out["anon_idle"] = anonymous_kib(agent)
        async with agent.connect() as ws:
            keyed = await handles(ws, bed)
            out["warm_list"] = []
            for _ in range(sizes.warm_lists):
                t = time.perf_counter()
                await rpc(ws, "certificates.list", {"purpose": "sign"})
                out["warm_list"].append(time.perf_counter() - t)
            count, t = 0, time.perf_counter()
            while time.perf_counter() - t < sizes.info_seconds:
                await rpc(ws, "agent.info")
                count += 1
            out["info_per_second"] = count / (time.perf_counter() - t)
            await sign_loop(ws, keyed["P-256"], hashes(5))  # warm-up (caches, worker)
            out["RSA-2048"] = await sign_loop(ws, keyed["RSA-2048"], hashes(sizes.rsa_singles))
            out["P-256"] = await sign_loop(ws, keyed["P-256"], hashes(sizes.ec_singles))
            out["signed"] = sizes.rsa_singles + sizes.ec_singles + 5
            out["pss_after_singles"] = agent.pss_kib()
            out["batch"] = []
            for _ in range(sizes.batch_reps):
                batch = [b64(h) for h in hashes(sizes.batch_size)]
                t = time.perf_counter()
                result = await rpc(ws, "sign.hashes", {"handle": keyed["P-256"],
                                                       "hashes": batch,
                                                       "hashAlgorithm": "SHA-256"})
                out["batch"].append(time.perf_counter() - t)
                assert len(result["signatures"]) == sizes.batch_size
            out["pss_after_batches"] = agent.pss_kib()
    finally:
        agent.stop()
    return out


async def journal_off_run(paths: tuple[Path, Path], bed: Any, base: Path,
                          sizes: Sizes) -> list[float]:
    """P-256 sign.hash with ``[journal] enabled = false``: what the journal costs."""
    agent = AgentProcess(base / "no-journal", *paths, agent_env(bed, base))
    try:
        await agent.start()
        async with agent.connect() as ws:
            keyed = await handles(ws, bed)
            await sign_loop(ws, keyed["P-256"], hashes(5))
            return await sign_loop(ws, keyed["P-256"], hashes(sizes.profiled))
    finally:
        agent.stop()


async def profile_run(paths: tuple[Path, Path], bed: Any, base: Path,
                      sizes: Sizes) -> pstats.Stats:
    """The daemon under cProfile, signing P-256 hashes one request at a time."""
    prof = base / "daemon.prof"
    agent = AgentProcess(base / "profiled", *paths, agent_env(bed, base),
                         prefix=[str(REPO / "bench" / "profile_daemon.py"), str(prof)])
    try:
        await agent.start()
        async with agent.connect() as ws:
            keyed = await handles(ws, bed)
            await sign_loop(ws, keyed["P-256"], hashes(sizes.profiled))
    finally:
        agent.stop()  # SIGTERM: the daemon's exit hook writes the profile
    return pstats.Stats(str(prof))


# Start-up work (imports) and waiting, not the per-signature path.
_NOT_PER_REQUEST = ("<method 'poll' of 'select.epoll' objects>",
                    "<built-in method builtins.compile>", "<built-in method builtins.exec>",
                    "<built-in method marshal.loads>",
                    "<built-in method builtins.__build_class__>", "_get_module_lock",
                    "<built-in method _imp.create_dynamic>", "_optimize_charset", "_parse",
                    "_run_once", "select")


def top_costs(stats: pstats.Stats, n: int = 12) -> list[tuple[str, float, float, int]]:
    """(function, own seconds, cumulative seconds, calls): the largest own times, then
    the agent's own functions by cumulative time (coroutines: time while running)."""
    own, agent = [], []
    for (file, line, func), (_cc, calls, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if func in _NOT_PER_REQUEST or file.startswith("<frozen"):
            continue
        where = file.replace(str(REPO) + "/", "").replace(sys.base_prefix, "<python>")
        row = (f"{where}:{line}({func})", tt, ct, calls)
        own.append(row)
        if where.startswith("agent/") and func not in ("<module>", "main", "run_daemon"):
            agent.append(row)
    own.sort(key=lambda r: r[1], reverse=True)
    agent.sort(key=lambda r: r[2], reverse=True)
    return [*own[:n], ("— agent functions by cumulative time —", 0.0, 0.0, 0), *agent[:n]]


# --- report ----------------------------------------------------------------------------------

def report(info: dict[str, str], raw: dict[str, Any], runs: list[dict[str, Any]],
           main: dict[str, Any], sizes: Sizes) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for name in IDENTITIES:
        agent, base = main[name], raw[name]["logged_in"]
        lsl = raw[name]["login_sign_logout"]
        rows += [
            (f"{name} raw sign, logged-in session (median / p99)",
             f"{ms(median(base))} / {ms(p99(base))}", ""),
            (f"{name} raw open+login+sign+logout (median / p99)",
             f"{ms(median(lsl))} / {ms(p99(lsl))}", ""),
            (f"{name} sign.hash via agent (median / p99)",
             f"{ms(median(agent))} / {ms(p99(agent))}", ""),
            (f"{name} overhead vs logged-in raw (median / p99)",
             f"{ms(median(agent) - median(base))} / {ms(p99(agent) - p99(base))}",
             ""),
            (f"{name} overhead vs raw login+sign+logout (median / p99)",
             f"{ms(median(agent) - median(lsl))} / {ms(p99(agent) - p99(lsl))}",
             "≤ 1 ms median, ≤ 3 ms p99: " + (
                 "met" if median(agent) - median(lsl) <= BAR_OVERHEAD
                 and p99(agent) - p99(lsl) <= 3 * BAR_OVERHEAD else "NOT met")),
        ]
    rows.append(("round trips / s, one connection (agent.info)",
                 f"{main['info_per_second']:.0f} /s", ""))
    rows.append(("sign.hash / s, one connection (P-256)",
                 f"{1 / statistics.mean(main['P-256']):.0f} /s", ""))
    raw_b, agent_b = median(raw["batch"]), median(main["batch"])
    rows.append((f"sign.hashes {sizes.batch_size} × P-256: agent / raw loop",
                 f"{ms(agent_b)} / {ms(raw_b)} = {agent_b / raw_b:.2f}×",
                 f"≤ {BAR_BATCH}×: " + ("met" if agent_b <= BAR_BATCH * raw_b else "NOT met")))
    rows.append(("P-256 sign.hash via agent, journal disabled (median)",
                 ms(median(main["no_journal"])), ""))
    rows.append(("PSS daemon + workers, idle", mem(main["pss_idle"]),
                 f"≤ {BAR_PSS_MIB:.0f} MiB: "
                 + ("met" if sum(main["pss_idle"]) / 1024 <= BAR_PSS_MIB else "NOT met")))
    rows.append(("anonymous memory (no shared libraries) daemon + workers, idle",
                 mem(main["anon_idle"]), ""))
    rows.append((f"PSS after {main['signed']} sign.hash", mem(main["pss_after_singles"]), ""))
    rows.append((f"PSS after also {sizes.batch_reps} × sign.hashes({sizes.batch_size})",
                 mem(main["pss_after_batches"]), ""))
    first_run = next(r["times"] for r in runs if r["first_run"])
    times: list[StartTimes] = [r["times"] for r in runs if not r["first_run"]]
    first = [t.first_connection for t in times]
    ready = [t.stores_ready for t in times]
    rows.append((f"restart → first accepted connection, outside (median of {len(times)})",
                 f"{ms(median(first))} (max {ms(max(first))})",
                 f"≤ {BAR_FIRST_CONNECTION * 1000:.0f} ms: "
                 + ("met" if median(first) <= BAR_FIRST_CONNECTION else "NOT met")))
    rows.append(("restart: daemon CPU from spawn to its first answer (median; the machine's "
                 "load stretches it much less than the wall clock)",
                 ms(median([t.cpu_at_connection for t in times])), ""))
    rows.append(("restart: daemon CPU from spawn to stores ready (median; the machine's load "
                 "does not stretch it)",
                 ms(median([r["cpu"] for r in runs if not r["first_run"]])), ""))
    rows.append(("restart → listening, inside (runtime.json timings, median)",
                 ms(median([t.inside["listening"] for t in times])), ""))
    rows.append(("restart → token stores ready, outside / inside (median)",
                 f"{ms(median(ready))} / "
                 f"{ms(median([t.inside['stores_ready'] for t in times]))}",
                 f"≤ {BAR_STORES_READY * 1000:.0f} ms: "
                 + ("met" if median(ready) <= BAR_STORES_READY else "NOT met")))
    rows.append(("first run (new TLS material, CA into the browsers' stores): first "
                 "connection / stores ready, outside",
                 f"{ms(first_run.first_connection)} / {ms(first_run.stores_ready)}", ""))
    rows.append((f"heavy imports on the start-up path ({', '.join(HEAVY)})",
                 info["heavy_imports"], "none: " + (
                     "met" if info["heavy_imports"] == "none" else "NOT met")))
    cold = [r["cold_list"] for r in runs if not r["first_run"]]
    rows.append((f"certificates.list cold, first after start (median of {len(cold)})",
                 ms(median(cold)), ""))
    rows.append(("certificates.list warm (median / p99)",
                 f"{ms(median(main['warm_list']))} / {ms(p99(main['warm_list']))}", ""))
    return rows


def print_table(info: dict[str, str], rows: list[tuple[str, str, str]],
                costs: list[tuple[str, float, float, int]] | None, profiled: int) -> None:
    print("\nMachine: " + "; ".join(f"{k} {v}" for k, v in info.items()
                                    if k != "heavy_imports"))
    width = max(len(r[0]) for r in rows)
    print(f"\n| {'measure':<{width}} | value | bar |\n|{'-' * (width + 2)}|---|---|")
    for what, value, bar in rows:
        print(f"| {what:<{width}} | {value} | {bar} |")
    if costs:
        print(f"\nDaemon profile, {profiled} × sign.hash P-256 (cProfile; own time):")
        print("| function | own s | cumulative s | calls |\n|---|---|---|---|")
        for func, tt, ct, calls in costs:
            print(f"| {func} | {tt:.3f} | {ct:.3f} | {calls} |")


async def bench(args: argparse.Namespace) -> int:
    sizes = QUICK if args.quick else FULL
    info = machine()
    info["heavy_imports"] = heavy_imports()
    with tempfile.TemporaryDirectory(prefix="imza-bench-") as tmp:
        base = Path(tmp)
        t = time.perf_counter()
        bed = build_softhsm(base / "softhsm", build_pki())
        print(f"test bed built in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        spec = bed.tokens["A"]
        holder = bed.identity("ec_sign").common_name
        paths = write_files(base, bed.module, holder, spec.pin)
        paths_no_journal = write_files(base, bed.module, holder, spec.pin, journal=False,
                                       name="config-no-journal")
        raw = raw_baseline(bed, sizes)
        print("raw baseline done", file=sys.stderr)
        runs = await starts(paths, bed, base, sizes)
        print("start-up runs done", file=sys.stderr)
        main = await main_run(paths, bed, base, sizes)
        main["no_journal"] = await journal_off_run(paths_no_journal, bed, base, sizes)
        print("main run done", file=sys.stderr)
        ui = None if args.no_ui else await measure_ui(bed, base, paths[1])
        print("desktop run done", file=sys.stderr)
        idle = await measure_idle(paths, agent_env(bed, base), base, sizes.idle_seconds)
        print("idle run done", file=sys.stderr)
        costs = None
        if not args.no_profile:
            try:
                costs = top_costs(await profile_run(paths, bed, base, sizes))
            except (OSError, RuntimeError) as exc:  # the figures above still count
                print(f"the profile run failed: {exc}", file=sys.stderr)
        rows = (report(info, raw, runs, main, sizes) + idle_rows(idle)
                + (ui_rows(ui) if ui else []))
        info["load average at end"] = " ".join(
            Path("/proc/loadavg").read_text().split()[:3])
        print_table(info, rows, costs, sizes.profiled)
        if args.json:
            Path(args.json).write_text(json.dumps(
                {"machine": info, "rows": rows, "profile": costs}, ensure_ascii=False,
                indent=1), encoding="utf-8")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    parser.add_argument("--no-ui", action="store_true",
                        help="skip the desktop-mode run (needs Xvfb and xdotool)")
    return asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
