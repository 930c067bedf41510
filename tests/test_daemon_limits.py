"""Each limit of the running daemon is a named setting, and each has a test here:

| setting | what the page meets |
|---|---|
| ``server.max_frame_bytes`` | a larger non-document frame: TOO_LARGE (4012), ``data.limit`` |
| ``server.max_document_frame_bytes`` | a larger frame closes the connection with 1009 |
| ``server.max_connections_per_origin`` | one more handshake from that origin gets HTTP 403 |
| ``server.rate_per_second`` / ``rate_burst`` | requests past the burst get RATE_LIMITED (4013) |
| one pending user interaction per origin | a second one gets BUSY (4008) |
| ``ui.dialog_timeout`` | an unanswered dialog ends in USER_TIMEOUT (4002) |
| ``tokens.call_timeout`` | a hung token call ends in INTERNAL (5000, MODULE_TIMEOUT) |

The limits against floods (frame size until a grant, bytes per site, connections and
pending work per site and overall) are tested in tests/test_flood_daemon.py and
tests/test_flood_session.py.

The daemon's token is the fault-injecting module in front of SoftHSM, so a test can make
the token hang.  After every abuse a well-behaved page on another origin is still served.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon import Daemon, assert_served, b64, raw_handshake
from testbed import SoftHsmBed
from testbed.native import build_faulty_module
from websockets.exceptions import InvalidStatus

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon]

MAX_FRAME = 64 * 1024
MAX_CONNECTIONS = 2
RATE, BURST = 2.0, 10
DIALOG_TIMEOUT = 1.0
CALL_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def agent(softhsm: SoftHsmBed, mode_file: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("limits")
    module = build_faulty_module(tmp / "native")
    env = {**softhsm.env, "FAULTY_PKCS11_TARGET": str(softhsm.module),
           "FAULTY_PKCS11_MODE_FILE": str(mode_file)}
    daemon = Daemon(home=tmp / "home", modules=[module], env=env, config={
        "server": {"max_frame_bytes": MAX_FRAME, "max_document_frame_bytes": 2 * MAX_FRAME,
                   "max_connections_per_origin": MAX_CONNECTIONS,
                   "rate_per_second": RATE, "rate_burst": BURST},
        "ui": {"dialog_timeout": DIALOG_TIMEOUT},
        "tokens": {"call_timeout": CALL_TIMEOUT},
    }).start()
    yield daemon
    mode_file.write_text("", encoding="utf-8")
    assert daemon.stop() == 0, daemon.log_text()[-3000:]


def _pin(softhsm: SoftHsmBed) -> str:
    return softhsm.tokens["A"].pin


# --- frame size ---------------------------------------------------------------------------------

async def test_frame_over_max_frame_bytes_is_too_large_and_the_page_stays(
        agent: Daemon, softhsm: SoftHsmBed) -> None:
    origin = "https://big.e-gov.az"
    async with agent.client(origin) as page:
        # Just under the limit: read, parsed and refused on its merits (-32602).
        padding = "x" * (MAX_FRAME - 200)
        under = await page.error("agent.info", {"padding": padding})
        assert under.code == -32602
        # Over max_frame_bytes: TOO_LARGE with the limit, unparsed; the page stays.
        over = await page.error("agent.info", {"padding": "x" * MAX_FRAME})
        assert (over.code, over.data["limit"]) == (4012, MAX_FRAME)
        assert (await page.call("agent.info"))["origin"] == origin
        # Over max_document_frame_bytes, the most any frame may be: not read; 1009.
        await page.send_raw(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "sign.pdf",
                                        "params": {"pdf": "A" * (2 * MAX_FRAME)}}))
        code, _ = await page.closed()
    assert code == 1009
    await assert_served(agent, pin=_pin(softhsm))


# --- connections per origin ---------------------------------------------------------------------

async def test_max_connections_per_origin(agent: Daemon, softhsm: SoftHsmBed) -> None:
    origin = "https://crowd.example"
    pages = [agent.client(origin) for _ in range(MAX_CONNECTIONS)]
    for page in pages:
        await page.__aenter__()
    try:
        with pytest.raises(InvalidStatus) as refused:
            async with agent.client(origin):
                pass
        assert refused.value.response.status_code == 403
        assert raw_handshake(agent, [("Origin", origin)], "wss") == 403
        await assert_served(agent, pin=_pin(softhsm))
    finally:
        for page in pages:
            await page.__aexit__()


# --- requests per second ------------------------------------------------------------------------

async def test_flood_is_rate_limited_per_origin(agent: Daemon, softhsm: SoftHsmBed) -> None:
    origin = "https://flood.example"
    async with agent.client(origin) as page:
        futures = [page.start("agent.info") for _ in range(4 * BURST)]
        replies = await asyncio.wait_for(asyncio.gather(*futures), 30)
    limited = [r for r in replies if "error" in r]
    served = [r for r in replies if "result" in r]
    assert len(limited) + len(served) == 4 * BURST  # every request answered, by its id
    assert len(served) >= BURST  # the burst itself passes
    assert len(limited) >= BURST  # ... and at least as many beyond it are refused
    assert {(r["error"]["code"], r["error"]["data"]["reason"]) for r in limited} == {
        (4013, "RATE_LIMITED")}
    await assert_served(agent, pin=_pin(softhsm))  # another origin has its own budget


# --- one pending user interaction per origin, and the dialog timeout ----------------------------

async def test_busy_while_a_dialog_waits_then_user_timeout(agent: Daemon,
                                                           softhsm: SoftHsmBed) -> None:
    origin = "https://slow.e-gov.az"
    agent.set_answers({"certificate": {"holder": "Əliyev"}, "pin": "ignore"})
    mark = agent.transcript_mark()
    async with agent.client(origin) as first, agent.client(origin, "wss") as second:
        chosen = await first.call("certificates.select", {"purpose": "sign"})
        params = {"handle": chosen["handle"], "hashAlgorithm": "SHA-256",
                  "hash": b64(hashlib.sha256(b"waiting").digest())}
        waiting = first.start("sign.hash", params)
        await _until_dialog(agent, mark, "pin")
        busy = await second.error("certificates.select", {"purpose": "sign"})
        assert (busy.code, busy.reason) == (4008, "BUSY")
        busy_same_connection = await first.error("auth.login",
                                                 {"challenge": "A" * 43})
        assert busy_same_connection.code == 4008
        # A page on another origin is not held up by this one's open dialog.
        async with agent.client("https://bystander.example") as other:
            assert (await other.call("agent.info"))["protocol"] == 1
        timed_out = await asyncio.wait_for(waiting, 30)
    assert timed_out["error"]["code"] == 4002
    assert timed_out["error"]["data"]["reason"] == "USER_TIMEOUT"
    dialogs = [d["dialog"] for d in agent.transcript(mark) if d["origin"] == origin]
    assert dialogs == ["certificate", "pin"]  # BUSY showed the user nothing
    await assert_served(agent, pin=_pin(softhsm))


async def _until_dialog(agent: Daemon, mark: int, dialog: str) -> None:
    """Wait until the scripted user is looking at ``dialog`` (not a timing assertion)."""
    for _ in range(1000):
        if any(d["dialog"] == dialog for d in agent.transcript(mark)):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {dialog} dialog appeared")


# --- token call timeout -------------------------------------------------------------------------

async def test_hung_token_call_times_out_as_internal(agent: Daemon, softhsm: SoftHsmBed,
                                                     mode_file: Path) -> None:
    origin = "https://hang.e-gov.az"
    agent.set_answers({"certificate": {"holder": "Əliyev"}, "pin": _pin(softhsm)})
    async with agent.client(origin) as page:
        chosen = await page.call("certificates.select", {"purpose": "sign"})
        params = {"handle": chosen["handle"], "hashAlgorithm": "SHA-256",
                  "hash": b64(hashlib.sha256(b"hang").digest())}
        mode_file.write_text("hang_on_sign", encoding="utf-8")
        try:
            hung = await page.error("sign.hash", params)
        finally:
            mode_file.write_text("", encoding="utf-8")
        assert (hung.code, hung.reason) == (5000, "INTERNAL")
        assert hung.data.get("detail") == "MODULE_TIMEOUT"
        # The worker was replaced: the same handle signs now.
        assert "signature" in await page.call("sign.hash", params)
    await assert_served(agent, pin=_pin(softhsm))
