"""The extension's path into the agent without a browser: the daemon's Unix socket
(agent/transport/local.py) and the native messaging host (agent/transport/native_host.py
and its relay, agent/transport/native_relay.py), against
a real daemon with the demo identity.

The browser half (extension, SDK, portal) is tested in real Chromium in tests/e2e/.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import stat
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from authverify import TokenRejected, verify_login_token
from cryptography import x509
from daemon import REPO, Daemon, stop_pid

from agent.platform.native_messaging import CHROMIUM_EXTENSION_ID, HOST_NAME
from agent.transport.native_relay import Relay

GOV = "https://www.e-gov.az"  # the shipped defaults grant it: no consent dialog
BLOCKED = "https://blocked.example"
POLICY = {"block": [BLOCKED]}
NATIVE = struct.Struct("=I")
FRAME = struct.Struct(">I")


@pytest.fixture(scope="module")
def agent() -> Iterator[Daemon]:
    # A short home path: a Unix socket path must fit in 108 bytes.
    with tempfile.TemporaryDirectory(prefix="imza-relay-") as tmp:
        daemon = Daemon(home=Path(tmp) / "home", modules=[], env={}, policy=POLICY,
                        config={"server": {"max_frame_bytes": 65536,
                                     "max_document_frame_bytes": 65536}}).start()
        try:
            yield daemon
        finally:
            assert daemon.stop() == 0, daemon.log_text()[-3000:]


def _socket(agent: Daemon) -> Path:
    return agent.home / "agent.sock"


def _challenge() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def _demo_root(agent: Daemon) -> x509.Certificate:
    return x509.load_pem_x509_certificate(
        (agent.home / "demo" / "demo-root-ca.pem").read_bytes())


# --- the daemon's socket ---------------------------------------------------------------------

class SocketPage:
    """One page connection as the native host makes it: handshake, then JSON-RPC."""

    def __init__(self, agent: Daemon) -> None:
        self.agent = agent
        self.ids = 0

    async def open(self, origin: Any) -> dict[str, Any]:
        self.reader, self.writer = await asyncio.open_unix_connection(str(_socket(self.agent)))
        await self.send_raw(json.dumps({"origin": origin}).encode())
        return json.loads(await self.read_raw())

    async def send_raw(self, payload: bytes) -> None:
        self.writer.write(FRAME.pack(len(payload)) + payload)
        await self.writer.drain()

    async def read_raw(self) -> bytes:
        (size,) = FRAME.unpack(await self.reader.readexactly(4))
        return await self.reader.readexactly(size)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.ids += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self.ids, "method": method}
        if params is not None:
            message["params"] = params
        await self.send_raw(json.dumps(message).encode())
        reply = json.loads(await asyncio.wait_for(self.read_raw(), 30))
        assert reply["id"] == self.ids
        return reply

    async def close(self) -> None:
        self.writer.close()


@pytest.mark.daemon
def test_socket_is_private_and_announced(agent: Daemon) -> None:
    path = _socket(agent)
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(agent.home.stat().st_mode) == 0o700
    runtime = json.loads((agent.home / "runtime.json").read_text(encoding="utf-8"))
    assert runtime["socket"] == str(path)


@pytest.mark.daemon
async def test_login_over_the_socket_is_bound_to_the_named_origin(agent: Daemon) -> None:
    agent.set_answers({"certificate": "first", "pin": "0000"})
    page = SocketPage(agent)
    assert await page.open(GOV) == {"ok": True}
    info = (await page.call("agent.info"))["result"]
    assert (info["origin"], info["transport"]) == (GOV, "extension")
    challenge = _challenge()
    token = (await page.call("auth.login", {"challenge": challenge}))["result"]["token"]
    await page.close()
    cert = verify_login_token(token, origin=GOV, challenge=challenge, root=_demo_root(agent))
    assert "DEMO" in cert.subject.rfc4514_string()
    with pytest.raises(TokenRejected):
        verify_login_token(token, origin="https://evil.example", challenge=challenge,
                           root=_demo_root(agent))


@pytest.mark.parametrize("origin, reason", [
    ("http://evil.example", "not an https origin"),
    (BLOCKED, "blocked by policy"),
    ("https://portal.example/path", "bad origin"),
    (None, "bad origin"),
    (["https://www.e-gov.az"], "bad origin"),
])
@pytest.mark.daemon
async def test_handshake_runs_the_websocket_policy(agent: Daemon, origin: Any,
                                                   reason: str) -> None:
    mark = agent.transcript_mark()
    page = SocketPage(agent)
    verdict = await page.open(origin)
    assert verdict["ok"] is False
    assert verdict["reason"].startswith(reason)
    assert await page.reader.read() == b""  # and the daemon hung up
    assert agent.transcript(mark) == []


@pytest.mark.daemon
async def test_oversized_frame_is_too_large_and_closes(agent: Daemon) -> None:
    page = SocketPage(agent)
    assert await page.open(GOV) == {"ok": True}
    page.writer.write(FRAME.pack(65537))
    await page.writer.drain()
    reply = json.loads(await page.read_raw())
    assert reply["error"]["data"]["reason"] == "TOO_LARGE"
    assert await page.reader.read() == b""


# --- the relay, in process -------------------------------------------------------------------

class Browser:
    """What the extension's background receives from the relay."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def to_browser(self, message: dict[str, Any]) -> None:
        # Every message must fit Chrome's 1 MiB, as the real host encodes it.
        assert len(json.dumps(message, ensure_ascii=False).encode()) <= 1024 * 1024
        await self.received.put(message)

    async def next(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.received.get(), 30)


