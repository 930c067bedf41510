"""Issue 11 §3: another program (here: user ``nobody``) holding one of the agent's ports.

Before: the agent died at start with a traceback, and pages fell back to the squatter over
``ws://``. Now a taken port costs only its transport: the agent serves the others, logs one
line, and runtime.json and ``imza-agent doctor`` say which port is taken. Plain ``ws://``
is served only when the configuration enables it (off by default) and the policy allows it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon import REPO, Daemon

from agent.config import ServerConfig

pytestmark = [pytest.mark.daemon]

SQUATTER = (
    "import socket, sys, time\n"
    "s = socket.socket()\n"
    "s.bind(('127.0.0.1', int(sys.argv[1])))\n"
    "s.listen()\n"
    "print('listening', flush=True)\n"
    "while True:\n"
    "    conn, _ = s.accept()\n"  # a squatter answers, as one collecting documents would
    "    conn.close()\n")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def squatter() -> Iterator[int]:
    """A port held by a process of user ``nobody``, as another local user would."""
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "setpriv (util-linux) is needed to act as another user"
    assert os.geteuid() == 0, "acting as user nobody needs root in the test environment"
    port = _free_port()
    process = subprocess.Popen(
        [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups",
         "/usr/bin/python3", "-c", SQUATTER, str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "listening"
        owner = _listening_uid(port)
        assert owner == 65534, f"port {port} is held by uid {owner}, not nobody"
        yield port
    finally:
        process.kill()
        process.wait()


def _listening_uid(port: int) -> int | None:
    """The uid owning the listening socket on 127.0.0.1:port (from /proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, uid = fields[1], fields[3], fields[7]
        if state == "0A" and int(local.split(":")[1], 16) == port:
            return int(uid)
    return None


def _doctor(daemon: Daemon) -> subprocess.CompletedProcess[str]:
    config = daemon.config_file
    env = {**os.environ, "IMZA_AGENT_HOME": str(daemon.home),
           "IMZA_AGENT_SYSTEM_POLICY": str(daemon.home.parent / "none.toml")}
    return subprocess.run([sys.executable, "-m", "agent.cli", "--config", str(config),
                           "doctor"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.parametrize("taken", ["wss", "ws"])
async def test_a_taken_port_costs_only_its_transport(squatter: int, tmp_path: Path,
                                                     taken: str) -> None:
    other = "ws" if taken == "wss" else "wss"
    daemon = Daemon(home=tmp_path / "home", modules=[], env={},
                    config={"server": {f"{taken}_port": squatter, "port_range": 1}})
    daemon.start()  # before: the agent exited with a traceback here
    try:
        runtime = json.loads((daemon.home / "runtime.json").read_text(encoding="utf-8"))
        why = f"port {squatter} is used by another program"
        assert runtime["unavailable"] == {taken: why}
        assert set(runtime["ports"]) == {other}
        assert runtime["socket"] is not None  # the browser extension's path still serves
        async with daemon.client("https://www.e-gov.az", other) as page:
            assert (await page.call("agent.info"))["protocol"] == 1
        log = daemon.log_text()
        assert log.count(why) == 1
        assert f"{why}; pages cannot reach the agent over {taken}" in log
        assert "Traceback" not in log
        # doctor, asked while the agent runs, reads it from the agent ...
        report = _doctor(daemon)
        line = f"port {squatter} is used by another program; pages cannot reach the agent " \
               f"over {taken}"
        assert line in report.stdout, report.stdout + report.stderr
        assert report.returncode == 1
    finally:
        assert daemon.stop() == 0
    # ... and finds it on its own when the agent is not running.
    report = _doctor(daemon)
    assert "agent not running" in report.stdout
    assert line in report.stdout, report.stdout + report.stderr


async def test_plain_ws_is_off_by_default(tmp_path: Path) -> None:
    assert ServerConfig().ws_enabled is False
    daemon = Daemon(home=tmp_path / "home", modules=[], env={},
                    config={"server": {"ws_enabled": None}}).start()  # the agent's default
    try:
        assert set(daemon.ports) == {"wss"}
        assert "listening on ws://" not in daemon.log_text()
    finally:
        assert daemon.stop() == 0


async def test_plain_ws_needs_the_policy_too(tmp_path: Path) -> None:
    daemon = Daemon(home=tmp_path / "home", modules=[], env={},
                    config={"server": {"ws_enabled": True}},
                    policy={"plain_websocket": False}).start()
    try:
        assert set(daemon.ports) == {"wss"}
        assert "the system policy forbids it" in daemon.log_text()
    finally:
        assert daemon.stop() == 0
