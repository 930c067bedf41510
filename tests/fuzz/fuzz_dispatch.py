"""atheris target: ``Dispatcher.handle_frame`` with every real method over the fakes
(tests/fakes.py: a fake token, the scripted UI that allows, picks and types the right
PIN, the real policy), on one event loop.

Any frame gets exactly one JSON-RPC reply (or none for a notification) whose id is the
request's or null, and never INTERNAL: an unexpected exception that a frame can reach is
a bug.  ``"HANDLE"`` in an input becomes the live certificate handle, so mutations of
the signing requests get past the handle check."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

import harness

from fuzz.frames import seed_frames, valid_requests

with harness.instrumented():
    from fakes import make_bench

    from agent.methods import register_all
    from agent.protocol import jsonrpc
    from agent.protocol.dispatch import CallContext, Dispatcher

INTERNAL = 5000
_RUNNER = asyncio.Runner()
_HOME = Path(tempfile.mkdtemp(prefix="imza-fuzz-dispatch-"))
_BENCH = make_bench(_HOME, dialog_timeout=5.0)
_BENCH.issue("signer")
_BENCH.issue("auth", purpose="auth")
_BENCH.answers.set(consent="always", certificate="first", pin="1234")
_DISPATCHER = Dispatcher()
register_all(_DISPATCHER, _BENCH.services)
_SENT: list[str] = []


async def _send(frame: str) -> None:
    del _SENT[:-10]  # notifications: keep a few, never grow
    _SENT.append(frame)


_CTX = CallContext(origin="https://portal.example.az", transport="wss",
                   connection_id="fuzz", send=_send)


def _handle_frame(frame: str | bytes) -> str | None:
    return _RUNNER.run(asyncio.wait_for(_DISPATCHER.handle_frame(_CTX, frame), timeout=60))


_SELECTED = json.loads(_handle_frame(json.dumps(
    {"jsonrpc": "2.0", "id": 1, "method": "certificates.select",
     "params": {"purpose": "sign"}})) or "{}")
HANDLE = json.dumps(_SELECTED["result"]["handle"]).encode()


def test_one(data: bytes) -> None:
    frame = data.replace(b'"HANDLE"', HANDLE)
    reply = _handle_frame(frame)
    message = jsonrpc.parse_frame(frame)
    if isinstance(message, jsonrpc.Notification):
        assert reply is None, reply
        return
    assert reply is not None
    answer = json.loads(reply)
    assert answer["jsonrpc"] == "2.0" and ("result" in answer) != ("error" in answer), answer
    if isinstance(message, jsonrpc.Request):
        assert answer["id"] == message.id, (answer["id"], message.id)
    else:  # refused by the parser: the same refusal (its wording may differ: how deep
        # the C decoder gets before RecursionError depends on the caller's stack)
        refusal = json.loads(message.text)
        assert (answer["id"], answer["error"]["code"]) == (
            refusal["id"], refusal["error"]["code"]), (answer, refusal)
    if "error" in answer:
        assert answer["error"]["code"] != INTERNAL, (answer, frame[:500])


def seeds() -> list[bytes]:
    live = [json.dumps(m).encode() for m in valid_requests("HANDLE")]
    return live + seed_frames()


if __name__ == "__main__":
    harness.fuzz(test_one, seeds)
    sys.exit(0)
