"""Everything that depends on the operating system, behind one interface.

``current()`` picks the Linux, Windows or macOS implementation of ``base.Platform`` once,
at first use; the rest of the agent asks it for a trust store, a native messaging
registrar, autostart, the relay endpoint, the peer check, paths and the like, and never
asks which OS it runs on (tests/test_platform_layer.py scans agent/ for that). This package
is the only place that reads ``sys.platform``. docs/platforms.md describes each OS.

Also here, predating the layer: Snap/Flatpak browser detection (``sandboxed_browsers``),
the journal's secret store (``secrets``), the XDG autostart entry (``autostart``) and the
/proc/net/tcp peer lookup (``peer``).
"""

from __future__ import annotations

import functools
import os
import sys

from agent.platform.base import OsName, Platform


def os_name(system: str | None = None) -> OsName:
    system = sys.platform if system is None else system
    if system == "win32":
        return "windows"
    if system == "darwin":
        return "macos"
    return "linux"  # and the other Unix systems: XDG, Unix sockets


def reuses_listening_addresses() -> bool:
    """Whether a listening socket sets SO_REUSEADDR, as asyncio's ``create_server`` does:
    on Unix a restarted daemon may then take its port while old connections are in
    TIME_WAIT; on Windows (and Cygwin) the option would let another program bind the
    same port, so it is left off there."""
    return os.name == "posix" and sys.platform != "cygwin"


@functools.cache
def current() -> Platform:
    """This machine's platform, built once."""
    return build(os_name())


def build(name: OsName) -> Platform:  # pragma: no cover - each branch needs its OS
    if name == "windows":
        from agent.platform.autostart import agent_command
        from agent.platform.windows import WindowsPlatform

        return WindowsPlatform.real(os.environ, agent_command)
    if name == "macos":
        from agent.platform.autostart import agent_command
        from agent.platform.macos import MacPlatform
        from agent.platform.macos.keychain_store import SecurityFramework
        from agent.platform.macos.runner import run

        return MacPlatform(run, os.getuid(), agent_command,
                           elevated=os.geteuid() == 0, security=SecurityFramework())
    from agent.platform.linux import LinuxPlatform

    return LinuxPlatform()
