"""The one admission path every transport shares (agent/transport/admission.py), in
process: the decision itself, then both real transports consulting one shared object."""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from agent.config import ServerConfig
from agent.policy.policy import Policy
from agent.protocol.dispatch import Dispatcher
from agent.transport.admission import (
    CLOSE_POLICY,
    TOO_MANY,
    TOO_MANY_SITE,
    TOO_MANY_TOTAL,
    TOO_MANY_UNGRANTED,
    Admission,
    Admitted,
    Attempt,
    HttpRequest,
    Refused,
)
from agent.transport.local import LocalSocketTransport
from agent.transport.session import SessionLimits
from agent.transport.websocket import PATH, WebSocketTransport

BLOCKED = "https://blocked.example"
DEV = "http://localhost:8000"
PORT = 29170


def _policy(tmp_path: Path, system_toml: str = f'block = ["{BLOCKED}"]\n') -> Policy:
    path = tmp_path / "policy.toml"
    path.write_text(system_toml, encoding="utf-8")
    return Policy.load(system_policy=path, grants_file=tmp_path / "grants.json")


def _admission(tmp_path: Path, limit: int = 2) -> Admission:
    return Admission(_policy(tmp_path), dev_origins=[DEV], max_connections_per_origin=limit)


def _http(host: str | None = f"127.0.0.1:{PORT}", path: str = PATH) -> HttpRequest:
    return HttpRequest(host, frozenset({PORT}), path, PATH)


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused")]


# --- the decision -------------------------------------------------------------------------

def test_a_good_origin_is_admitted_in_canonical_form_and_takes_a_slot(tmp_path: Path) -> None:
    admission = _admission(tmp_path)
    verdict = admission.admit(Attempt("wss", "HTTPS://Portal.Example:443", _http()))
    assert isinstance(verdict, Admitted)
    assert (verdict.origin, verdict.transport) == ("https://portal.example", "wss")
    assert admission.connections.count("https://portal.example") == 1
    dev = admission.admit(Attempt("ws", DEV, _http()))
    assert isinstance(dev, Admitted) and dev.origin == DEV


@pytest.mark.parametrize("origin, reason", [
    (BLOCKED, "blocked by policy"),
    ("http://portal.example", "not an https origin"),
    ("https://portal.example/path", "bad origin"),
    ("null", "bad origin"),
    (None, "bad origin: missing origin"),
])
def test_refusals_say_why_in_one_log_line_and_take_no_slot(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, origin: str | None,
        reason: str) -> None:
    admission = _admission(tmp_path)
    with caplog.at_level(logging.WARNING, logger="imza_agent.transport"):
        verdict = admission.admit(Attempt("extension", origin))
    assert isinstance(verdict, Refused) and verdict.reason.startswith(reason)
    [line] = _refusals(caplog)
    assert line.startswith("refused extension connection: origin=")
    assert line.endswith(f"reason={verdict.reason}")
    assert admission.connections.count("https://portal.example") == 0
    assert admission.connections.count(BLOCKED) == 0


def test_the_logged_origin_is_made_printable(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="imza_agent.transport"):
        _admission(tmp_path).admit(Attempt("ws", "https://evil\n.example", _http()))
    [line] = _refusals(caplog)
    # escaped, so the log shows exactly what was sent
    assert "\n" not in line and "origin='https://evil\\x0a.example'" in line


@pytest.mark.parametrize("request_, reason", [
    (_http(host="evil.example:29170"), "Host is not this agent on loopback"),
    (_http(host=f"127.0.0.1:{PORT + 1}"), "Host is not this agent on loopback"),
    (_http(host=None), "Host is not this agent on loopback"),
    (_http(path="/v2"), "unknown path"),
])
def test_a_websocket_request_for_another_host_or_path_is_refused_before_its_origin(
        tmp_path: Path, request_: HttpRequest, reason: str) -> None:
    admission = _admission(tmp_path)
    verdict = admission.admit(Attempt("wss", "https://portal.example", request_))
    assert verdict == Refused(reason)
    assert admission.connections.count("https://portal.example") == 0


