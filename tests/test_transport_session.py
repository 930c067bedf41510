"""The per-connection frame session every transport uses: requests run concurrently, up
to ``[server] max_requests_in_flight``; more are answered RATE_LIMITED at once; closing
cancels what still runs and runs the connection's clean-ups."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from agent.config import ServerConfig
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params import NoParams
from agent.protocol.results import AgentInfoResult
from agent.transport.session import FrameSession, SessionLimits


def _limits(**settings: Any) -> SessionLimits:
    return SessionLimits.from_settings(ServerConfig(**settings), clock=lambda: 0.0)


def _frame(msg_id: int) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": "agent.info"})


async def test_requests_beyond_the_in_flight_limit_are_refused_not_queued() -> None:
    release = asyncio.Event()
    started: list[int] = []

    async def slow_info(ctx: CallContext, params: NoParams) -> AgentInfoResult:
        started.append(1)
        await release.wait()  # as a request waiting for the user would
        return AgentInfoResult(name="imza-agent", version="0", protocol=1)

    dispatcher = Dispatcher()
    dispatcher.register("agent.info", NoParams, slow_info)
    sent: list[dict[str, Any]] = []

    async def send(text: str) -> None:
        sent.append(json.loads(text))

    cleaned: list[bool] = []
    ctx = CallContext(origin="https://portal.example", transport="ws", connection_id="c1",
                      send=send)
    ctx.on_close(lambda: cleaned.append(True))
    session = FrameSession(dispatcher, ctx, send, _limits(
        rate_per_second=1000.0, rate_burst=1000, max_requests_in_flight=2),
        (ConnectionError,))

    for msg_id in (1, 2, 3):
        await session.submit(_frame(msg_id))
    await asyncio.sleep(0)  # let the two admitted requests start
    assert len(started) == 2
    assert sent == [{"jsonrpc": "2.0", "id": 3, "error": {
        "code": 4013, "message": "too many requests", "data": {"reason": "RATE_LIMITED"}}}]

    release.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert sorted(m["id"] for m in sent if "result" in m) == [1, 2]
    await session.submit(_frame(4))  # room again once they are answered
    for _ in range(5):
        await asyncio.sleep(0)
    assert sent[-1]["id"] == 4 and "result" in sent[-1]

    release.clear()
    await session.submit(_frame(5))
    await asyncio.sleep(0)
    await session.close()  # the peer went away with request 5 still waiting
    await asyncio.sleep(0)
    assert cleaned == [True]
    assert all(m["id"] != 5 for m in sent)


async def test_the_rate_limit_applies_per_origin() -> None:
    dispatcher = Dispatcher()

    async def info(ctx: CallContext, params: NoParams) -> AgentInfoResult:
        return AgentInfoResult(name="imza-agent", version="0", protocol=1)

    dispatcher.register("agent.info", NoParams, info)
    sent: list[dict[str, Any]] = []

    async def send(text: str) -> None:
        sent.append(json.loads(text))

    ctx = CallContext(origin="https://portal.example", transport="ws", connection_id="c1",
                      send=send)
    session = FrameSession(dispatcher, ctx, send, _limits(
        rate_per_second=1.0, rate_burst=3, max_requests_in_flight=100), (ConnectionError,))
    for msg_id in range(1, 6):
        await session.submit(_frame(msg_id))
    for _ in range(5):
        await asyncio.sleep(0)
    limited = [m["id"] for m in sent if m.get("error", {}).get("code") == 4013]
    assert limited == [4, 5]  # a burst of three, then nothing until the clock moves
    await session.close()
