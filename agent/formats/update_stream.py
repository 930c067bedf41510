"""A PDF and its incremental updates as one seekable stream that holds the PDF once.

pyHanko signs "in place" (``in_place=True``): it appends the update to the stream it
read the document from, then fills the signature into it.  Over a ``BytesIO`` of the
document that would copy the 50 MB the first time it writes (the buffer is shared with
the ``bytes`` until then), and an output ``BytesIO`` holds a second copy of the
document before its update.  Here reads of the first ``len(document)`` bytes come from
the document itself, and writes, which an incremental update only makes after it,
go to a small buffer of their own.  ``appended()`` hands back the two parts.

Written here rather than taken from the library: pyHanko reads and writes any
seekable stream; what it lacks is one whose start is a read-only ``bytes``.
"""

from __future__ import annotations

import io
import os

from agent.document_tail import Appended, may_append


class UpdateStream(io.RawIOBase):
    """``document`` followed by what was written after it; see the module docstring."""

    def __init__(self, document: bytes) -> None:
        super().__init__()
        self.document = document
        self._view = memoryview(document)
        self._size = len(document)
        self._tail = bytearray()
        self._pos = 0

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            pos = offset
        elif whence == os.SEEK_CUR:
            pos = self._pos + offset
        elif whence == os.SEEK_END:
            pos = self._size + len(self._tail) + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def read(self, size: int | None = -1) -> bytes:
        # The reader's many small reads: a slice, without readinto's buffer.
        end = self._size + len(self._tail)
        stop = end if size is None or size < 0 else min(end, self._pos + size)
        start = self._pos
        if start >= stop:
            return b""
        self._pos = stop
        if stop <= self._size:
            return self.document[start:stop]
        if start >= self._size:
            return bytes(self._tail[start - self._size:stop - self._size])
        return self.document[start:] + self._tail[:stop - self._size]

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        target = memoryview(buffer).cast("B")
        end = self._size + len(self._tail)
        count = max(0, min(len(target), end - self._pos))
        start, stop = self._pos, self._pos + count
        if start < self._size:
            first = min(stop, self._size)
            target[:first - start] = self._view[start:first]
            if stop > self._size:
                target[first - start:count] = self._tail[:stop - self._size]
        elif count:
            target[:count] = self._tail[start - self._size:stop - self._size]
        self._pos = stop
        return count

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self._pos < self._size:
            # An incremental update never rewrites the document it follows.
            raise OSError("a write into the signed document's original bytes")
        offset = self._pos - self._size
        chunk = memoryview(data).cast("B")
        if offset > len(self._tail):
            self._tail.extend(bytes(offset - len(self._tail)))
        self._tail[offset:offset + len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)

    def appended(self) -> bytes:
        """The document with its updates: the update after the document (``Appended``)
        where the caller allowed it for this document, else joined."""
        if may_append(self.document):
            return Appended(self._tail, self.document)
        return self.document + self._tail