def test_the_per_origin_limit_and_release(tmp_path: Path) -> None:
    admission = _admission(tmp_path, limit=2)
    first = admission.admit(Attempt("wss", "https://many.example", _http()))
    second = admission.admit(Attempt("extension", "https://many.example"))
    assert isinstance(first, Admitted) and isinstance(second, Admitted)
    # The third from the same origin is refused, whatever the transport ...
    assert admission.admit(Attempt("ws", "https://many.example", _http())) == Refused(TOO_MANY)
    assert admission.admit(Attempt("extension", "https://many.example")) == Refused(TOO_MANY)
    # ... while another origin still gets in.
    assert isinstance(admission.admit(Attempt("extension", "https://other.example")), Admitted)
    first.release()
    first.release()  # a second release frees nothing more
    assert admission.connections.count("https://many.example") == 1
    assert first.released and not second.released
    third = admission.admit(Attempt("ws", "https://many.example", _http()))
    assert isinstance(third, Admitted)
    assert admission.admit(Attempt("ws", "https://many.example", _http())) == Refused(TOO_MANY)


def test_sub_domains_share_their_sites_connections(tmp_path: Path) -> None:
    admission = Admission(_policy(tmp_path), max_connections_per_origin=2,
                          max_connections_per_site=3)
    admitted = [admission.admit(Attempt("extension", f"https://{n}.crowd.example"))
                for n in ("a", "a", "b", "c")]
    assert [isinstance(v, Admitted) for v in admitted] == [True, True, True, False]
    assert admitted[3] == Refused(TOO_MANY_SITE)
    # A public suffix separates sites: github.io sub-domains are sites of their own.
    assert isinstance(admission.admit(Attempt("extension", "https://x.github.io")), Admitted)
    assert isinstance(admission.admit(Attempt("extension", "https://y.github.io")), Admitted)
    first = admitted[0]
    assert isinstance(first, Admitted)
    first.release()
    assert isinstance(admission.admit(Attempt("extension", "https://c.crowd.example")),
                      Admitted)


def test_the_overall_cap_keeps_a_share_for_origins_with_a_grant(tmp_path: Path) -> None:
    granted = {"https://portal.e-gov.az", "https://other.e-gov.az"}
    admission = Admission(_policy(tmp_path), max_connections_per_origin=8,
                          max_connections=4, reserved_for_granted=0.5,
                          has_grant=lambda origin: origin in granted)
    verdicts = [admission.admit(Attempt("extension", f"https://s{i}.example"))
                for i in range(3)]
    assert [isinstance(v, Admitted) for v in verdicts] == [True, True, False]
    assert verdicts[2] == Refused(TOO_MANY_UNGRANTED)
    portal = [admission.admit(Attempt("extension", o)) for o in sorted(granted)]
    assert all(isinstance(v, Admitted) for v in portal)
    assert admission.admit(Attempt("extension", "https://portal.e-gov.az")) == Refused(
        TOO_MANY_TOTAL)
    ungranted = verdicts[0]
    assert isinstance(ungranted, Admitted) and not ungranted.granted
    ungranted.release()
    assert (admission.total, admission.ungranted) == (3, 1)
    assert isinstance(admission.admit(Attempt("extension", "https://s9.example")), Admitted)


def test_a_locked_policy_admits_only_its_allow_list(tmp_path: Path) -> None:
    policy = _policy(tmp_path, 'locked = true\n[[allow]]\norigin = "https://intranet.corp.az"\n'
                               'permissions = ["select"]\n')
    admission = Admission(policy, max_connections_per_origin=1)
    assert isinstance(admission.admit(Attempt("extension", "https://intranet.corp.az")),
                      Admitted)
    refused = admission.admit(Attempt("extension", "https://portal.example"))
    assert refused == Refused("not on the administrator's allow-list", CLOSE_POLICY)


