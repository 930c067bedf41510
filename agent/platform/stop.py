"""The daemon asks itself to stop in its orderly way (the tray's Quit, the display gone):
its SIGTERM handler (agent/daemon/run.py) runs either way.

Linux and macOS: ``kill(own pid, SIGTERM)``. Windows: ``os.kill`` with SIGTERM would be
``TerminateProcess`` — an end without the orderly stop — so the signal is raised inside
the process instead (the C runtime's ``raise``), which runs the same Python handler;
asyncio's Proactor loop wakes for it (``signal.set_wakeup_fd``).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from agent.platform import os_name


def stop_this_process(system: str | None = None, *,
                      kill: Callable[[int, int], None] = os.kill,
                      raise_signal: Callable[[int], None] = signal.raise_signal) -> None:
    """``system``, ``kill`` and ``raise_signal``: for the tests."""
    if os_name(system) == "windows":
        raise_signal(signal.SIGTERM)
    else:
        kill(os.getpid(), signal.SIGTERM)
