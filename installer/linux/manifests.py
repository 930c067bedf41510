"""Writes the system-wide native messaging manifests into a package's staging root.

    python3 manifests.py STAGE_ROOT HOST_PATH

The host name and extension IDs come from the agent itself, so the package and
`imza-agent native-host install` can never disagree."""

from __future__ import annotations

import json
import sys
from pathlib import Path

# The manifest fields are the agent's own, from the copy being packaged (PYTHONPATH).
from agent.platform.native_messaging import (
    CHROMIUM_EXTENSION_ID,
    FIREFOX_EXTENSION_ID,
    HOST_NAME,
    host_manifest,
)

# Where each browser looks for system-wide hosts on Linux.
SYSTEM_DIRS = {
    "chromium": "etc/chromium/native-messaging-hosts",
    "chrome": "etc/opt/chrome/native-messaging-hosts",
    "edge": "etc/opt/edge/native-messaging-hosts",
    "brave": "etc/opt/brave/native-messaging-hosts",
    "firefox": "usr/lib/mozilla/native-messaging-hosts",
}


def main() -> None:
    stage, host_path = Path(sys.argv[1]), Path(sys.argv[2])
    for browser, directory in SYSTEM_DIRS.items():
        family = "firefox" if browser == "firefox" else "chrome"
        ids = [FIREFOX_EXTENSION_ID] if family == "firefox" else [CHROMIUM_EXTENSION_ID]
        target = stage / directory / f"{HOST_NAME}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(host_manifest(family, host_path, ids), indent=2) + "\n",
                          encoding="utf-8")
        target.chmod(0o644)


if __name__ == "__main__":
    main()
