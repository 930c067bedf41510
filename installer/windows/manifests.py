"""Writes the Windows native messaging manifests into the frozen build's directory.

    python manifests.py PAYLOAD_DIR

Two files beside the executables: az.imza.agent.chromium.json (Chrome, Edge, Chromium,
Brave) and az.imza.agent.firefox.json. Their "path" is the bare file name of the native host
executable: on Windows both Chromium and Firefox resolve a relative path against the
manifest's own directory, so the files stay correct wherever the MSI puts INSTALLDIR and
need no rewriting at install time (wixl has no XML/JSON editing actions). The registry
values the MSI writes point at these files (imza-agent.wxs).

The host name and extension IDs come from the agent itself (PYTHONPATH = the checkout or
the build's site-packages), so the MSI and `imza-agent native-host install` agree.
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

HOST_EXE = "imza-agent-native-host.exe"
FILES = {"chromium": f"{HOST_NAME}.chromium.json", "firefox": f"{HOST_NAME}.firefox.json"}


def write_manifests(payload: Path) -> list[Path]:
    written = []
    for family, name in FILES.items():
        ids = [FIREFOX_EXTENSION_ID] if family == "firefox" else [CHROMIUM_EXTENSION_ID]
        manifest = host_manifest("firefox" if family == "firefox" else "chrome",
                                 Path(HOST_EXE), ids)
        manifest["path"] = HOST_EXE  # a bare name on every build OS, never a POSIX path
        target = payload / name
        # CRLF is not needed: both browsers parse the JSON, Notepad shows LF fine since 2018.
        target.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        written.append(target)
    return written


def main() -> None:
    for path in write_manifests(Path(sys.argv[1])):
        print(path)


if __name__ == "__main__":
    main()
