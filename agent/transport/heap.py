"""Giving memory back to the system after a large frame.

A document frame passes through buffers of tens of MiB (the frame, its text, the decoded
document). glibc's malloc serves blocks that large from ``mmap`` and unmaps them when freed,
but only up to its adaptive threshold: once a large block has been freed the threshold
rises (up to 32 MiB), and the next blocks below it come from the heap, where freed memory
stays mapped — the daemon's RSS would keep the high-water mark of its largest document.
``malloc_trim(0)`` hands the free pages back. Elsewhere (no glibc) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

# Frames at least this large are followed by a trim: small ones leave nothing to return.
TRIM_AFTER_BYTES = 1024 * 1024


def _malloc_trim() -> Callable[[int], int] | None:
    # Found only where glibc is: elsewhere there is no such symbol (or no libc to load).
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # musl has no malloc_trim
        return None
    return trim


_TRIM = _malloc_trim()


def release_free_memory() -> bool:
    """Return the allocator's free pages to the system; False where it cannot."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
