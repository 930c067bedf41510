"""How a program starts a process that outlives it: the native host starts the daemon,
which must stay when the browser ends the host (agent/daemon/launcher.py).

Linux and macOS: a session of its own (``setsid``), out of the host's process group.
Windows: ``start_new_session`` means nothing there; a process of its own group with no
console (``DETACHED_PROCESS``: no window flashes up, and the console's Ctrl+C does not
reach it). The browser's job object is left as it is: breaking away from it needs the
job to allow it, and Chrome and Firefox end the host, not the job's other processes.
"""

from __future__ import annotations

from typing import Any

from agent.platform import os_name

DETACHED_PROCESS = 0x0000_0008
CREATE_NEW_PROCESS_GROUP = 0x0000_0200


def detached_popen_options(system: str | None = None) -> dict[str, Any]:
    """Keyword arguments for ``subprocess.Popen`` (``system``: a ``sys.platform`` value,
    for the tests)."""
    if os_name(system) == "windows":
        return {"creationflags": DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}