def _request(msg_id: int, method: str, params: dict[str, Any] | None = None) -> str:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message)


@pytest.mark.daemon
async def test_relay_splits_long_replies_into_parts(agent: Daemon) -> None:
    browser = Browser()
    relay = Relay(browser.to_browser, _socket(agent), part_chars=100)
    await relay.handle({"type": "open", "port": 1, "origin": GOV})
    assert await browser.next() == {"type": "opened", "port": 1}
    await relay.handle({"type": "message", "port": 1, "data": _request(5, "agent.info")})
    text = ""
    while True:
        message = await browser.next()
        assert message["port"] == 1
        text += message["data"]
        if message["type"] == "message":
            break
        assert message["type"] == "part" and len(message["data"]) == 100
    assert len(text) > 200  # it took several parts
    reply = json.loads(text)
    assert reply["id"] == 5 and reply["result"]["transport"] == "extension"
    await relay.handle({"type": "close", "port": 1})
    closed = await browser.next()
    assert (closed["type"], closed["reason"]) == ("closed", "CLOSED")
    await relay.close()


@pytest.mark.daemon
async def test_relay_answers_too_large_for_a_reply_over_its_limit(agent: Daemon) -> None:
    browser = Browser()
    relay = Relay(browser.to_browser, _socket(agent), max_reply_chars=100)
    await relay.handle({"type": "open", "port": "p", "origin": GOV})
    assert await browser.next() == {"type": "opened", "port": "p"}
    await relay.handle({"type": "message", "port": "p", "data": _request(7, "agent.info")})
    reply = json.loads((await browser.next())["data"])
    assert reply["id"] == 7 and reply["error"]["data"]["reason"] == "TOO_LARGE"
    # the connection survives: a short reply still comes through
    await relay.handle({"type": "message", "port": "p", "data": _request(8, "no.such")})
    assert json.loads((await browser.next())["data"])["id"] == 8
    await relay.close()


@pytest.mark.daemon
async def test_relay_reports_a_refused_origin(agent: Daemon) -> None:
    browser = Browser()
    relay = Relay(browser.to_browser, _socket(agent))
    await relay.handle({"type": "open", "port": 3, "origin": BLOCKED})
    closed = await browser.next()
    assert closed["type"] == "closed" and closed["reason"] == "REFUSED"
    assert "blocked" in closed["detail"]
    await relay.close()


async def test_relay_without_daemon_or_starter_is_agent_unavailable(tmp_path: Path) -> None:
    browser = Browser()
    relay = Relay(browser.to_browser, tmp_path / "agent.sock")
    await relay.handle({"type": "open", "port": 1, "origin": GOV})
    closed = await browser.next()
    assert (closed["type"], closed["reason"]) == ("closed", "AGENT_UNAVAILABLE")


