"""atheris target: ``parse_frame`` (agent/protocol/jsonrpc.py) on any bytes, as the
WebSocket would hand them over (text and binary frames), and on their text decoding.

Never raises; a refusal is a JSON-RPC error frame that echoes at most a valid id."""

from __future__ import annotations

import json
import sys

import harness

from fuzz.frames import seed_frames

with harness.instrumented():
    from agent.protocol import jsonrpc

_MAX_SAFE_INT = 2**53 - 1


def check(frame: str | bytes) -> None:
    message = jsonrpc.parse_frame(frame)
    if isinstance(message, jsonrpc.Request | jsonrpc.Notification):
        assert isinstance(message.method, str) and message.method
        assert isinstance(message.params, dict | list)
        if isinstance(message, jsonrpc.Request):
            assert isinstance(message.id, str | int) and not isinstance(message.id, bool)
        return
    assert isinstance(message, jsonrpc.ErrorReply), type(message)
    reply = json.loads(message.text)
    assert reply["jsonrpc"] == "2.0" and set(reply) == {"jsonrpc", "id", "error"}, reply
    assert reply["error"]["code"] == message.code
    reply_id = reply["id"]
    if reply_id is not None:  # only a valid id is ever echoed
        assert isinstance(reply_id, str | int) and not isinstance(reply_id, bool)
        assert (len(reply_id) <= jsonrpc.MAX_ID_CHARS if isinstance(reply_id, str)
                else abs(reply_id) <= _MAX_SAFE_INT), reply_id


def test_one(data: bytes) -> None:
    check(data)
    check(data.decode("utf-8", "surrogatepass") if _decodes(data) else
          data.decode("latin-1"))


def _decodes(data: bytes) -> bool:
    try:
        data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return False
    return True


if __name__ == "__main__":
    harness.fuzz(test_one, seed_frames)
    sys.exit(0)
