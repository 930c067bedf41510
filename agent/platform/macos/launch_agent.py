"""Start at login on macOS: a LaunchAgent, ``~/Library/LaunchAgents/az.imza.agent.plist``,
read by launchd at login (an installer loads it at once with ``launchctl bootstrap
gui/<uid> <plist>``).

A machine install (the .pkg) puts the same label in ``/Library/LaunchAgents``; the user
cannot delete that file, so ``off`` then marks the label disabled in the user's domain
(``launchctl disable``), which launchd remembers, and ``on`` enables it again.
"""

from __future__ import annotations

import plistlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.platform.base import AutostartStatus
from agent.platform.macos.runner import Runner

LABEL = "az.imza.agent"
SYSTEM_AGENTS = Path("/Library/LaunchAgents")


def plist_bytes(argv: Sequence[str]) -> bytes:
    return plistlib.dumps({"Label": LABEL, "ProgramArguments": list(argv),
                           "RunAtLoad": True, "LimitLoadToSessionType": "Aqua",
                           "ProcessType": "Interactive"})


@dataclass
class LaunchAgentAutostart:
    run: Runner
    home: Path
    uid: int
    argv: Sequence[str]
    system_dir: Path = SYSTEM_AGENTS

    @property
    def user_plist(self) -> Path:
        return self.home / "Library" / "LaunchAgents" / f"{LABEL}.plist"

    @property
    def system_plist(self) -> Path:
        return self.system_dir / f"{LABEL}.plist"

    @property
    def domain(self) -> str:
        return f"gui/{self.uid}"

    def _disabled(self) -> bool:
        done = self.run(["launchctl", "print-disabled", self.domain])
        for line in done.stdout.splitlines():
            key, _, value = line.strip().partition("=>")
            if key.strip().strip('"') == LABEL:
                return value.strip() in ("true", "disabled")
        return False

    def status(self) -> AutostartStatus:
        if self.user_plist.exists():
            return AutostartStatus(True, self.user_plist, "user")
        if self.system_plist.exists():
            return AutostartStatus(not self._disabled(), self.system_plist, "system")
        return AutostartStatus(False, None, None)

    def _checked(self, argv: list[str]) -> None:
        done = self.run(argv)
        if done.returncode != 0:
            raise OSError(f"{' '.join(argv[:2])}: {done.stderr.strip() or done.returncode}")

    def set_enabled(self, on: bool) -> AutostartStatus:
        """Only what launchd reads at the next login changes: ``bootstrap`` now would start
        a second agent beside the running one, ``bootout`` would stop this one (the tray
        asking). The .pkg's postinstall bootstraps the system plist once instead."""
        if self.system_plist.exists():
            self._checked(["launchctl", "enable" if on else "disable",
                           f"{self.domain}/{LABEL}"])
            if not on:
                self.user_plist.unlink(missing_ok=True)
        elif on:
            self.user_plist.parent.mkdir(parents=True, exist_ok=True)
            self.user_plist.write_bytes(plist_bytes(self.argv))
        else:
            self.user_plist.unlink(missing_ok=True)
        return self.status()


def bootstrap_command(uid: int, plist: Path) -> list[str]:
    """What an installer runs to load the LaunchAgent into a logged-in user's session."""
    return ["launchctl", "bootstrap", f"gui/{uid}", str(plist)]
