"""Idle is idle (issue 17, bar 7): with no page connected and no card event the daemon asks
its PKCS#11 workers nothing, and its start-up path loads none of the heavy packages.

Worker traffic is counted where it cannot be missed: a PKCS#11 worker blocks in one read
on its pipe between requests, so the read system calls in ``/proc/<worker>/io`` move only
when the daemon asks it something. The page that subscribes to ``tokens.changed`` is the
positive control: the same count moves at once then.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon import NO_KEYRING, Daemon
from testbed import SoftHsmBed

from agent.config import Config
from agent.daemon.token_watch import TokenSnapshot, TokenWatch
from agent.keystores.manager import StoreManager

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon]

REPO = Path(__file__).resolve().parent.parent
GOV = "https://www.e-gov.az"  # granted "tokens" by the tests' policy
POLL = 0.1  # a short poll interval: a poll left running shows within a second
QUIET = 2.0  # seconds of silence demanded (20 poll intervals)
WAIT = 15.0  # generous, never asserted on
# Never imported by a daemon that merely started: they load with the first document or
# dialog, in other processes (PKCS#11 worker, document worker, Qt UI process) or not at all.
HEAVY = ("pyhanko", "pyhanko_certvalidator", "lxml", "signxml", "PySide6", "tkinter",
         "pystray", "pkcs11", "pypdfium2")
# Loaded when first needed, not by a start with only PKCS#11 modules configured (issue 17:
# start-up time and idle memory): asn1crypto with the demo identity or a PKCS#12 file,
# multiprocessing with the first costly frame (agent/transport/session.py FrameParser).
NOT_BEFORE_USE = ("asn1crypto", "multiprocessing")


def reads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("syscr:"):
            return int(line.split()[1])
    raise AssertionError(f"no syscr in /proc/{pid}/io")


def workers_of(daemon: int) -> list[int]:
    """The live PKCS#11 worker processes started by ``daemon``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if (int(stat.rsplit(")", 1)[1].split()[1]) == daemon
                and b"agent.keystores.pkcs11.worker" in cmdline):
            found.append(int(entry.name))
    return found


def worker_reads(pids: list[int]) -> int:
    return sum(reads(pid) for pid in pids)


async def reads_move(pids: list[int], since: int) -> bool:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if worker_reads(pids) > since:
            return True
        await asyncio.sleep(0.05)
    return False


async def settled(pids: list[int]) -> None:
    """Wait (at most WAIT) until the workers' read count has not moved for 5 polls."""
    deadline = time.monotonic() + WAIT
    last, since = worker_reads(pids), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < 5 * POLL:
        await asyncio.sleep(POLL / 2)
        now = worker_reads(pids)
        if now != last:
            last, since = now, time.monotonic()


@pytest.fixture
def idle_daemon(softhsm: SoftHsmBed, tmp_path: Path) -> Iterator[Daemon]:
    # No PC/SC: the case where nothing but a page could make the agent look at tokens.
    daemon = Daemon(home=tmp_path / "home", modules=[softhsm.module], env=softhsm.env,
                    config={"tokens": {"poll_interval": POLL}, "pcsc": {"enabled": False}})
    daemon.start()
    yield daemon
    daemon.stop()


async def test_an_idle_daemon_asks_its_workers_nothing_until_a_page_subscribes(
        idle_daemon: Daemon) -> None:
    assert idle_daemon.process is not None
    pids = workers_of(idle_daemon.process.pid)
    assert pids, "the stores' first look starts the SoftHSM worker"
    before = worker_reads(pids)
    await asyncio.sleep(QUIET)
    assert worker_reads(pids) == before, "a worker was asked something with nobody there"

    async with idle_daemon.client(GOV) as page:
        await page.call("tokens.subscribe")
        subscribed = worker_reads(pids)
        # The positive control: a subscribed page gets the periodic look, and the count
        # sees it.
        assert await reads_move(pids, subscribed)
    # The page has gone: once the daemon has seen it go (a look may be in flight), the
    # workers fall silent; a poll left running never would, and fails below.
    await settled(pids)
    after = worker_reads(pids)
    await asyncio.sleep(QUIET)
    assert worker_reads(pids) == after
    assert workers_of(idle_daemon.process.pid) == pids  # the same worker throughout


