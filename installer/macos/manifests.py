"""Writes the system-wide native messaging manifests into the .pkg's staging root.

    python3 manifests.py STAGE_ROOT

Every browser family reads ``az.imza.agent.json`` from a directory of its own under
/Library (Chrome's and MDN's native messaging documentation); on macOS the "path" must be
absolute: the native host inside the installed app. The fields come from the agent
itself (agent.platform.native_messaging), as for the Linux and Windows packages.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from agent.platform.manifest_dirs import HOST_NAME
from agent.platform.native_messaging import (
    CHROMIUM_EXTENSION_ID,
    FIREFOX_EXTENSION_ID,
    host_manifest,
)

APP = Path("/Applications/imza-agent.app")
HOST_EXE = APP / "Contents" / "MacOS" / "imza-agent-native-host"
SYSTEM_DIRS = {
    "chrome": "Library/Google/Chrome/NativeMessagingHosts",
    "chromium": "Library/Application Support/Chromium/NativeMessagingHosts",
    "edge": "Library/Microsoft/Edge/NativeMessagingHosts",
    "firefox": "Library/Application Support/Mozilla/NativeMessagingHosts",
}


def write_manifests(stage: Path) -> list[Path]:
    written = []
    for browser, directory in SYSTEM_DIRS.items():
        family = "firefox" if browser == "firefox" else "chrome"
        ids = [FIREFOX_EXTENSION_ID] if family == "firefox" else [CHROMIUM_EXTENSION_ID]
        target = stage / directory / f"{HOST_NAME}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(host_manifest(family, HOST_EXE, ids), indent=2) + "\n",
                          encoding="utf-8")
        target.chmod(0o644)
        written.append(target)
    return written


def main() -> None:
    for path in write_manifests(Path(sys.argv[1])):
        print(path)


if __name__ == "__main__":
    main()
