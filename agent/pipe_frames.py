"""Length-prefixed frames over a pipe to a worker process: a 4-byte big-endian length,
then the body.

Shared by the PKCS#11 workers (``agent/keystores/pkcs11/wire.py``) and the document
workers (``agent/formats/worker_wire.py``), which differ in what a body holds and how
large it may be. Stdlib only: workers import this before anything else.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any, BinaryIO

HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size


class FrameError(Exception):
    """The peer sent something that is not a frame of this protocol."""


def frame_length(header: bytes, limit: int) -> int:
    """The announced body length, refused over ``limit`` before anything is allocated."""
    length = int(HEADER.unpack(header)[0])
    if length > limit:
        raise FrameError(f"frame of {length} bytes announced, over the limit")
    return length


def encode_json(message: dict[str, Any], limit: int) -> bytes:
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(body) > limit:
        raise FrameError(f"frame of {len(body)} bytes is over the limit")
    return HEADER.pack(len(body)) + body


def decode_json_object(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FrameError("frame is not UTF-8 JSON") from exc
    if not isinstance(message, dict):
        raise FrameError("frame is not a JSON object")
    return message


def read_exact(stream: BinaryIO, size: int) -> bytes | None:
    """Read ``size`` bytes; None on a clean end of the stream before the first byte."""
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


def read_body(stream: BinaryIO, limit: int) -> bytes | None:
    """One frame's body (blocking); None when the peer closed the pipe between frames."""
    header = read_exact(stream, HEADER_SIZE)
    if header is None:
        return None
    body = read_exact(stream, frame_length(header, limit))
    if body is None:  # a zero-length body is b"", never None; None means cut short
        raise FrameError("stream ended inside a frame")
    return body


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