async def test_a_listener_needs_no_looks_while_card_events_flow(softhsm: SoftHsmBed,
                                                                 agent_home: Path) -> None:
    """The tray follows the token watch as a listener: while PC/SC events reach the watch
    it asks the workers nothing; when they stop (the service went down) it looks again."""
    config = Config.model_validate({"tokens": {"known_modules": False,
                                               "modules": [str(softhsm.module)]}})
    stores = StoreManager.from_config(config, env=softhsm.env)
    flowing = [True]

    async def no_pages(_tokens: object) -> None:
        raise AssertionError("no page subscribed")

    watch = TokenWatch(stores, no_pages, pages_watching=lambda: False,
                       card_events=lambda: flowing[0])
    seen: list[TokenSnapshot] = []
    watch.subscribe(seen.append)
    loop = asyncio.create_task(watch.run(POLL))
    try:
        first = await watch.refresh()  # the start-up look
        assert any(t.label == "Rəqəmsal İmza A" for t in first.tokens)
        pids = workers_of(os.getpid())
        assert pids
        before, looks = worker_reads(pids), watch.looks
        await asyncio.sleep(QUIET)
        assert (worker_reads(pids), watch.looks) == (before, looks)

        flowing[0] = False  # the smart card service stopped answering
        assert await reads_move(pids, before)
        assert watch.looks > looks and len(seen) > 1
    finally:
        loop.cancel()
        await stores.close()


_STARTED = """
import json, os, signal, sys, threading, time
from pathlib import Path

home, out, config = Path(os.environ["IMZA_AGENT_HOME"]), Path(sys.argv[1]), sys.argv[2]

def when_ready():
    while True:
        try:
            info = json.loads((home / "runtime.json").read_text(encoding="utf-8"))
            if "stores_ready" in info.get("timings", {}):
                break
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.05)
    time.sleep(0.5)
    out.write_text(json.dumps(sorted(sys.modules)), encoding="utf-8")
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=when_ready, daemon=True).start()
from agent.cli import main
sys.exit(main(["--config", config, "run", "--headless"]))
"""


def test_a_started_daemon_has_loaded_no_heavy_package(softhsm: SoftHsmBed,
                                                       tmp_path: Path) -> None:
    """The real `run --headless` start path, up to "key stores ready": the module list of
    that very process."""
    daemon = Daemon(home=tmp_path / "home", modules=[softhsm.module], env=softhsm.env)
    daemon.home.mkdir(parents=True)
    daemon.config_file.write_text(daemon._config_text(), encoding="utf-8")
    daemon.set_answers({})
    policy = tmp_path / "policy.toml"
    policy.write_text("", encoding="utf-8")
    user = tmp_path / "user"
    user.mkdir()
    out = tmp_path / "modules.json"
    env = {**os.environ, **softhsm.env, "HOME": str(user), "IMZA_AGENT_HOME": str(daemon.home),
           "XDG_CONFIG_HOME": str(user / ".config"), "XDG_DATA_HOME": str(user / ".local"),
           "PYTHON_KEYRING_BACKEND": NO_KEYRING, "IMZA_AGENT_SYSTEM_POLICY": str(policy)}
    done = subprocess.run([sys.executable, "-c", _STARTED, str(out), str(daemon.config_file)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert out.is_file(), done.stderr[-3000:]
    modules = set(json.loads(out.read_text(encoding="utf-8")))
    # Not vacuous: the dump is of a daemon that served and listed its stores.
    assert {"agent.daemon.runtime", "agent.keystores.manager", "websockets"} <= modules
    loaded = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert loaded == [], f"heavy packages on the start path: {loaded}"
    early = sorted(m for m in modules if m.split(".")[0] in NOT_BEFORE_USE)
    assert early == [], f"loaded before their first use: {early}"
    assert done.returncode in (0, -signal.SIGTERM), done.stderr[-3000:]


_WORKER_IMPORTS = """
import json, sys
from agent.keystores.pkcs11 import worker_ops
print(json.dumps({"modules": sorted(sys.modules), "pack": worker_ops._PACK}))
"""


def test_the_pkcs11_worker_learns_its_struct_packing_without_the_platform_layer(
        softhsm: SoftHsmBed) -> None:
    """The worker (one interpreter per module, alive while the daemon idles) gets the
    Cryptoki packing from the daemon: it imports python-pkcs11 and the stdlib it needs,
    not the platform layer and with it asyncio."""
    from agent.keystores.pkcs11.store import Pkcs11Store
    from agent.platform import current

    env = Pkcs11Store(softhsm.module, env=softhsm.env).worker._worker_env()
    done = subprocess.run([sys.executable, "-c", _WORKER_IMPORTS], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(done.stdout)
    modules = set(seen["modules"])
    assert "pkcs11" in modules  # not vacuous: the worker's own imports happened
    assert not {"asyncio", "agent.platform.linux", "agent.platform.base"} & modules
    pack = current().pkcs11_pack
    assert seen["pack"] == ({"_pack_": pack} if pack else {})
