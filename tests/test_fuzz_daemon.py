"""Deaths and hangs of a real daemon under a fixed budget of hostile frames: the bar is zero.

One agent process (tests/daemon.py, on the SoftHSM bed, the scripted user allowing,
picking and typing the PIN) gets ``BATCHES`` batches of ``FRAMES_PER_BATCH`` fuzzed frames over
wss and ws: mutations of a valid request of every method (the live certificate handle
included, so signing and the document workers are reached), hostile and damaged PDF and
XML documents, nesting bombs, huge strings and integers, duplicate members, NaN, invalid
UTF-8 in text frames, binary frames, and frames just under and over the frame limits (the
small one before a grant, the large one after).  Every few batches come from origins the
agent refuses, or from a site without a grant.

Normal outcomes, counted but never failures: any JSON-RPC error (RATE_LIMITED and BUSY
included), a refused handshake, and the agent closing the connection (1003, 1007, 1008,
1009); the client then reconnects.  After every batch the daemon must still be running
(else a death, and it is restarted) and answer ``agent.info`` on a fresh connection from
another site within ``HANG_TIMEOUT`` (else a hang).  The counts go to stdout and to
``daemon-fuzz.json`` in the test's temp dir.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import random
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon import Daemon
from fuzz.frames import Frame, document_request, fuzzed_frame, valid_requests
from testbed import SoftHsmBed
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon]

# A longer or different run locally: IMZA_FUZZ_DAEMON_SEED / IMZA_FUZZ_DAEMON_BATCHES.
SEED = int(os.environ.get("IMZA_FUZZ_DAEMON_SEED", "20261130"))
BATCHES = int(os.environ.get("IMZA_FUZZ_DAEMON_BATCHES", "32"))
FRAMES_PER_BATCH = 25
# Under the default request rate (server.rate_per_second): most frames are parsed, not
# refused RATE_LIMITED; bursts past the byte rate still happen with the large frames.
PACE = 1 / 40
HANG_TIMEOUT = 15.0  # a generous hang detector, never a timing assertion
BATCH_TIMEOUT = 60.0  # the end-of-batch marker; a slow batch is counted, not failed
MAX_FRAME = 512 * 1024  # server.max_frame_bytes (granted origins)
UNGRANTED_FRAME = 64 * 1024  # server.max_frame_bytes_ungranted (its default)

FUZZ_ORIGIN = "https://fuzz.hostile.example"
PROBE_ORIGIN = "https://probe.bystander.example"
# Refused at the handshake (opaque, plain http without dev_origins, malformed), and one
# admitted origin of another site that never selects a certificate.
OTHER_ORIGINS = ["null", "http://plain.hostile.example", "https://a b.example",
                 "https://fuzz.hostile.example.", "https://nogrant.elsewhere.example"]


@pytest.fixture(scope="module")
def agent(softhsm: SoftHsmBed, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("fuzz-daemon")
    # "Əliyev" names one signing certificate of the bed, on token A.
    daemon = Daemon(
        home=tmp / "home", modules=[softhsm.module], env=dict(softhsm.env),
        config={"server": {"ws_enabled": True, "max_frame_bytes": MAX_FRAME},
                "ui": {"dialog_timeout": 10.0}},
        answers={"consent": "always", "certificate": {"holder": "Əliyev"},
                 "pin": softhsm.tokens["A"].pin})
    daemon.start()
    yield daemon
    # After all that, it still shuts down cleanly.
    assert daemon.stop() == 0, daemon.log_text()[-3000:]


class Tally:
    def __init__(self) -> None:
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.deaths = 0
        self.hangs = 0
        self.frames = 0

    def as_dict(self) -> dict[str, Any]:
        return {"seed": SEED, "batches": BATCHES, "frames": self.frames,
                "deaths": self.deaths, "hangs": self.hangs,
                "outcomes": dict(sorted(self.outcomes.items()))}


async def _connect(daemon: Daemon, origin: str, transport: str) -> ClientConnection:
    kwargs: dict[str, Any] = {"origin": origin, "max_size": None, "compression": None,
                              "open_timeout": HANG_TIMEOUT}
    if transport == "wss":
        kwargs["ssl"] = daemon.ssl_context()
    return await connect(daemon.url(transport), **kwargs)


class _Connection:
    """One fuzzing connection: a reader counts every reply by its error reason (or
    "result") and wakes the sender, which goes frame by frame."""

    def __init__(self, ws: ClientConnection, tally: Tally) -> None:
        self.ws = ws
        self.tally = tally
        self.replies: dict[str, dict[str, Any]] = {}
        self.arrived = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                reply = json.loads(message)
                error = reply.get("error")
                if error is not None:
                    reason = (error.get("data") or {}).get("reason") or str(error.get("code"))
                    self.tally.outcomes[f"error {reason}"] += 1
                elif "result" in reply:
                    self.tally.outcomes["result"] += 1
                else:
                    self.tally.outcomes["notification"] += 1
                self.replies[str(reply.get("id"))] = reply
                self.arrived.set()
        except ConnectionClosed:
            pass
        finally:
            self.tally.outcomes[f"closed {self.ws.close_code}"] += 1
            self.arrived.set()

    @property
    def open(self) -> bool:
        return not self.reader.done()

    async def settle(self, seconds: float) -> None:
        """Until the next reply, the close, or ``seconds`` (a frame owed no answer)."""
        self.arrived.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.arrived.wait(), seconds)

    async def call(self, msg_id: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The reply to one well-formed request; {} when the connection closed first."""
        await self.ws.send(json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": method,
                                       "params": params}))
        async with asyncio.timeout(BATCH_TIMEOUT):
            while msg_id not in self.replies and self.open:
                await self.settle(1.0)
        return self.replies.get(msg_id, {})

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.wait([self.reader], timeout=HANG_TIMEOUT)


