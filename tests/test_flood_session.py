"""Issue 11 §1 and §12 in process: what a flooding page meets before its frames are parsed.

* frames over a rate limit are refused without being parsed (only their ``id`` is read,
  from the first few hundred characters);
* bytes are counted per site, requests in flight per site and overall, with the frame
  bytes they hold;
* frames that may be costly are parsed in a worker process, and a params object with far
  more members than its method takes is refused before pydantic sees it;
* idle rate-limit buckets are freed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from agent.config import ServerConfig
from agent.limits import PendingLedger, PendingLimits, RateLimiter
from agent.protocol import jsonrpc
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params import NoParams
from agent.protocol.results import AgentInfoResult
from agent.transport.session import (
    OFF_LOOP_CHARS,
    FrameSession,
    OversizedFrame,
    SessionLimits,
    is_costly,
    parse_and_validate,
    peek_id,
)

RATE_LIMITED = (4013, "RATE_LIMITED")


class Page:
    """One connection's FrameSession with a dispatcher whose agent.info can be held."""

    def __init__(self, limits: SessionLimits, origin: str = "https://a.flood.example") -> None:
        self.release = asyncio.Event()
        self.release.set()
        self.sent: list[dict[str, Any]] = []
        dispatcher = Dispatcher()

        async def info(ctx: CallContext, params: NoParams) -> AgentInfoResult:
            await self.release.wait()  # as a request waiting for the user would
            return AgentInfoResult(name="imza-agent", version="0", protocol=1)

        dispatcher.register("agent.info", NoParams, info)

        async def send(text: str) -> None:
            self.sent.append(json.loads(text))

        self.ctx = CallContext(origin=origin, transport="ws", connection_id="c", send=send)
        self.session = FrameSession(dispatcher, self.ctx, send, limits, (ConnectionError,))

    def errors(self) -> list[tuple[int, str]]:
        return [(m["error"]["code"], m["error"]["data"]["reason"]) for m in self.sent
                if "error" in m]


def _limits(clock: list[float] | None = None, **settings: Any) -> SessionLimits:
    now = clock if clock is not None else [0.0]
    return SessionLimits.from_settings(ServerConfig(**settings), clock=lambda: now[0])


def _frame(msg_id: int | str, **extra: Any) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": "agent.info", **extra})


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


# --- refused frames are not parsed -------------------------------------------------------------

async def test_frames_over_the_rate_limit_are_refused_without_parsing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[int] = []
    real = jsonrpc.parse_frame

    def counting(text: str | bytes) -> Any:
        parsed.append(len(text))
        return real(text)

    monkeypatch.setattr(jsonrpc, "parse_frame", counting)
    page = Page(_limits(rate_per_second=1.0, rate_burst=2))
    frames = [_frame(msg_id, params={"x": [[]] * 200}) for msg_id in range(1, 6)]
    for frame in frames:
        await page.session.submit(frame)
    await _settle()
    refused = [m for m in page.sent if m.get("error", {}).get("code") == 4013]
    # Two pass the burst and are parsed; three are refused, each answered with its own id
    # read from the frame's start, and none of them parsed.
    assert [m["id"] for m in refused] == [3, 4, 5]
    assert parsed == [len(frames[0]), len(frames[1])]


def test_the_id_of_a_refused_frame_comes_from_its_first_characters_only() -> None:
    assert peek_id('{"jsonrpc":"2.0","id":7,"method":"x","params":{}}') == 7
    assert peek_id(' { "id" : "abc" , "jsonrpc":"2.0"}') == "abc"
    # Only top-level members count, in order; a nested "id" is not the request's.
    assert peek_id('{"params":{"id":5},"id":6}') == 6
    assert peek_id('{"jsonrpc":"2.0","params":{"id":5}}') is None
    # Past the peek window, or invalid as an id: null, as for a frame that is not JSON.
    assert peek_id('{"jsonrpc":"2.0","params":"' + "x" * 600 + '","id":1}') is None
    assert peek_id('{"id":true}') is None
    assert peek_id('{"id":' + str(2**60) + "}") is None
    assert peek_id("[[],[],[]]") is None
    assert peek_id("") is None


async def test_a_frame_over_the_ungranted_limit_is_refused_until_the_origin_holds_a_grant(
) -> None:
    granted: set[str] = set()
    limits = SessionLimits.from_settings(
        ServerConfig(max_frame_bytes=64 * 1024, max_frame_bytes_ungranted=2048,
                     max_document_frame_bytes=64 * 1024),
        lambda origin, ctx: origin in granted, clock=lambda: 0.0)
    page = Page(limits)
    assert page.session.frame_limit == 2048
    with pytest.raises(OversizedFrame):
        await page.session.submit(_frame(1, params={"pad": "x" * 4096}))
    granted.add(page.ctx.origin)  # e.g. "allow once" given during this request
    await page.session.submit(_frame(2))
    await _settle()
    assert page.session.frame_limit == 64 * 1024  # raised after the answer
    await page.session.submit(_frame(3, params={"pad": "x" * 4096}))
    await _settle()
    assert page.sent[-1]["id"] == 3 and page.sent[-1]["error"]["code"] == -32602


