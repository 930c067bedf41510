"""Issue 11 §1 against the real daemon: no site, granted or not, stalls the agent for the
others, and the caps on connections and pending work hold at their configured values.

Each limit at its configured value:

- ``server.max_frame_bytes_ungranted``: the ungranted 8 MB flood (closed, never parsed);
- ``server.bytes_per_second`` / ``bytes_burst``: the granted flood (one frame per site
  parsed, in the worker; the rest RATE_LIMITED);
- ``server.max_connections_per_site``: three sub-domains, and the 480 connections;
- ``server.max_connections`` and ``reserved_for_granted``: the 480 connections, then more
  sites without a grant and then with one;
- ``server.max_pending_bytes_per_site`` / ``max_pending_bytes``: the pending signatures;
- ``server.max_pending_requests_per_site`` / ``max_pending_requests`` and the id-only
  refusal: tests/test_flood_session.py.

Stalls are detected with a generous hang timeout on another site's ``agent.info`` while the
flood runs, never with a timed assertion.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon import Daemon, b64
from testbed import SoftHsmBed

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon]

HANG = 10.0  # seconds: an agent.info not answered by then means the loop is stalled
PROBE = "https://probe.example"  # a site of its own, without any grant
MB8 = 8 * 1024 * 1024


def lists_frame(msg_id: int, size: int = MB8 - 4096) -> str:
    """About ``size`` bytes of ``[[],[],…]``: cheap to send, costly to parse (2.6 M
    values in 8 MB)."""
    count = (size - 100) // 3
    return (f'{{"jsonrpc":"2.0","id":{msg_id},"method":"agent.info","params":{{"a":['
            + ",".join(["[]"] * count) + "]}}")


async def probe_answers(daemon: Daemon) -> None:
    """Another site's agent.info is answered while the flood runs (hang detector)."""
    async with daemon.client(PROBE) as probe:
        info = await probe.call("agent.info", timeout=HANG)
    assert info["protocol"] == 1


# --- one daemon for the frame floods -------------------------------------------------------------

@pytest.fixture(scope="module")
def agent(softhsm: SoftHsmBed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("flood")
    daemon = Daemon(home=tmp / "home", modules=[softhsm.module], env=dict(softhsm.env),
                    config={"server": {
                        # One 8 MB frame per site fits the byte burst; the next is refused.
                        "bytes_burst": MB8 + MB8 // 2, "bytes_per_second": 1024,
                        "max_connections_per_origin": 2, "max_connections_per_site": 4,
                    }}).start()
    yield daemon
    assert daemon.stop() == 0, daemon.log_text()[-3000:]


async def test_an_ungranted_site_flooding_8_mb_frames_does_not_stall_another_site(
        agent: Daemon) -> None:
    """Three sub-domains of a site without a grant each send 8 MB frames of empty lists;
    before the fix each cost seconds of the event loop. Now none is read past 64 KiB: the
    connection closes with 1009, and the probe is answered meanwhile."""
    frame = lists_frame(1).encode()
    floods = [await open_handshake(agent, f"https://{name}.flood.example")
              for name in ("a", "b", "c")]
    assert [status for status, _, _ in floods] == [101, 101, 101]

    first_out = asyncio.Event()

    async def flood(writer: asyncio.StreamWriter) -> None:
        try:
            for _ in range(3):
                writer.write(text_frame(frame))
                await writer.drain()
                first_out.set()
        except ConnectionError:
            pass
        finally:
            first_out.set()

    sending = [asyncio.create_task(flood(w)) for _, _, w in floods]
    try:
        # The probe comes once a first frame is out, while the others follow: before the
        # fix the agent parsed them one after the other for tens of seconds meanwhile.
        await asyncio.wait_for(first_out.wait(), 60)
        await probe_answers(agent)
        await asyncio.wait_for(asyncio.gather(*sending), 120)
        answers = [await asyncio.wait_for(first_frame(reader), 60) for _, reader, _ in floods]
    finally:
        for _, _, writer in floods:
            writer.close()
    # Each connection's first answer is the close (1009, message too big), never a reply:
    # the frames were not parsed. (None: the close was lost in the connection's reset.)
    assert all(answer in (("close", 1009), None) for answer in answers), answers
    assert ("close", 1009) in answers


def text_frame(payload: bytes) -> bytes:
    """One masked WebSocket text frame (the mask is zero, so the payload goes as is)."""
    return bytes([0x81, 0x80 | 127]) + len(payload).to_bytes(8, "big") + b"\0\0\0\0" + payload


async def first_frame(reader: asyncio.StreamReader) -> tuple[str, int | None] | None:
    """The kind of the first frame the agent sent: ("close", code) or ("text", None);
    None when the connection ended without one."""
    try:
        head = await reader.readexactly(2)
        length = head[1] & 0x7F
        if length == 126:
            length = int.from_bytes(await reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await reader.readexactly(8), "big")
        body = await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    if head[0] & 0x0F == 0x8:
        return "close", int.from_bytes(body[:2], "big") if len(body) >= 2 else None
    return "text", None


async def test_a_frame_under_the_ungranted_limit_is_still_served(agent: Daemon) -> None:
    async with agent.client("https://small.example") as page:
        error = await page.error("agent.info", {"pad": "x" * 60_000})
    assert error.code == -32602


async def test_allow_once_admits_large_frames_on_that_connection_only(agent: Daemon) -> None:
    """A portal unknown to the policy sends its document after the user allowed it once:
    from the next frame on, that connection takes large frames; a new one does not."""
    origin = "https://newportal.example"
    large = {"pad": "x" * 200_000}
    agent.set_answers({"consent": "once", "certificate": {"holder": "Əliyev"}})
    async with agent.client(origin) as page:
        await page.call("certificates.select", {"purpose": "sign"})  # asks: "once"
        error = await page.error("agent.info", large)
        assert error.code == -32602  # read and parsed: refused on its merits
    async with agent.client(origin) as fresh:
        await fresh.send_raw(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "agent.info",
                                         "params": large}))
        code, _ = await fresh.closed()
    assert code == 1009
    consents = [d for d in agent.transcript() if d["dialog"] == "consent"
                and d["origin"] == origin]
    assert len(consents) == 1


