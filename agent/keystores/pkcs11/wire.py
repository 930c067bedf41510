"""Framing between the daemon and a PKCS#11 worker: 4-byte big-endian length + JSON.

Binary values travel as base64 strings (``b64``/``unb64``).  Both sides refuse frames over
``MAX_FRAME`` so a confused or hostile peer cannot make the other allocate gigabytes.
This module is imported by the worker, so it must stay stdlib-only and cheap to import.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from typing import Any, BinaryIO

MAX_FRAME = 64 * 1024 * 1024
_HEADER = struct.Struct(">I")
HEADER_SIZE = _HEADER.size


class FrameError(Exception):
    """The peer sent something that is not a frame of this protocol."""


def encode_frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(body) > MAX_FRAME:
        raise FrameError(f"frame of {len(body)} bytes is over the limit")
    return _HEADER.pack(len(body)) + body


def frame_length(header: bytes) -> int:
    length = int(_HEADER.unpack(header)[0])
    if length > MAX_FRAME:
        raise FrameError(f"frame of {length} bytes announced, over the limit")
    return length


def decode_body(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FrameError("frame is not UTF-8 JSON") from exc
    if not isinstance(message, dict):
        raise FrameError("frame is not a JSON object")
    return message


def b64(data: bytes | bytearray | None) -> str | None:
    return None if data is None else base64.b64encode(bytes(data)).decode("ascii")


def unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text, validate=True)


# --- blocking I/O, used by the worker ------------------------------------------------------

def read_exact(stream: BinaryIO, size: int) -> bytes | None:
    """Read ``size`` bytes; None on a clean EOF before the first byte."""
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


def read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    header = read_exact(stream, HEADER_SIZE)
    if header is None:
        return None
    body = read_exact(stream, frame_length(header))
    if body is None:
        raise FrameError("stream ended inside a frame")
    return decode_body(body)


def write_frame(fd: int, message: dict[str, Any]) -> None:
    data = memoryview(encode_frame(message))
    while data:
        written = os.write(fd, data)
        data = data[written:]
