"""A signed document that is a document the caller already holds followed by a few bytes
(a PAdES incremental update), kept in those two parts instead of one joined copy.

Joining a 50 MB PDF to its few-KiB update costs a 50 MB copy in the document worker
(pyHanko's output), another in the daemon, and then the transport compares the two
copies byte for byte to find that the page already has the first 50 MB.  An
``Appended`` result carries the parts: its own value is the update, its ``document``
the very object it follows.

Only a consumer that asked for it gets one (``allow_appended``), because as ``bytes``
its value is the update alone: the document worker for a single job's documents, the
daemon for a request whose answer goes back as a binary frame after the page's upload.
Everyone else gets the joined document, as before.

Stdlib only: the document worker imports this before the format libraries, and the
transport, which must not import ``agent.formats``, recognises the type.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator


class Appended(bytes):
    """``document`` followed by this object's own bytes (the update)."""

    document: bytes

    def __new__(cls, tail: bytes | bytearray | memoryview, document: bytes) -> Appended:
        value = super().__new__(cls, tail)
        value.document = document
        return value

    def __bytes__(self) -> bytes:
        # ``bytes(x)`` (what a model's binary field does with a value a handler built)
        # keeps the object, so the transport still sees the parts.
        return self

    @property
    def total(self) -> int:
        """The length of the signed document."""
        return len(self.document) + super().__len__()

    def update(self) -> bytes:
        """The update as plain ``bytes``: a small copy that does not keep the document
        alive wherever it goes next."""
        return bytes.__bytes__(self)

    def whole(self) -> bytes:
        """The signed document as one ``bytes`` (the copy the parts avoid)."""
        return self.document + bytes.__bytes__(self)


class _Leave:
    """The documents one ``allow_appended`` block names; emptied when the block ends,
    because every task started inside it keeps the context (a spare worker's start
    task, for one, outlives the request) and must not keep the documents with it."""

    def __init__(self, documents: tuple[bytes, ...]) -> None:
        self.documents = documents


_allowed: contextvars.ContextVar[_Leave | None] = contextvars.ContextVar(
    "appended_allowed", default=None)


@contextlib.contextmanager
def allow_appended(*documents: bytes) -> Iterator[None]:
    """Within this block (and the tasks it starts, while it lasts), a result that begins
    with one of ``documents`` (those very objects) may be returned as ``Appended`` to it."""
    leave = _Leave(documents)
    token = _allowed.set(leave)
    try:
        yield
    finally:
        leave.documents = ()
        _allowed.reset(token)


def may_append(document: object) -> bool:
    """Whether ``document`` (this very object) may be the prefix of an ``Appended``."""
    leave = _allowed.get()
    return leave is not None and any(document is allowed for allowed in leave.documents)


def joined(value: bytes) -> bytes:
    """``value`` as one plain document: an ``Appended`` joined, anything else as it is."""
    return value.whole() if isinstance(value, Appended) else value