async def test_a_granted_site_flooding_costly_frames_does_not_stall_another_site(
        agent: Daemon) -> None:
    """A site with a grant may send 8 MB frames; the costly ones are parsed in the worker,
    so the probe is answered meanwhile, and the site's byte budget refuses the frames past
    its burst (RATE_LIMITED, not parsed)."""
    pages = [agent.client(f"https://{name}.e-gov.az") for name in ("a", "b", "c")]
    for page in pages:
        await page.__aenter__()
    try:
        replies: list[asyncio.Future[dict[str, Any]]] = []
        for n, page in enumerate(pages):
            for k in range(2):
                msg_id = 10 * n + k + 1
                future = asyncio.get_running_loop().create_future()
                page._pending[msg_id] = future
                await page.send_raw(lists_frame(msg_id))
                replies.append(future)
        # The frames are out; the probe comes while the agent parses them.
        await probe_answers(agent)
        answers = await asyncio.wait_for(asyncio.gather(*replies), 120)
    finally:
        for page in pages:
            await page.__aexit__()
    reasons = sorted(a["error"]["data"]["reason"] for a in answers)
    # One 8 MB frame fits the site's burst and is parsed (its params are not agent.info's);
    # the five others are refused by the site's byte budget, across its sub-domains.
    assert reasons == ["INVALID_PARAMS"] + ["RATE_LIMITED"] * 5


async def test_three_sub_domains_share_their_sites_connections(agent: Daemon) -> None:
    """max_connections_per_origin = 2, max_connections_per_site = 4: three sub-domains
    asking for two connections each get four in all."""
    statuses: list[int] = []
    held: list[asyncio.StreamWriter] = []
    try:
        for name in ("a", "b", "c"):
            for _ in range(2):
                status, _, writer = await open_handshake(agent,
                                                         f"https://{name}.crowd.example")
                statuses.append(status)
                held.append(writer)
        await probe_answers(agent)
    finally:
        for writer in held:
            writer.close()
    assert sorted(statuses) == [101] * 4 + [403] * 2


# --- connections ----------------------------------------------------------------------------------

