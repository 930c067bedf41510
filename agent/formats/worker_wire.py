"""Framing between the daemon and a document worker: a 4-byte big-endian length, then the
body.  The two directions differ on purpose:

* daemon → worker: ``pickle``.  The worker trusts the daemon, and pickle carries the
  job's dataclasses (``NetworkSettings``, ``Stamp``) unchanged.
* worker → daemon: JSON, binary values as base64.  The worker has read a hostile
  document and may have been subverted by it; the daemon never unpickles what it says,
  and refuses frames over ``MAX_FRAME``.

Stdlib only: the worker imports this before anything else.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import struct
from typing import Any, BinaryIO

MAX_FRAME = 96 * 1024 * 1024  # a signed document (base64) with its validation data
_HEADER = struct.Struct(">I")
HEADER_SIZE = _HEADER.size


class FrameError(Exception):
    """The peer sent something that is not a frame of this protocol."""


def frame_length(header: bytes) -> int:
    length = int(_HEADER.unpack(header)[0])
    if length > MAX_FRAME:
        raise FrameError(f"frame of {length} bytes announced, over the limit")
    return length


# --- daemon side ---------------------------------------------------------------------------

def encode_request(message: dict[str, Any]) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


def decode_answer(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FrameError("frame is not UTF-8 JSON") from exc
    if not isinstance(message, dict):
        raise FrameError("frame is not a JSON object")
    return message


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise FrameError("expected base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise FrameError("bad base64") from exc


# --- worker side (blocking I/O) --------------------------------------------------------------

def _read_exact(stream: BinaryIO, size: int) -> bytes | None:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            if remaining == size:
                return None
            raise FrameError("stream ended inside a frame")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_request(stream: BinaryIO) -> dict[str, Any] | None:
    """The daemon's next message; None when the daemon closed the pipe."""
    header = _read_exact(stream, HEADER_SIZE)
    if header is None:
        return None
    body = _read_exact(stream, _HEADER.unpack(header)[0])
    if body is None:
        raise FrameError("stream ended inside a frame")
    message = pickle.loads(body)
    if not isinstance(message, dict):
        raise FrameError("request is not a dict")
    return message


def write_answer(fd: int, message: dict[str, Any]) -> None:
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(body) > MAX_FRAME:
        raise FrameError(f"answer of {len(body)} bytes is over the limit")
    data = memoryview(_HEADER.pack(len(body)) + body)
    while data:
        written = os.write(fd, data)
        data = data[written:]