# --- bytes and pending requests ----------------------------------------------------------------

async def test_bytes_are_counted_per_site_across_its_sub_domains() -> None:
    clock = [0.0]
    limits = _limits(clock, bytes_per_second=1024, bytes_burst=10_000)
    a = Page(limits, "https://a.flood.example")
    b = Page(limits, "https://b.flood.example")
    other = Page(limits, "https://bystander.example")
    pad = "x" * 4000
    await a.session.submit(_frame(1, params={"pad": pad}))  # ~4 KB
    await b.session.submit(_frame(2, params={"pad": pad}))  # ~8 KB for the site
    await b.session.submit(_frame(3, params={"pad": pad}))  # over the site's 10 000
    await other.session.submit(_frame(4, params={"pad": pad}))  # another site's budget
    await _settle()
    assert [m["id"] for m in b.sent if m.get("error", {}).get("code") == 4013] == [3]
    assert a.errors() == [(-32602, "INVALID_PARAMS")]
    assert other.errors() == [(-32602, "INVALID_PARAMS")]
    clock[0] += 5.0  # 5 s at 1024 bytes/s refills enough for one more
    await b.session.submit(_frame(5, params={"pad": pad}))
    await _settle()
    assert b.sent[-1]["id"] == 5 and b.sent[-1]["error"]["code"] == -32602


async def test_pending_requests_are_capped_per_site_and_overall() -> None:
    limits = _limits(max_pending_requests_per_site=2, max_pending_requests=3,
                     reserved_for_granted=0.0)
    pages = [Page(limits, f"https://s{i}.flood.example") for i in range(3)]
    other, third = Page(limits, "https://other.example"), Page(limits, "https://third.example")
    for page in (*pages, other, third):
        page.release.clear()  # every agent.info now waits, as for the user
    for i, page in enumerate(pages):
        await page.session.submit(_frame(i))
    await other.session.submit(_frame(10))
    await third.session.submit(_frame(11))
    await _settle()
    # Two of the site's three sub-domains hold its two pending slots; another site gets the
    # third slot overall; a third site finds none left.
    assert [p.errors() for p in pages] == [[], [], [RATE_LIMITED]]
    assert other.errors() == [] and third.errors() == [RATE_LIMITED]
    assert limits.pending.total_requests == 3
    for page in (*pages, other, third):
        page.release.set()
    await _settle()
    assert limits.pending.total_requests == 0 and limits.pending.total_bytes == 0
    await pages[2].session.submit(_frame(20))  # room again
    await _settle()
    assert "result" in pages[2].sent[-1]


def test_pending_bytes_are_capped_per_site_and_overall() -> None:
    ledger = PendingLedger(PendingLimits(per_site_requests=100, total_requests=100,
                                         per_site_bytes=1000, total_bytes=2500))
    assert ledger.reserve("flood.example", 900) is None
    assert ledger.reserve("flood.example", 200) == "too much data pending for this site"
    assert ledger.reserve("flood.example", 100) is None  # 1000 still fits
    # A site's first request always fits its own cap (the frame limit bounds it) ...
    assert ledger.reserve("big.example", 1400) is None
    # ... but not the overall one.
    assert ledger.reserve("third.example", 200) == "too much data pending"
    ledger.release("flood.example", 900)
    assert ledger.reserve("third.example", 200) is None
    assert ledger.bytes("flood.example") == 100 and ledger.total_bytes == 1700
    for site, size in (("flood.example", 100), ("big.example", 1400), ("third.example", 200)):
        ledger.release(site, size)
    assert ledger.total_bytes == 0 and ledger.total_requests == 0
    assert ledger.requests("flood.example") == 0


async def test_closing_a_connection_frees_its_pending_requests() -> None:
    limits = _limits(max_pending_requests_per_site=1)
    page = Page(limits)
    page.release.clear()
    await page.session.submit(_frame(1))
    await _settle()
    assert limits.pending.requests("flood.example") == 1
    await page.session.close()
    await _settle()
    assert limits.pending.requests("flood.example") == 0 and limits.pending.total_bytes == 0


# --- parsing off the event loop ----------------------------------------------------------------

def test_costly_frames_are_recognised_cheaply() -> None:
    assert not is_costly(_frame(1))
    # A full sign.hashes (1,000 values) stays inline: it parses in about 0.25 ms.
    assert not is_costly("[" + ",".join(['"AAAA"'] * 1000) + "]")
    assert is_costly("[" + ",".join(["[]"] * 1200) + "]")  # many values in few bytes
    assert is_costly(_frame(1, params={"pad": "x" * 80_000}))  # long