async def open_handshake(daemon: Daemon, origin: str
                         ) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket upgrade on the ws port, kept open: (HTTP status, the stream)."""
    port = daemon.ports["ws"]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /v1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: {origin}\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), HANG)
    while (await asyncio.wait_for(reader.readline(), HANG)) not in (b"\r\n", b""):
        pass  # the rest of the response head
    return int(status_line.split()[1]), reader, writer


def keep_or_close(status: int, writer: asyncio.StreamWriter,
                  held: list[asyncio.StreamWriter]) -> None:
    if status == 101:
        held.append(writer)
    else:
        writer.close()


async def test_480_connections_from_60_sub_domains_are_not_all_accepted(
        softhsm: SoftHsmBed, tmp_path: Path) -> None:
    """max_connections_per_site = 10, max_connections = 36 with reserved_for_granted =
    0.25: pages without a grant get 27 connections in all, sites with one the rest."""
    daemon = Daemon(home=tmp_path / "home", modules=[], env={}, config={"server": {
        "max_connections_per_site": 10, "max_connections": 36,
        "reserved_for_granted": 0.25}}).start()
    held: list[asyncio.StreamWriter] = []
    try:
        # 60 sub-domains of two sites, eight connections each (the per-origin limit).
        statuses: dict[str, list[int]] = {"one.example": [], "two.example": []}
        for i in range(60):
            site = "one.example" if i % 2 else "two.example"
            for _ in range(8):
                status, _, writer = await open_handshake(daemon, f"https://s{i}.{site}")
                statuses[site].append(status)
                keep_or_close(status, writer, held)
        assert {site: s.count(101) for site, s in statuses.items()} == {
            "one.example": 10, "two.example": 10}
        assert sum(s.count(403) for s in statuses.values()) == 460
        # 25 more sites without a grant: 7 fill the 27 open to them ...
        others = []
        for i in range(25):
            status, _, writer = await open_handshake(daemon, f"https://site{i}.example")
            others.append(status)
            keep_or_close(status, writer, held)
        assert others.count(101) == 7 and others.count(403) == 18
        assert "reason=too many connections from sites without a grant" in daemon.log_text()
        # ... while portals with a grant (the test policy's *.e-gov.az) still get the
        # reserved nine, and then the agent is full.
        granted = []
        for i in range(12):
            status, _, writer = await open_handshake(daemon, f"https://p{i}.e-gov.az")
            granted.append(status)
            keep_or_close(status, writer, held)
        assert granted.count(101) == 9 and granted.count(403) == 3
        assert "reason=too many connections\n" in daemon.log_text()
    finally:
        for writer in held:
            writer.close()
    # Once the flood is gone, a page gets in again.
    for _ in range(100):
        with contextlib.suppress(Exception):  # refused (403) while slots are being freed
            await probe_answers(daemon)
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("no connection admitted after the flood ended")
    assert daemon.stop() == 0


# --- pending work -------------------------------------------------------------------------------

HASHES = 1000  # sign.hashes' maximum: a frame of about 48 KB that waits for the PIN


async def test_pending_signatures_cannot_pin_unbounded_memory(softhsm: SoftHsmBed,
                                                              tmp_path: Path) -> None:
    """Sixty granted sub-domains of two sites each leave a large sign.hashes waiting for the
    PIN. Pending frame bytes are capped per site (two such frames) and overall (three):
    the rest are refused at once, unparsed."""
    # Sub-domains of e-gov.az are granted by the test policy; these too.
    policy = {"allow": [{"origins": ["https://*.turkiye.gov.tr"],
                         "permissions": ["select", "sign"]}]}
    daemon = Daemon(home=tmp_path / "home", modules=[softhsm.module], env=dict(softhsm.env),
                    policy=policy, answers={"certificate": {"holder": "Əliyev"}},
                    config={"server": {"max_connections_per_site": 64,
                                       "max_pending_bytes_per_site": 120_000,
                                       "max_pending_bytes": 150_000},
                            "ui": {"dialog_timeout": 300}}).start()
    origins = [f"https://s{i}.{site}" for site in ("e-gov.az", "turkiye.gov.tr")
               for i in range(30)]
    pages = [daemon.client(origin) for origin in origins]
    try:
        handles = []
        for page in pages:
            await page.__aenter__()
            handles.append((await page.call("certificates.select", {"purpose": "sign"}))["handle"])
        daemon.set_answers({"certificate": {"holder": "Əliyev"}, "pin": "ignore"})
        hashes = [b64(hashlib.sha256(str(i).encode()).digest()) for i in range(HASHES)]
        waiting = [page.start("sign.hashes", {"handle": handle, "hashes": hashes,
                                              "hashAlgorithm": "SHA-256"})
                   for page, handle in zip(pages, handles, strict=True)]
        assert len(json.dumps(hashes)) > 40_000
        # The refused ones are answered at once; the admitted ones wait for the PIN.
        for _ in range(600):
            if sum(f.done() for f in waiting) >= len(waiting) - 3:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # room for any wrongly admitted one to show up
        answered = [f.result() for f in waiting if f.done()]
        still = [origin for origin, f in zip(origins, waiting, strict=True) if not f.done()]
        assert {(a["error"]["code"], a["error"]["data"]["reason"]) for a in answered} == {
            (4013, "RATE_LIMITED")}
        messages = {a["error"]["message"] for a in answered}
        assert messages == {"too much data pending for this site", "too much data pending"}
        assert len(still) == 3  # pending: two of one site and one of the other
        assert sorted(o.split(".", 1)[1] for o in still).count("e-gov.az") in (1, 2)
    finally:
        for page in pages:
            with contextlib.suppress(Exception):
                await page.__aexit__()
        assert daemon.stop() == 0, daemon.log_text()[-3000:]
