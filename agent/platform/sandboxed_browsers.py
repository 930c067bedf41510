"""Snap and Flatpak browsers: which are installed, where they keep their certificates,
and whether their extension can reach the agent (docs/browsers.md).

A sandboxed browser has a home of its own: its NSS databases live there, not in
``~/.pki/nssdb`` or ``~/.mozilla``, so the agent installs its CA there too
(``agent/tls/nss.py`` knows the places).  Its native messaging is the harder part: a
strictly confined browser cannot start the agent's native messaging host.  Snap Firefox
asks the WebExtensions portal of xdg-desktop-portal to start it; the other sandboxed
browsers have no way at all, and pages there reach the agent over ``wss://`` only.

Detection is cheap and read-only: ``/snap/bin/<name>``, the flatpak ``app`` folders of the
user and of the system, and (``commands=True``, for the doctor) ``snap list`` and
``flatpak list --app`` when those programs are on PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.tls.nss import CHROMIUM_DBS, FIREFOX_ROOTS, firefox_root

Packaging = Literal["snap", "flatpak"]
Family = Literal["firefox", "chromium"]

# A bound on `snap list` / `flatpak list` / the portal probe: a stuck snapd or session
# bus must not hang the doctor.
COMMAND_TIMEOUT = 10.0
SNAP_BIN = Path("/snap/bin")
SYSTEM_FLATPAK = Path("/var/lib/flatpak")
PORTAL_INTERFACE = "org.freedesktop.portal.WebExtensions"

# snap name -> (name for a person, family)
KNOWN_SNAPS: dict[str, tuple[str, Family]] = {
    "firefox": ("Firefox", "firefox"),
    "chromium": ("Chromium", "chromium"),
    "brave": ("Brave", "chromium"),
}
# flatpak application ID -> (name for a person, family)
KNOWN_FLATPAKS: dict[str, tuple[str, Family]] = {
    "org.mozilla.firefox": ("Firefox", "firefox"),
    "org.chromium.Chromium": ("Chromium", "chromium"),
    "com.google.Chrome": ("Google Chrome", "chromium"),
    "com.brave.Browser": ("Brave", "chromium"),
    "com.microsoft.Edge": ("Microsoft Edge", "chromium"),
    "io.gitlab.librewolf-community": ("LibreWolf", "firefox"),
}


@dataclass(frozen=True)
class SandboxedBrowser:
    name: str  # "Firefox"
    packaging: Packaging
    app_id: str  # the snap's name or the flatpak application ID
    family: Family
    evidence: str  # how it was found: a path or the command that listed it
    nss_dirs: tuple[Path, ...]  # where its NSS databases live (may not exist yet)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.packaging})"

    @property
    def store_known(self) -> bool:
        """Whether the agent knows where this browser keeps its certificates."""
        return bool(self.nss_dirs)

    @property
    def native_messaging(self) -> Literal["portal", "none"]:
        """How its extension can start the agent's native host: only snap Firefox has a
        way (the WebExtensions portal); every other sandboxed browser has none."""
        return "portal" if (self.packaging, self.family) == ("snap", "firefox") else "none"

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "packaging": self.packaging, "appId": self.app_id,
                "family": self.family, "evidence": self.evidence,
                "nssDirs": [str(p) for p in self.nss_dirs],
                "nativeMessaging": self.native_messaging}


def detect(home: Path, *, env: Mapping[str, str] | None = None, commands: bool = False,
           snap_bin: Path = SNAP_BIN, system_flatpak: Path = SYSTEM_FLATPAK
           ) -> list[SandboxedBrowser]:
    """The snap and flatpak browsers installed for this user, each once."""
    environ = dict(os.environ if env is None else env)
    found: dict[tuple[Packaging, str], str] = {}
    for snap in KNOWN_SNAPS:
        if os.path.lexists(snap_bin / snap):  # a symlink to /usr/bin/snap
            found.setdefault(("snap", snap), str(snap_bin / snap))
    user_flatpak = _xdg_data_home(home, environ) / "flatpak"
    for app_id in KNOWN_FLATPAKS:
        for root in (user_flatpak, system_flatpak):
            if (root / "app" / app_id).is_dir():
                found.setdefault(("flatpak", app_id), str(root / "app" / app_id))
    if commands:
        for snap in _listed(["snap", "list"], environ, _snap_names):
            if snap in KNOWN_SNAPS:
                found.setdefault(("snap", snap), "snap list")
        for app_id in _listed(["flatpak", "list", "--app", "--columns=application"],
                              environ, _flatpak_ids):
            if app_id in KNOWN_FLATPAKS:
                found.setdefault(("flatpak", app_id), "flatpak list")
    browsers = []
    for (packaging, app_id), evidence in sorted(found.items()):
        name, family = (KNOWN_SNAPS if packaging == "snap" else KNOWN_FLATPAKS)[app_id]
        browsers.append(SandboxedBrowser(name, packaging, app_id, family, evidence,
                                         _nss_dirs(home, packaging, app_id, environ)))
    return browsers


def webextensions_portal(env: Mapping[str, str] | None = None) -> bool | None:
    """Whether the session's xdg-desktop-portal offers the WebExtensions portal (which
    snap Firefox needs to start native messaging hosts); None when it cannot be asked
    (no session bus, no ``gdbus``)."""
    environ = dict(os.environ if env is None else env)
    if not environ.get("DBUS_SESSION_BUS_ADDRESS") and not environ.get("XDG_RUNTIME_DIR"):
        return None
    gdbus = shutil.which("gdbus", path=environ.get("PATH"))
    if gdbus is None:
        return None
    try:
        done = subprocess.run(
            [gdbus, "introspect", "--session", "--dest", "org.freedesktop.portal.Desktop",
             "--object-path", "/org/freedesktop/portal/desktop"],
            capture_output=True, text=True, timeout=COMMAND_TIMEOUT, env=environ,
            stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None  # no portal service on this bus, or no bus: cannot tell
    return PORTAL_INTERFACE in done.stdout


# --- internals ------------------------------------------------------------------------

def _xdg_data_home(home: Path, env: Mapping[str, str]) -> Path:
    configured = env.get("XDG_DATA_HOME", "")
    return Path(configured) if os.path.isabs(configured) else home / ".local/share"


def _nss_dirs(home: Path, packaging: Packaging, app_id: str,
              env: Mapping[str, str]) -> tuple[Path, ...]:
    """Where ``agent.tls.nss`` looks for this browser's databases (the same table)."""
    marker = f"snap/{app_id}/" if packaging == "snap" else f".var/app/{app_id}/"
    dirs = [home / rel for _, rel, _ in CHROMIUM_DBS if rel.startswith(marker)]
    dirs += [firefox_root(home, rel, env) for _, rel in FIREFOX_ROOTS if rel.startswith(marker)]
    return tuple(dirs)


def _listed(command: list[str], env: Mapping[str, str],
            parse: Callable[[str], list[str]]) -> list[str]:
    program = shutil.which(command[0], path=env.get("PATH"))
    if program is None:
        return []
    try:
        done = subprocess.run([program, *command[1:]], capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT, env=dict(env),
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse(done.stdout) if done.returncode == 0 else []


_SNAP_LINE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9-]*)\s+\S")
_FLATPAK_ID = re.compile(r"^[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*){2,}$")


def _snap_names(text: str) -> list[str]:
    """Names from ``snap list`` (a header line, then one snap per line)."""
    lines = text.splitlines()
    return [m["name"] for line in lines[1:] if (m := _SNAP_LINE.match(line))]


def _flatpak_ids(text: str) -> list[str]:
    """Application IDs from ``flatpak list --app`` in either form: one ID per line
    (``--columns=application``) or the tab-separated table."""
    ids = []
    for line in text.splitlines():
        for cell in re.split(r"\t|\s{2,}", line.strip()):
            if _FLATPAK_ID.match(cell):
                ids.append(cell)
                break
    return ids
