"""Framing between the daemon and a document worker: a 4-byte big-endian length, then the
body.  The two directions differ on purpose:

* daemon → worker: ``pickle``.  The worker trusts the daemon, and pickle carries the
  job's dataclasses (``NetworkSettings``, ``Stamp``) unchanged.
* worker → daemon: JSON, binary values as base64.  The worker has read a hostile
  document and may have been subverted by it; the daemon never unpickles what it says,
  and refuses frames over ``MAX_FRAME``.  The signed document itself comes as raw bytes
  in a frame of its own, announced by the JSON frame before it (``write_result``): as
  base64 in JSON it cost both processes a third more memory and a second per 50 MB.

Stdlib only: the worker imports this before anything else.
"""

from __future__ import annotations

import base64
import pickle
from typing import Any, BinaryIO

from agent import pipe_frames
from agent.pipe_frames import HEADER, HEADER_SIZE, FrameError

__all__ = ["HEADER_SIZE", "MAX_FRAME", "FrameError", "b64", "decode_answer",
           "encode_request", "frame_length", "read_request", "unb64", "write_answer",
           "write_result", "write_results"]

# A signed document (base64) with its validation data: a document of the default
# ``[server] max_document_bytes`` (100 MiB) is 134 MiB as base64.
MAX_FRAME = 192 * 1024 * 1024
# What the worker accepts from the daemon, which it trusts: any length the header can say.
_FROM_DAEMON = 2**32 - 1


def frame_length(header: bytes) -> int:
    return pipe_frames.frame_length(header, MAX_FRAME)


# --- daemon side ---------------------------------------------------------------------------

def encode_request(message: dict[str, Any]) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


def decode_answer(body: bytes) -> dict[str, Any]:
    return pipe_frames.decode_json_object(body)


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

def read_request(stream: BinaryIO) -> dict[str, Any] | None:
    """The daemon's next message; None when the daemon closed the pipe."""
    body = pipe_frames.read_body(stream, _FROM_DAEMON)
    if body is None:
        return None
    message = pickle.loads(body)
    if not isinstance(message, dict):
        raise FrameError("request is not a dict")
    return message


def write_answer(fd: int, message: dict[str, Any]) -> None:
    pipe_frames.write_all(fd, pipe_frames.encode_json(message, MAX_FRAME))


def write_result(fd: int, data: bytes) -> None:
    """The built signature or document: a JSON frame saying how many bytes follow, then
    those bytes as a frame of their own."""
    if len(data) > MAX_FRAME:
        raise FrameError(f"a result of {len(data)} bytes is over the limit")
    write_answer(fd, {"type": "done", "bytes": len(data)})
    pipe_frames.write_all(fd, HEADER.pack(len(data)))
    pipe_frames.write_all(fd, data)


def write_results(fd: int, documents: list[bytes]) -> None:
    """A batch's documents, in item order: one frame holding them all, announced with
    each one's size (the daemon splits it; one frame per item would cost a header and a
    JSON answer each for nothing)."""
    total = sum(len(d) for d in documents)
    if total > MAX_FRAME:
        raise FrameError(f"results of {total} bytes are over the limit")
    write_answer(fd, {"type": "done", "bytes": total, "items": [len(d) for d in documents]})
    pipe_frames.write_all(fd, HEADER.pack(total))
    for document in documents:
        pipe_frames.write_all(fd, document)
