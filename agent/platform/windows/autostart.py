"""Start at login on Windows: a value named ``imza-agent`` under
``HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run`` holding the command line.

A machine install may put the same value under ``HKLM``; this user cannot change that one,
so ``off`` then says the system entry decides (as a Linux system autostart entry does),
and ``on`` writes the user's value only when no system value starts the agent already.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent.platform.base import AutostartStatus
from agent.platform.windows.registry import Registry, join

RUN_KEY = "Software\\Microsoft\\Windows\\CurrentVersion\\Run"
VALUE_NAME = "imza-agent"


def command_line(argv: Sequence[str]) -> str:
    """Each argument in double quotes, as CommandLineToArgvW reads them back (our paths
    and verbs hold no quotes)."""
    return " ".join(f'"{a}"' if (" " in a or not a) else a for a in argv)


@dataclass
class RunKeyAutostart:
    registry: Registry
    argv: Sequence[str]  # e.g. ["C:\\Program Files\\imza-agent\\imza-agent.exe", "run"]

    def status(self) -> AutostartStatus:
        if self.registry.get("HKCU", RUN_KEY, VALUE_NAME) is not None:
            return AutostartStatus(True, join("HKCU", f"{RUN_KEY}\\{VALUE_NAME}"), "user")
        if self.registry.get("HKLM", RUN_KEY, VALUE_NAME) is not None:
            return AutostartStatus(True, join("HKLM", f"{RUN_KEY}\\{VALUE_NAME}"), "system")
        return AutostartStatus(False, None, None)

    def set_enabled(self, on: bool) -> AutostartStatus:
        if on:
            if self.registry.get("HKLM", RUN_KEY, VALUE_NAME) is None:
                self.registry.set("HKCU", RUN_KEY, VALUE_NAME, command_line(self.argv))
        else:
            self.registry.delete_value("HKCU", RUN_KEY, VALUE_NAME)
        return self.status()
