"""Framing between the daemon and a PKCS#11 worker: 4-byte big-endian length + JSON.

Binary values travel as base64 strings (``b64``/``unb64``).  Both sides refuse frames over
``MAX_FRAME`` so a confused or hostile peer cannot make the other allocate gigabytes.
This module is imported by the worker, so it must stay stdlib-only and cheap to import
(the frames themselves are ``agent/pipe_frames.py``, shared with the document workers).
"""

from __future__ import annotations

import base64
from typing import Any, BinaryIO

from agent import pipe_frames
from agent.pipe_frames import HEADER_SIZE, FrameError

# The Cryptoki struct packing of this platform, given to the worker by the daemon (the
# platform layer's ``pkcs11_pack``; "0" for natural alignment): the worker then need not
# build the platform layer, which imports asyncio, to learn one number (start-up time
# and memory of every worker, issue 17).
PACK_VARIABLE = "IMZA_AGENT_PKCS11_PACK"

__all__ = ["HEADER_SIZE", "MAX_FRAME", "FrameError", "b64", "decode_body", "encode_frame",
           "frame_length", "read_frame", "unb64", "write_frame"]

MAX_FRAME = 64 * 1024 * 1024


def encode_frame(message: dict[str, Any]) -> bytes:
    return pipe_frames.encode_json(message, MAX_FRAME)


def frame_length(header: bytes) -> int:
    return pipe_frames.frame_length(header, MAX_FRAME)


def decode_body(body: bytes) -> dict[str, Any]:
    return pipe_frames.decode_json_object(body)


def b64(data: bytes | bytearray | None) -> str | None:
    return None if data is None else base64.b64encode(bytes(data)).decode("ascii")


def unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text, validate=True)


# --- blocking I/O, used by the worker ------------------------------------------------------

def read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    body = pipe_frames.read_body(stream, MAX_FRAME)
    return None if body is None else decode_body(body)


def write_frame(fd: int, message: dict[str, Any]) -> None:
    pipe_frames.write_all(fd, encode_frame(message))
