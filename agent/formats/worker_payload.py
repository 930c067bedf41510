"""A document worker's job with its documents as raw frames, and its answer as only the
bytes the document did not have.

Pickling a 50 MB document copied it four times on its way to the worker (into the pickle,
behind the frame header, into the pipe transport's buffer, out of the pickle on the other
side), and the signed document came back whole although an incremental PDF update begins
with the very bytes the daemon sent.  So:

* daemon → worker: the job is pickled with protocol 5 and its large ``bytes`` values
  out of band (``pickle.PickleBuffer``): one small pickled frame saying how large each is,
  the pickle itself, then each document as a raw frame, written from the daemon's own
  bytes a slice at a time.  The worker reads each into one ``bytes`` (the only copy
  there) and unpickles the job around them;
* worker → daemon: when the result begins with one of the job's documents, the worker
  sends only what follows, with ``prefix`` naming that argument; the daemon, which still
  holds the document, puts the two together — or, for a request whose answer goes back
  as a binary frame after the page's upload (``agent.document_tail.allow_appended``),
  keeps them apart as an ``Appended``, which the transport sends without joining.  A
  worker cannot gain anything by it: it could as well send any bytes it liked as its
  result.  pyHanko's builder hands the worker its result in those two parts too
  (``agent.formats.update_stream``), so no process holds the signed document joined.

Stdlib only, like ``worker_wire``: the worker imports this before anything else.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any, BinaryIO

from agent import pipe_frames
from agent.document_tail import Appended, joined, may_append
from agent.formats import worker_wire
from agent.pipe_frames import HEADER

# Values at least this large travel out of band (smaller ones cost less in the pickle than
# a frame of their own).
OUT_OF_BAND_BYTES = 256 * 1024
# What the daemon writes into the pipe before it waits for the worker to read: the
# transport copies a slice only when the pipe is full, and then no more than this.
WRITE_SLICE = 1024 * 1024
# The most documents one job carries out of band (a batch: one per item).
MAX_BUFFERS = 10_000


def out_of_band(args: Mapping[str, Any]) -> dict[str, Any]:
    """``args`` with its large ``bytes`` values marked to travel as raw frames."""
    return {name: pickle.PickleBuffer(value)
            if type(value) is bytes and len(value) >= OUT_OF_BAND_BYTES else value
            for name, value in args.items()}


def encode_job(message: dict[str, Any]) -> tuple[bytes, list[memoryview]]:
    """The job's first frame (header included) and the documents to write after it, each
    as a frame of its own (``document_frames``)."""
    buffers: list[pickle.PickleBuffer] = []
    body = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    views = [buffer.raw() for buffer in buffers]
    head = worker_wire.encode_request({"job": body, "buffers": [v.nbytes for v in views]})
    return head, views


def document_frames(view: memoryview) -> list[bytes | memoryview]:
    """One out-of-band document as written to the pipe: its header, then its slices
    (views of the daemon's bytes: nothing is copied before the pipe takes it)."""
    return [HEADER.pack(view.nbytes),
            *(view[i:i + WRITE_SLICE] for i in range(0, view.nbytes, WRITE_SLICE))]


def read_job(stream: BinaryIO) -> dict[str, Any] | None:
    """In the worker: the daemon's job with its documents in place; None when the daemon
    closed the pipe (an idle spare being retired).  A first frame that is not a job
    envelope is the job itself (a daemon that sends everything in the pickle)."""
    envelope = worker_wire.read_request(stream)
    if envelope is None or "job" not in envelope:
        return envelope
    sizes = envelope.get("buffers")
    if not isinstance(sizes, list) or len(sizes) > MAX_BUFFERS:
        raise worker_wire.FrameError("malformed job envelope")
    documents: list[bytes] = []
    for size in sizes:
        # One read of exactly the announced size: BufferedReader fills one bytes object.
        body = pipe_frames.read_body(stream, size)
        if body is None or len(body) != size:
            raise worker_wire.FrameError("a document frame is cut short")
        documents.append(body)
    message = pickle.loads(envelope["job"], buffers=documents)
    if not isinstance(message, dict):
        raise worker_wire.FrameError("request is not a dict")
    return message


# --- the answer ---------------------------------------------------------------------------------

def result_prefix(result: bytes, args: Mapping[str, Any]) -> tuple[str, int] | None:
    """The job argument the result begins with (the largest), and its length."""
    best: tuple[str, int] | None = None
    for name, value in args.items():
        if type(value) is bytes and len(value) >= OUT_OF_BAND_BYTES \
                and len(value) <= len(result) and (best is None or len(value) > best[1]) \
                and result.startswith(value):
            best = (name, len(value))
    return best


def write_result_after(fd: int, result: bytes, prefix: tuple[str, int] | None) -> None:
    """``worker_wire.write_result``, or only the bytes after the job's argument ``prefix``
    names, with the answer saying so.  An ``Appended`` result is its tail already."""
    if prefix is None:
        worker_wire.write_result(fd, joined(result))
        return
    name, length = prefix
    # The update alone: a few KiB.
    tail = result if isinstance(result, Appended) else result[length:]
    if len(tail) > worker_wire.MAX_FRAME:
        raise worker_wire.FrameError(f"a result of {len(tail)} bytes is over the limit")
    worker_wire.write_answer(fd, {"type": "done", "bytes": len(tail),
                                  "prefix": {"argument": name, "bytes": length}})
    pipe_frames.write_all(fd, HEADER.pack(len(tail)))
    pipe_frames.write_all(fd, tail)


def appended_prefix(result: Appended, args: Mapping[str, Any]) -> tuple[str, int] | None:
    """The job argument an ``Appended`` result follows (that very object), and its
    length; None when it follows something else (then it is sent joined)."""
    for name, value in args.items():
        if value is result.document and type(value) is bytes:
            return name, len(value)
    return None


def joined_result(answer: Mapping[str, Any], args: Mapping[str, Any], tail: bytes) -> bytes:
    """In the daemon: the signed document from a "done" answer and its bytes: the job's
    argument it names in ``prefix`` (checked: a ``bytes`` argument of that very length)
    followed by ``tail``; ``tail`` itself when there is no prefix.

    Not joined where the caller allowed it for that document (``allow_appended``: a
    request whose answer goes back after the page's upload): an ``Appended`` then."""
    prefix = answer.get("prefix")
    if prefix is None:
        return tail
    if not isinstance(prefix, dict):
        raise worker_wire.FrameError("malformed result prefix")
    document = args.get(str(prefix.get("argument")))
    length = prefix.get("bytes")
    if type(document) is not bytes or type(length) is not int or length != len(document):
        raise worker_wire.FrameError("a result prefix that names no document of the job")
    if may_append(document):
        return Appended(tail, document)
    return document + tail
