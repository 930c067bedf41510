"""Whether the desktop the UI process draws on is there at all.

Two questions the supervisor asks: before starting the UI process (no display: no
process, dialogs are refused as with no desktop), and after it died (the display went
away: the person logged out, so the agent stops as for SIGTERM rather than restarting
a UI process that cannot draw).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path

_LOCAL_X = re.compile(r"^(?:unix)?:(\d+)(?:\.\d+)?$")


def has_display(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    # QT_QPA_PLATFORM names a platform of its own (offscreen, vnc, ...): Qt knows best.
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY") or env.get("QT_QPA_PLATFORM"))


def display_gone(env: Mapping[str, str] | None = None) -> bool:
    """True only when the local X display (or Wayland socket) in the environment is
    known to be gone; False when it answers or cannot be checked from here."""
    env = os.environ if env is None else env
    # A platform of its own (offscreen, vnc, ...): Qt knows best; xcb and wayland still
    # draw on the display checked below.
    platform = env.get("QT_QPA_PLATFORM", "")
    if platform and not platform.startswith(("xcb", "wayland")):
        return False
    wayland = env.get("WAYLAND_DISPLAY")
    if wayland:
        runtime = env.get("XDG_RUNTIME_DIR", "")
        path = Path(wayland) if wayland.startswith("/") else Path(runtime) / wayland
        return not _answers(str(path))
    match = _LOCAL_X.match(env.get("DISPLAY", ""))
    if match is None:
        return False  # a remote or unusual display: not ours to judge
    name = f"/tmp/.X11-unix/X{match.group(1)}"
    # An X server listens on the socket file and, on Linux, on the abstract name too.
    return not (_answers(name) or _answers("\0" + name))


def _answers(address: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(address)
        except OSError:
            return False
        return True