# --- the native host process -----------------------------------------------------------------

class HostProcess:
    def __init__(self, home: Path, config: Path | None, env: dict[str, str]) -> None:
        command = [sys.executable, "-m", "agent.cli"]
        if config is not None:
            command += ["--config", str(config)]
        self.process = subprocess.Popen(
            [*command, "native-host", f"chrome-extension://{CHROMIUM_EXTENSION_ID}/"],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, **env, "IMZA_AGENT_HOME": str(home)})

    def send(self, message: dict[str, Any] | bytes) -> None:
        assert self.process.stdin is not None
        body = message if isinstance(message, bytes) else json.dumps(message).encode()
        self.process.stdin.write(NATIVE.pack(len(body)) + body)
        self.process.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        header = self.process.stdout.read(4)
        assert len(header) == 4, self.stderr()
        (size,) = NATIVE.unpack(header)
        return json.loads(self.process.stdout.read(size))

    def finish(self) -> int:
        assert self.process.stdin is not None
        self.process.stdin.close()  # the browser closing the pipe ends the host
        return self.process.wait(timeout=30)

    def stderr(self) -> str:
        return self.process.stderr.read().decode(errors="replace") if self.process.stderr \
            else ""


@pytest.mark.daemon
def test_native_host_relays_and_ignores_junk(agent: Daemon) -> None:
    host = HostProcess(agent.home, None, {"IMZA_AGENT_SYSTEM_POLICY": "/nonexistent"})
    host.send(b"not json")
    host.send({"type": "open", "port": 9, "origin": GOV})
    assert host.receive() == {"type": "opened", "port": 9}
    host.send({"type": "message", "port": 9, "data": _request(1, "agent.info")})
    reply = host.receive()
    assert reply["type"] == "message" and reply["port"] == 9
    assert json.loads(reply["data"])["result"]["transport"] == "extension"
    host.send({"type": "close", "port": 9})
    assert host.receive()["type"] == "closed"
    assert host.finish() == 0


@pytest.mark.daemon
def test_native_host_starts_the_daemon_when_none_runs() -> None:
    with tempfile.TemporaryDirectory(prefix="imza-auto-") as tmp:
        stopped = Daemon(home=Path(tmp) / "home", modules=[], env={})
        config = Path(tmp) / "home-config.toml"
        config.write_text(stopped._config_text(), encoding="utf-8")
        stopped.home.mkdir()
        host = HostProcess(stopped.home, config, {"IMZA_AGENT_SYSTEM_POLICY": "/nonexistent"})
        pid = None
        try:
            host.send({"type": "open", "port": 1, "origin": GOV})
            assert host.receive() == {"type": "opened", "port": 1}
            runtime = json.loads((stopped.home / "runtime.json").read_text(encoding="utf-8"))
            pid = runtime["pid"]
            assert pid != host.process.pid
            host.send({"type": "message", "port": 1, "data": _request(1, "agent.info")})
            assert json.loads(host.receive()["data"])["result"]["origin"] == GOV
            assert host.finish() == 0
            os.kill(pid, 0)  # the daemon outlives the host (the browser closing)
        finally:
            if host.process.poll() is None:
                host.process.kill()
            if pid is not None:
                stop_pid(pid)


@pytest.mark.posix
def test_install_writes_manifest_and_launcher(tmp_path: Path) -> None:
    target = tmp_path / "profile" / "NativeMessagingHosts"
    env = {**os.environ, "IMZA_AGENT_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "native-host", "install", "--target-dir",
         str(target), "--extension-id", "abcdefghijklmnopabcdefghijklmnop"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((target / f"{HOST_NAME}.json").read_text(encoding="utf-8"))
    assert manifest["name"] == HOST_NAME and manifest["type"] == "stdio"
    assert manifest["allowed_origins"] == ["chrome-extension://abcdefghijklmnopabcdefghijklmnop/"]
    launcher = Path(manifest["path"])
    assert launcher.is_absolute() and os.access(launcher, os.X_OK)
    text = launcher.read_text(encoding="utf-8")
    assert f"IMZA_AGENT_HOME={tmp_path / 'home'}" in text and "native-host" in text