async def _send(ws: ClientConnection, frame: Frame, rng: random.Random) -> None:
    if isinstance(frame, bytes) and rng.random() < 0.85:
        await ws.send(frame, text=True)  # a text frame that may not be UTF-8
    else:
        await ws.send(frame)  # a binary frame now and then


def _with_handle(frame: Frame, handle: str) -> Frame:
    live = json.dumps(handle)
    if isinstance(frame, bytes):
        return frame.replace(b'"HANDLE"', live.encode())
    return frame.replace('"HANDLE"', live)


async def _open(daemon: Daemon, origin: str, rng: random.Random, tally: Tally
                ) -> tuple[_Connection, str] | None:
    """A connection, and on the fuzzing origin a live handle (handles belong to their
    connection); None when the agent refuses the handshake."""
    transport = "wss" if "ws" not in daemon.ports or rng.random() < 0.6 else "ws"
    try:
        ws = await _connect(daemon, origin, transport)
    except InvalidStatus as refused:
        tally.outcomes[f"refused {refused.response.status_code}"] += 1
        return None
    except (InvalidHandshake, OSError, TimeoutError) as failed:
        tally.outcomes[f"handshake failed {type(failed).__name__}"] += 1
        return None
    connection = _Connection(ws, tally)
    handle = "h-none"
    if origin == FUZZ_ORIGIN:
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            chosen = await connection.call("select", "certificates.select", {"purpose": "sign"})
            handle = chosen.get("result", {}).get("handle", handle)
    return connection, handle


async def _batch(daemon: Daemon, origin: str, frames: list[Frame], rng: random.Random,
                 tally: Tally, number: int) -> None:
    """Send the frames one by one (each waits for its reply, the close, or a second), on
    a new connection whenever the agent closed the last; then an end marker."""
    remaining = list(frames)
    while remaining:
        opened = await _open(daemon, origin, rng, tally)
        if opened is None:
            return
        connection, handle = opened
        try:
            while remaining and connection.open:
                frame = _with_handle(remaining.pop(0), handle)
                tally.frames += 1
                await _send(connection.ws, frame, rng)
                await connection.settle(1.0)
                await asyncio.sleep(PACE)
            if connection.open and not await connection.call(f"end-{number}", "agent.info",
                                                             {}):
                tally.outcomes["batch end not answered"] += 1
        except ConnectionClosed:
            pass
        except TimeoutError:
            tally.outcomes["batch end not answered"] += 1
        finally:
            await connection.close()


async def _probe(daemon: Daemon, timeout: float = HANG_TIMEOUT) -> bool:
    """A fresh page of another site gets agent.info within ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            ws = await _connect(daemon, PROBE_ORIGIN, "wss")
            try:
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": "probe",
                                          "method": "agent.info"}))
                reply = json.loads(await ws.recv())
            finally:
                await ws.close()
    except (TimeoutError, OSError, InvalidHandshake, ConnectionClosed):
        return False
    return bool(reply.get("id") == "probe" and "result" in reply)



def _frames(rng: random.Random) -> list[Frame]:
    templates = valid_requests("HANDLE")  # the live handle goes in when sent
    frames = []
    for _ in range(FRAMES_PER_BATCH):
        # A hostile or damaged PDF/XML for the document workers: few, since each costs a
        # worker process (about a second of CPU to load the format libraries).
        if rng.random() < 0.06:
            frames.append(document_request(rng))
            continue
        limit = rng.choice([UNGRANTED_FRAME, MAX_FRAME, 4096, 4096])
        frames.append(fuzzed_frame(rng, templates, size_limit=limit))
    return frames


@pytest.mark.timeout(420 + 15 * max(0, BATCHES - 32))
async def test_no_death_and_no_hang_over_the_budget(agent: Daemon, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    tally = Tally()
    assert await _probe(agent), "the agent does not answer before any fuzzing"
    for number in range(BATCHES):
        origin = FUZZ_ORIGIN if number % 4 != 3 else rng.choice(OTHER_ORIGINS)
        await _batch(agent, origin, _frames(rng), rng, tally, number)
        assert agent.process is not None
        if agent.process.poll() is not None:
            tally.deaths += 1
            tally.outcomes[f"died with {agent.process.returncode}"] += 1
            agent.process = None
            agent.start()  # go on counting with a fresh agent
        elif not await _probe(agent):
            tally.hangs += 1
    summary = tally.as_dict()
    (tmp_path / "daemon-fuzz.json").write_text(json.dumps(summary, indent=2), "utf-8")
    print("daemon fuzz:", json.dumps(summary))
    assert tally.frames >= BATCHES * FRAMES_PER_BATCH // 2, summary
    assert (tally.deaths, tally.hangs) == (0, 0), (
        f"{summary}\n--- daemon log ---\n{agent.log_text()[-6000:]}")
    # The agent stayed itself: most frames were answered on their merits, not by a close.
    answered = sum(v for k, v in tally.outcomes.items() if k.startswith(("error ", "result")))
    assert answered >= tally.frames // 2, summary


async def test_the_probe_sees_a_daemon_that_does_not_answer(agent: Daemon) -> None:
    """The hang detector can say no: a stopped (SIGSTOP) agent fails the probe."""
    assert agent.process is not None and agent.process.poll() is None
    agent.process.send_signal(signal.SIGSTOP)
    try:
        assert not await _probe(agent, timeout=3.0)
    finally:
        agent.process.send_signal(signal.SIGCONT)
    assert await _probe(agent)