# --- both transports consult the same admission ------------------------------------------

class Transports:
    def __init__(self, admission: Admission, ws: WebSocketTransport,
                 local: LocalSocketTransport) -> None:
        self.admission, self.ws, self.local = admission, ws, local

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws.ports['ws']}{PATH}"

    async def local_hello(self, origin: str) -> tuple[dict[str, object], asyncio.StreamWriter]:
        """The local socket's handshake, as the native host makes it."""
        reader, writer = await asyncio.open_unix_connection(str(self.local.path))
        payload = json.dumps({"origin": origin}).encode()
        writer.write(struct.pack(">I", len(payload)) + payload)
        await writer.drain()
        (size,) = struct.unpack(">I", await reader.readexactly(4))
        return json.loads(await reader.readexactly(size)), writer


@pytest.fixture
async def transports(tmp_path: Path) -> AsyncIterator[Transports]:
    settings = ServerConfig(ws_port=0, ws_enabled=True, wss_enabled=False,
                            max_connections_per_origin=1)
    policy = _policy(tmp_path)
    admission = Admission(policy, max_connections_per_origin=1)
    limits = SessionLimits.from_settings(settings)
    dispatcher = Dispatcher()
    ws = WebSocketTransport(dispatcher, policy, settings, admission, limits)
    # A short directory: a Unix socket path must fit in 108 bytes.
    with tempfile.TemporaryDirectory(prefix="imza-adm-") as short:
        local = LocalSocketTransport(dispatcher, settings, Path(short) / "agent.sock",
                                     admission, limits)
        await ws.start(None)
        assert await local.start()
        try:
            yield Transports(admission, ws, local)
        finally:
            await ws.close()
            await local.close()


async def _eventually(condition: Callable[[], bool]) -> bool:
    for _ in range(200):
        if condition():
            return True
        await asyncio.sleep(0.01)
    return condition()


@pytest.mark.posix
async def test_a_websocket_connection_counts_against_its_origin_on_the_local_socket(
        transports: Transports) -> None:
    origin = "https://shared.example"
    async with connect(transports.ws_url, origin=Origin(origin)):
        assert transports.admission.connections.count(origin) == 1
        verdict, writer = await transports.local_hello(origin)
        assert verdict == {"ok": False, "reason": TOO_MANY}
        writer.close()
    # Closing the WebSocket frees the slot for the other transport.
    assert await _eventually(lambda: transports.admission.connections.count(origin) == 0)
    verdict, writer = await transports.local_hello(origin)
    assert verdict == {"ok": True}
    try:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(transports.ws_url, origin=Origin(origin)):
                pass
        assert refused.value.response.status_code == 403
        assert refused.value.response.body == f"refused: {TOO_MANY}\n".encode()
    finally:
        writer.close()
    assert await _eventually(lambda: transports.admission.connections.count(origin) == 0)


@pytest.mark.posix
async def test_both_transports_refuse_a_blocked_origin_through_the_admission(
        transports: Transports, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="imza_agent.transport"):
        # A page cannot read an HTTP 403: the WebSocket is accepted and closed at once with
        # 1008 and the reason, which the page SDK reads as "the agent refuses this site".
        async with connect(transports.ws_url, origin=Origin(BLOCKED)) as ws:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
        verdict, writer = await transports.local_hello(BLOCKED)
        writer.close()
    assert (ws.close_code, ws.close_reason) == (CLOSE_POLICY, "refused: blocked by policy")
    assert verdict == {"ok": False, "reason": "blocked by policy"}
    assert _refusals(caplog) == [
        f"refused ws connection: origin={BLOCKED!r} reason=blocked by policy",
        f"refused extension connection: origin={BLOCKED!r} reason=blocked by policy"]
