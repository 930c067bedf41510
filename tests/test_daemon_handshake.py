"""The WebSocket handshake of a running daemon: what is refused with HTTP 403 before any
message is read, what is refused with a close a page can read (1008 "refused: …": a
well-formed origin the agent will not serve), and what is let in.

Bad headers go out over a raw socket (``raw_handshake``), since websockets' own client
would never send a foreign Host or two Origins; the accepted cases use the real client.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from daemon import Daemon, assert_served, raw_handshake
from testbed import SoftHsmBed
from websockets.exceptions import ConnectionClosed, InvalidStatus

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon]

DEV = "http://localhost:8000"
BLOCKED = "https://blocked.example"
INTRANET = "https://intranet.corp.az"
CONNECTION_LIMIT = 3
TRANSPORTS = ["ws", "wss"]


@pytest.fixture(scope="module")
def agent(softhsm: SoftHsmBed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("handshake")
    daemon = Daemon(home=tmp / "home", modules=[softhsm.module], env=dict(softhsm.env),
                    config={"server": {"dev_origins": [DEV],
                                       "max_connections_per_origin": CONNECTION_LIMIT}},
                    policy={"block": [BLOCKED]}).start()
    yield daemon
    assert daemon.stop() == 0, daemon.log_text()[-3000:]


@pytest.fixture(scope="module")
def locked_agent(softhsm: SoftHsmBed,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("handshake-locked")
    daemon = Daemon(home=tmp / "home", modules=[softhsm.module], env=dict(softhsm.env),
                    policy={"locked": True,
                            "allow": [{"origin": INTRANET, "permissions": ["select", "sign"]}]},
                    ).start()
    yield daemon
    assert daemon.stop() == 0, daemon.log_text()[-3000:]


REFUSED = {
    "origin missing": [],
    "origin null": [("Origin", "null")],
    "origin with a path": [("Origin", "https://a.gov.az/path")],
    "origin with a trailing slash": [("Origin", "https://a.gov.az/")],
    "origin with user info": [("Origin", "https://user@a.gov.az")],
    "two origins": [("Origin", "https://a.gov.az"), ("Origin", "https://b.gov.az")],
}

# Well-formed origins the agent will not serve: the page is told, with a close it can read.
REFUSED_TO_THE_PAGE = {
    "plain http": ("http://portal.example", "not an https origin"),
    "http on loopback, not a dev origin": ("http://localhost:9000", "not an https origin"),
    "blocked by the system policy": (BLOCKED, "blocked by policy"),
}


async def closed_with(agent: Daemon, origin: str, transport: str = "ws") -> tuple[
        int | None, str | None]:
    """Connect as ``origin`` and wait for the agent to close: (code, reason)."""
    async with agent.client(origin, transport) as page:
        return await page.closed()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("headers", REFUSED.values(), ids=REFUSED.keys())
async def test_bad_origins_are_refused_with_403(agent: Daemon, transport: str,
                                                headers: list[tuple[str, str]]) -> None:
    assert raw_handshake(agent, headers, transport) == 403


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", REFUSED_TO_THE_PAGE.values(), ids=REFUSED_TO_THE_PAGE.keys())
async def test_origins_the_agent_will_not_serve_are_told_so(agent: Daemon, transport: str,
                                                            case: tuple[str, str]) -> None:
    origin, reason = case
    assert await closed_with(agent, origin, transport) == (1008, f"refused: {reason}")
    await assert_served(agent)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_foreign_host_is_refused_with_403(agent: Daemon, transport: str) -> None:
    port = agent.ports[transport]
    origin = ("Origin", "https://www.e-gov.az")
    assert raw_handshake(agent, [("Host", f"evil.example:{port}"), origin], transport) == 403
    # A loopback name with another port is not this agent either.
    assert raw_handshake(agent, [("Host", f"127.0.0.1:{port + 1}"), origin], transport) == 403
    assert raw_handshake(agent, [origin], transport, path="/v2") == 403
    # The same request with this agent's own Host and path is let in.
    assert raw_handshake(agent, [("Host", f"localhost:{port}"), origin], transport) == 101
    await assert_served(agent)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_plain_https_and_configured_dev_origin_are_accepted(agent: Daemon,
                                                                  transport: str) -> None:
    assert raw_handshake(agent, [("Origin", "https://portal.example")], transport) == 101
    assert raw_handshake(agent, [("Origin", "HTTPS://Portal.Example:443")], transport) == 101
    async with agent.client(DEV, transport) as page:
        info = await page.call("agent.info")
    assert info == {"name": "imza-agent", "version": info["version"], "protocol": 1}


async def test_blocked_origin_cannot_connect_with_a_real_client(agent: Daemon) -> None:
    async with agent.client(BLOCKED) as page:
        assert await page.closed() == (1008, "refused: blocked by policy")
        with pytest.raises(ConnectionClosed):  # nothing more goes through
            await page.send_raw('{"jsonrpc":"2.0","id":1,"method":"agent.info"}')
    await assert_served(agent)


async def test_too_many_connections_per_origin(agent: Daemon) -> None:
    origin = "https://many.example"
    pages = [agent.client(origin) for _ in range(CONNECTION_LIMIT)]
    for page in pages:
        await page.__aenter__()
    try:
        with pytest.raises(InvalidStatus) as refused:
            async with agent.client(origin):
                pass
        assert refused.value.response.status_code == 403
        assert raw_handshake(agent, [("Origin", origin)]) == 403
        # The limit is per origin: another one connects, and the open ones still work.
        async with agent.client("https://other.example") as other:
            assert (await other.call("agent.info"))["protocol"] == 1
        for page in pages:
            assert (await page.call("agent.info"))["protocol"] == 1
    finally:
        for page in pages:
            await page.__aexit__()
    await assert_served(agent)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_locked_policy_admits_only_the_allow_list(locked_agent: Daemon,
                                                        transport: str) -> None:
    refused = (1008, "refused: not on the administrator's allow-list")
    assert await closed_with(locked_agent, "https://portal.example", transport) == refused
    assert await closed_with(locked_agent, "https://evil.e-gov.az.example", transport) == refused
    assert raw_handshake(locked_agent, [("Origin", INTRANET)], transport) == 101
    # The shipped defaults stay on the allow-list when the administrator keeps them.
    assert raw_handshake(locked_agent, [("Origin", "https://www.e-gov.az")], transport) == 101
    async with locked_agent.client(INTRANET, transport) as page:
        assert (await page.call("agent.info"))["origin"] == INTRANET
