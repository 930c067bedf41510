"""The journal, opened once the daemon listens and its key stores are ready.

Opening a :class:`~agent.journal.Journal` starts its keyring thread, which imports the
keyring package and its backends and probes the OS keyring (30–55 ms of CPU, and
competing for the interpreter lock with the main thread). During start-up that time
would come out of spawn → first accepted connection (issue 17, bar 6), so the runtime
opens the journal a moment after the first look at the tokens (``runtime.py``
``_JOURNAL_AFTER``); a request that reaches the journal earlier opens it then. Either way
the keyring (and an unlock prompt it may show) is met at start, as before, rather than
at the first journal line.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.journal import Journal


class DeferredJournal:
    """Stands in for the journal (``JournalPort``) until :meth:`open` makes it."""

    def __init__(self, make: Callable[[], Journal]) -> None:
        self._make = make
        self._journal: Journal | None = None
        self._lock = threading.Lock()  # close() runs on a thread of its own

    @property
    def opened(self) -> Journal | None:
        return self._journal

    def open(self) -> Journal:
        with self._lock:
            if self._journal is None:
                self._journal = self._make()
            return self._journal

    def append(self, *, origin: str, method: str, certificate_sha256: str | None,
               digest_algorithm: str | None, digest_hex: str | None, result: str,
               count: int = 1) -> object:
        return self.open().append(origin=origin, method=method,
                                  certificate_sha256=certificate_sha256,
                                  digest_algorithm=digest_algorithm, digest_hex=digest_hex,
                                  result=result, count=count)

    @property
    def path(self) -> object:
        return self.open().path

    def flush(self, timeout: float = 10.0) -> bool:
        return self.open().flush(timeout)

    def close(self, timeout: float) -> None:
        """A journal never opened has written nothing: there is nothing to close."""
        with self._lock:
            journal = self._journal
        if journal is not None:
            journal.close(timeout)
