"""WinSCard's "service started" event, behind a seam.

Since Windows 8 the Smart Card service runs only while a reader is attached: when the last
one is unplugged the service stops, and every call (``SCardEstablishContext`` included)
answers ``SCARD_E_NO_SERVICE`` until a reader comes back and the service starts again.
``SCardAccessStartedEvent`` returns an event that is signalled while the service runs, so
the watcher waits on it instead of polling a service that is merely idle (Microsoft's
documentation of SCardAccessStartedEvent and SCardReleaseStartedEvent).

pcsc-lite has no such event (and pcscd does not stop for want of readers): there
``load_started_event()`` answers None and the watcher keeps its Linux behaviour, where
``SCARD_E_NO_SERVICE`` really means that pcscd is not running.
"""

from __future__ import annotations

from typing import Protocol


class StartedEvent(Protocol):
    def wait(self, timeout: float) -> bool:
        """True once the smart card service runs; False after ``timeout`` seconds.
        Raises ``OSError`` when the event cannot be had."""


def load_started_event() -> StartedEvent | None:
    """The OS's "service started" event: WinSCard's on Windows, none elsewhere (the
    platform layer knows which)."""
    from agent.platform import current

    return current().smartcard_started_event()
