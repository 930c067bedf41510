#!/usr/bin/env python3
"""Build the browser extension's packages from this checkout: one command, no node.

    python3 installer/extension/package.py [--out DIR] [--json]

writes DIR/imza-agent-chromium-<version>.zip (Chromium, Google Chrome, Microsoft Edge,
Brave: the fixed "key" keeps the extension ID the native host allows) and
DIR/imza-agent-firefox-<version>.xpi (signed-ready: the manifest at the root, the add-on ID
in browser_specific_settings.gecko.id), default DIR dist/extension. It is the packager the
installed agent runs as `imza-agent extension` (agent/browser_extension), run from the
checkout on any python3 >= 3.11 with nothing installed. docs/extension.md says what to do
with the two files.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    sys.path.insert(0, str(REPO))
    from agent.browser_extension import main as package_main

    argv = sys.argv[1:]
    if "--out" not in argv and not any(a.startswith("--out=") for a in argv):
        argv = ["--out", str(REPO / "dist" / "extension"), *argv]
    return package_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