def test_a_params_object_with_far_more_members_than_its_method_takes_is_refused() -> None:
    members = {f"m{i}": 0 for i in range(600)}
    reply = parse_and_validate(_frame(9, params=members))
    assert isinstance(reply, jsonrpc.ErrorReply) and reply.code == -32602
    answer = json.loads(reply.text)
    assert answer["id"] == 9
    assert answer["error"]["message"] == "params has more members than the method takes"


async def test_a_costly_frame_is_parsed_in_the_worker_and_answered() -> None:
    limits = _limits()
    parser = limits.parser
    page = Page(limits)
    try:
        lists = "[" + ",".join(["[]"] * 20_000) + "]"
        text = '{"jsonrpc":"2.0","id":1,"method":"agent.info","params":{"a":' + lists + "}}"
        await page.session.submit(text)
        await page.session.submit(_frame(2))  # cheap: inline
        for _ in range(600):  # the worker starts on first use: a generous hang timeout
            if len(page.sent) == 2:
                break
            await asyncio.sleep(0.05)
        by_id = {m["id"]: m for m in page.sent}
        assert by_id[1]["error"]["code"] == -32602  # agent.info takes no params
        assert "result" in by_id[2]
        assert parser.off_loop == 1
    finally:
        parser.close()


# --- idle buckets are freed (issue 11 §12) -----------------------------------------------------

def test_idle_rate_limit_buckets_are_freed() -> None:
    limiter = RateLimiter(rate=2.0, burst=10, sweep_every=60.0)
    for i in range(500):
        limiter.allow(f"https://o{i}.example", now=0.0)
    assert len(limiter) == 500
    limiter.allow("https://busy.example", now=1.0)  # before the sweep interval: kept
    assert len(limiter) == 501
    # After an idle minute every bucket has refilled: they are dropped at the next call.
    for _ in range(20):
        limiter.allow("https://busy.example", now=61.0)
    assert len(limiter) == 1  # only the one still draining
    limiter.sweep(now=1000.0)
    assert len(limiter) == 0


def test_a_freed_bucket_behaves_as_a_full_one() -> None:
    limiter = RateLimiter(rate=1.0, burst=3, sweep_every=1.0)
    assert [limiter.allow("o", 0.0) for _ in range(4)] == [True, True, True, False]
    limiter.sweep(now=10.0)
    assert len(limiter) == 0
    assert [limiter.allow("o", 10.0) for _ in range(4)] == [True, True, True, False]


# --- a share of the overall caps is kept for origins holding a grant ---------------------------

def test_pending_caps_keep_a_share_for_granted_origins() -> None:
    ledger = PendingLedger(PendingLimits(per_site_requests=100, total_requests=4,
                                         per_site_bytes=10_000, total_bytes=10_000,
                                         reserved_for_granted=0.5))
    # Without a grant: two requests in all (half of four), whatever the site.
    assert ledger.reserve("a.example", 10, granted=False) is None
    assert ledger.reserve("b.example", 10, granted=False) is None
    assert ledger.reserve("c.example", 10, granted=False) == "too many requests pending"
    # A granted portal still has the reserved two.
    assert ledger.reserve("e-gov.az", 10, granted=True) is None
    assert ledger.reserve("e-gov.az", 10, granted=True) is None
    assert ledger.reserve("e-gov.az", 10, granted=True) == "too many requests pending"


async def test_an_ungranted_session_books_against_the_unreserved_share() -> None:
    granted = {"https://portal.e-gov.az"}
    limits = SessionLimits.from_settings(
        ServerConfig(max_pending_requests=4, reserved_for_granted=0.5),
        lambda origin, ctx: origin in granted, clock=lambda: 0.0)
    pages = [Page(limits, f"https://s{i}.example") for i in range(3)]
    portal = Page(limits, "https://portal.e-gov.az")
    for page in (*pages, portal):
        page.release.clear()
        await page.session.submit(_frame(1))
    await _settle()
    assert [p.errors() for p in pages] == [[], [], [RATE_LIMITED]]
    assert portal.errors() == []
    for page in (*pages, portal):
        page.release.set()
    await _settle()


def test_a_batch_of_documents_is_parsed_inline_however_long() -> None:
    items = [{"kind": "xml", "name": f"{i}.xml", "xml": "A" * 8000} for i in range(100)]
    frame = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "sign.batch",
                        "params": {"handle": "h", "items": items}})
    assert len(frame) > OFF_LOOP_CHARS and not is_costly(frame)
    assert is_costly(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "sign.batch",
                                 "params": {"items": [[]] * 1200}}))
    assert is_costly(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "agent.info",
                                 "params": {"pad": "x" * 80_000}}))
