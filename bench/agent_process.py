"""The agent as the bench meets it: a real `imza-agent run --headless` subprocess.

Starting it is timed from outside (spawn → runtime.json → first answered ``agent.info``)
and its memory is the PSS of the daemon and every process below it (the PKCS#11 workers).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

REPO = Path(__file__).resolve().parent.parent
ORIGIN = "https://bench.example"
START_TIMEOUT = 60.0


def write_files(base: Path, module: Path, holder: str, pin: str, *,
                journal: bool = True, name: str = "config") -> tuple[Path, Path]:
    """Config (ports 0, SoftHSM only, scripted UI, no rate limit) and a system policy that
    grants the bench origin everything it uses, so no consent dialog is ever shown."""
    answers = base / "answers.json"
    answers.write_text(json.dumps({"consent": "always", "certificate": {"holder": holder},
                                   "pin": pin}, ensure_ascii=False), encoding="utf-8")
    config = base / f"{name}.toml"
    config.write_text(
        "[server]\nwss_port = 0\nws_port = 0\nws_enabled = true\n"
        # The limiter protects users from pages; the bench is one page on purpose.
        "rate_per_second = 1000000.0\nrate_burst = 1000000\n"
        f"[tokens]\nknown_modules = false\nmodules = [{json.dumps(str(module))}]\n"
        f"[ui]\nbackend = \"scripted\"\nanswers_file = {json.dumps(str(answers))}\n"
        f"[journal]\nenabled = {'true' if journal else 'false'}\n",
        encoding="utf-8")
    policy = base / "policy.toml"
    policy.write_text(f"[[allow]]\norigins = [{json.dumps(ORIGIN)}]\n"
                      "permissions = [\"select\", \"sign\", \"list\", \"tokens\"]\n",
                      encoding="utf-8")
    return config, policy


@dataclass
class StartTimes:
    runtime_file: float        # spawn → runtime.json with ports (outside view)
    first_connection: float    # spawn → first agent.info answered (outside view)
    stores_ready: float        # spawn → runtime.json shows stores_ready (outside view)
    inside: dict[str, float] = field(default_factory=dict)  # runtime.json "timings"
    # The daemon's CPU (user + system, all its threads) when its first answer arrived:
    # what a busy machine stretches much less than the wall-clock figures above.
    cpu_at_connection: float = 0.0


class AgentProcess:
    def __init__(self, home: Path, config: Path, policy: Path, env: dict[str, str],
                 prefix: Sequence[str] = ()) -> None:
        self.home = home
        self.config = config
        self.env = {**os.environ, **env, "IMZA_AGENT_HOME": str(home),
                    "IMZA_AGENT_SYSTEM_POLICY": str(policy)}
        self.prefix = list(prefix)  # e.g. ["-m", "cProfile", "-o", file]
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def _runtime(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.home / "runtime.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None

    def spawn(self) -> float:
        """Starts ``imza-agent run --headless`` (its log next to its home); the
        ``perf_counter`` of the spawn."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "runtime.json").unlink(missing_ok=True)
        log = (self.home.parent / f"{self.home.name}.log").open("ab")
        t0 = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, *self.prefix, "-m", "agent.cli", "--config", str(self.config),
             "run", "--headless"], cwd=REPO, env=self.env, stdout=log,
            stderr=subprocess.STDOUT)
        log.close()
        return t0

    async def start(self) -> StartTimes:
        t0 = self.spawn()
        info = await self._poll(lambda i: bool(i and i.get("ports")))
        t_file = time.perf_counter() - t0
        self.port = int(info["ports"]["ws"])
        while True:  # the first connection the agent accepts and answers
            try:
                async with self.connect() as ws:
                    await rpc(ws, "agent.info")
                break
            except OSError:
                await asyncio.sleep(0.002)
        t_conn = time.perf_counter() - t0
        cpu_conn = process_cpu(self.process.pid)
        info = await self._poll(lambda i: "stores_ready" in (i or {}).get("timings", {}))
        t_ready = time.perf_counter() - t0
        return StartTimes(t_file, t_conn, t_ready, dict(info["timings"]), cpu_conn)

    async def _poll(self, done: Any) -> dict[str, Any]:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.home.parent / f"{self.home.name}.log").read_text(errors="replace")
                raise RuntimeError(f"the agent exited with {self.process.returncode}:\n"
                                   + log[-3000:])
            info = self._runtime()
            if done(info):
                return info  # type: ignore[return-value]
            await asyncio.sleep(0.002)
        raise RuntimeError("the agent did not start in time")

    def connect(self) -> Any:
        return connect(f"ws://127.0.0.1:{self.port}/v1", origin=ORIGIN, max_size=None,
                       compression=None)

    def pss_kib(self) -> list[int]:
        """PSS in KiB of the daemon, then of each descendant (the PKCS#11 workers)."""
        assert self.process is not None
        return [_pss_kib(pid) for pid in _tree(self.process.pid)]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def process_cpu(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo.extend(int(c) for c in task.read_text().split())
            except (FileNotFoundError, ProcessLookupError):  # a thread that ended
                continue
    return pids


def _pss_kib(pid: int) -> int:
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError):  # a child that ended meanwhile
        return 0
    for line in rollup.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


_ids = iter(range(1, 1 << 62))


async def rpc(ws: ClientConnection, method: str, params: dict[str, Any] | None = None) -> Any:
    """One request, one answer (the bench never has two in flight on a connection)."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": next(_ids), "method": method}
    if params is not None:
        message["params"] = params
    await ws.send(json.dumps(message))
    answer = json.loads(await ws.recv())
    if "error" in answer:
        raise RuntimeError(f"{method}: {answer['error']}")
    return answer["result"]
