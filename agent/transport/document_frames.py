"""What the frame session does with the frames of the methods that carry a document
(``agent.protocol.params.DOCUMENT_FIELDS``: sign.pdf, sign.cms).

Their frames may be far larger than any other method's (``[server]
max_document_frame_bytes`` against ``max_frame_bytes``), so the session checks them apart:

- a frame over ``max_frame_bytes`` whose ``method`` (read from the frame's first few hundred
  characters, as its ``id``) is not a document method is answered TOO_LARGE with the limit,
  unparsed, and the connection stays open;
- a document whose decoded size (computed from its base64 length, before decoding) is over
  ``max_document_bytes`` is answered TOO_LARGE with the limit;
- otherwise the document is decoded here, once, and the base64 text dropped: the daemon
  then holds the document's bytes only, not its base64 as well for as long as the
  signature takes (the params model takes the bytes as they are, without a copy).

A member that came as an upload (agent/transport/uploads.py) is bytes already: it counts
with its size against the same limit.
"""

from __future__ import annotations

import binascii
import contextlib
from typing import Any

from agent.errors import TooLarge
from agent.protocol import jsonrpc
from agent.protocol.params import DOCUMENT_EXTRA_FIELDS, DOCUMENT_FIELDS


def too_large(msg_id: jsonrpc.JsonRpcId | None, limit: int, what: str) -> str:
    """The TOO_LARGE answer naming the limit (``data.limit``, bytes)."""
    return jsonrpc.error_frame(msg_id, TooLarge(f"{what} is over the limit of {limit} bytes",
                                                limit=limit).to_wire())


def decoded_size(text: str) -> int:
    """The size of what a base64 text decodes to (exact for well-formed base64; the
    decoding itself still checks it)."""
    padding = 2 if text.endswith("==") else 1 if text.endswith("=") else 0
    return max(0, len(text) // 4 * 3 + (len(text) % 4) * 3 // 4 - padding)


def prepare_document(message: jsonrpc.Request, max_document_bytes: int) -> str | None:
    """For a document method: the TOO_LARGE answer when the document is over the limit,
    else None, having put the decoded document in ``params`` in place of its base64.
    Anything malformed is left as it is, for the params model to report."""
    field = DOCUMENT_FIELDS.get(message.method)
    params: Any = message.params
    if field is None or not isinstance(params, dict):
        return None
    if not isinstance(params.get(field), str | bytes):
        return None
    members = [field, *(name for name in DOCUMENT_EXTRA_FIELDS.get(message.method, ())
                        if isinstance(params.get(name), str | bytes))]
    if sum(_size(params[name]) for name in members) > max_document_bytes:
        return too_large(message.id, max_document_bytes, "the document")
    # Not standard base64: left as it is, for the params model to say so.
    for name in members:
        if isinstance(params[name], str):
            with contextlib.suppress(binascii.Error, ValueError):
                params[name] = binascii.a2b_base64(params[name], strict_mode=True)
    return None


def _size(value: str | bytes) -> int:
    return len(value) if isinstance(value, bytes) else decoded_size(value)
