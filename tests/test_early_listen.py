"""`imza-agent run` binds its WebSocket ports before it imports the daemon
(agent/daemon/early_listen.py, issue 17 bar 6): the ports the transport would take, a
page's connection queued by the kernel meanwhile and then served by the one transport
(its admission, its dispatcher), and a port the transport does not take closed, not
left as a socket nobody reads.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from agent.config import Config, ServerConfig
from agent.daemon import early_listen
from agent.daemon.early_listen import EarlySockets
from agent.daemon.runtime import AgentRuntime
from agent.transport import websocket

ORIGIN = "https://early.e-gov.az"


def test_the_same_ports_and_hosts_as_the_transport() -> None:
    assert early_listen.LOOPBACK_HOSTS == websocket.LOOPBACK_HOSTS
    assert early_listen.PORT_STEP == websocket.PORT_STEP
    for first in (0, 1, 29170, 29171, 65530, 65535):
        for count in (1, 2, 5, 32):
            assert early_listen.range_ports(first, count) == websocket.range_ports(first, count)


def _listening_on(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_binds_both_transports_on_port_zero_each_its_own() -> None:
    early = EarlySockets.bind(ServerConfig(wss_port=0, ws_port=0, ws_enabled=True))
    try:
        wss = early.take("wss", "127.0.0.1", 0)
        ws = early.take("ws", "127.0.0.1", 0)
        assert wss is not None and ws is not None
        assert wss.getsockname()[1] != ws.getsockname()[1]
        assert _listening_on(wss.getsockname()[1]) and _listening_on(ws.getsockname()[1])
        assert early.take("ws", "127.0.0.1", 0) is None  # taken once
        wss.close()
        ws.close()
    finally:
        early.close()


def test_a_taken_port_is_skipped_as_the_transport_skips_it() -> None:
    with socket.socket() as other:  # another program on the configured port
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        taken = int(other.getsockname()[1])
        early = EarlySockets.bind(ServerConfig(wss_port=taken, port_range=3, ws_enabled=False))
        try:
            candidates = websocket.range_ports(taken, 3)
            assert early.take("wss", "127.0.0.1", taken) is None
            bound = [p for p in early.ports if p in candidates[1:]]
            assert bound, early.ports
            assert early.take("ws", "127.0.0.1", bound[0]) is None  # ws is off
        finally:
            early.close()
        assert not _listening_on(bound[0])  # closed, not left behind


def test_nothing_is_bound_when_no_transport_is_enabled() -> None:
    early = EarlySockets.bind(ServerConfig(wss_enabled=False, ws_enabled=False))
    assert early.ports == []


# --- with the runtime ---------------------------------------------------------------------------

def _config(tmp_path: Path) -> Config:
    answers = tmp_path / "answers.json"
    answers.write_text("{}", encoding="utf-8")
    return Config.model_validate({
        "server": {"wss_enabled": False, "ws_enabled": True, "ws_port": 0},
        "tokens": {"known_modules": False, "modules": []},
        "demo": {"enabled": "never"}, "pcsc": {"enabled": False},
        "journal": {"enabled": False},
        "ui": {"backend": "scripted", "answers_file": str(answers)}})


@pytest.fixture
def agent_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("IMZA_AGENT_HOME", str(home))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    return home


def _policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, plain_websocket: bool) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(f"plain_websocket = {'true' if plain_websocket else 'false'}\n"
                      f"[[allow]]\norigins = [{json.dumps(ORIGIN)}]\n"
                      "permissions = [\"select\"]\n", encoding="utf-8")
    monkeypatch.setenv("IMZA_AGENT_SYSTEM_POLICY", str(policy))


def _queued(port: int) -> socket.socket:
    """A page's TCP connection, accepted by the kernel while nothing serves the port."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setblocking(False)
    return sock


async def _agent_info(sock: socket.socket, port: int) -> dict[str, Any]:
    async with connect(f"ws://127.0.0.1:{port}/v1", sock=sock, origin=ORIGIN,
                       open_timeout=30) as ws:
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "agent.info"}))
        answer: dict[str, Any] = json.loads(await ws.recv())
        return answer


async def test_a_page_queued_before_the_daemon_started_is_served_by_it(
        tmp_path: Path, agent_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _policy(tmp_path, monkeypatch, plain_websocket=True)
    config = _config(tmp_path)
    early = EarlySockets.bind(config.server)
    [port] = early.ports
    page = asyncio.create_task(_agent_info(_queued(port), port))
    await asyncio.sleep(0.05)  # its upgrade request sent; nobody reads it yet
    assert not page.done()
    runtime = AgentRuntime(config, headless=True, early=early)
    await runtime.start()
    try:
        assert runtime.transport.ports == {"ws": port}  # the early port, not another
        answer = await asyncio.wait_for(page, 30)
        assert answer["result"]["origin"] == ORIGIN  # the granted answer: admitted, served
        assert "sign.hash" in answer["result"]["features"]
    finally:
        await runtime.stop()
    assert not _listening_on(port)


async def test_a_port_the_transport_does_not_take_is_closed(
        tmp_path: Path, agent_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _policy(tmp_path, monkeypatch, plain_websocket=False)  # ws forbidden by the policy
    config = _config(tmp_path)
    early = EarlySockets.bind(config.server)
    [port] = early.ports
    page = asyncio.create_task(_agent_info(_queued(port), port))
    runtime = AgentRuntime(config, headless=True, early=early)
    await runtime.start()
    try:
        assert runtime.transport.ports == {}
        assert not _listening_on(port)
        with pytest.raises(Exception) as refused:  # closed under the page, not left hanging
            await asyncio.wait_for(page, 30)
        assert not isinstance(refused.value, asyncio.TimeoutError)
    finally:
        await runtime.stop()
