"""The daemon's last step before it exits: its remaining children (PKCS#11 workers, the
frame parser, document workers, the Qt UI process) have had their orderly chance and are
SIGKILLed, so none outlives the agent holding a token session or a window.

Linux lists them from /proc. macOS has no /proc and no cheap list of another process's
children: none are known there, as before (its workers end when their pipe to the daemon
closes). Windows does not come here (``WindowsPlatform.end_workers``)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable
from pathlib import Path


def child_pids(parent: int) -> list[int]:
    """The live children of ``parent`` (from /proc; none where there is no /proc)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        # "pid (comm) state ppid ...": the command name may itself hold ") ".
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == parent and state != "Z":
            found.append(int(entry.name))
    return found


def end_children(spared: Iterable[int]) -> list[int]:
    """SIGKILL this process's children in its own session, but ``spared``; a program it
    started in a session of its own (xdg-open showing the journal) is left running.
    Returns the pids signalled."""
    children = child_pids(os.getpid())
    if not children:
        return []
    own_session = os.getsid(0)
    keep = set(spared)
    killed = []
    for pid in children:
        if pid in keep:
            continue
        with contextlib.suppress(OSError):
            if os.getsid(pid) != own_session:
                continue
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed
