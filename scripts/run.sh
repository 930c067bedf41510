#!/usr/bin/env bash
# Runs the agent on this machine: installs what it needs (once), starts the daemon in the
# tray and the demo portal, and opens the browser there. With no token or configured key
# present, the agent offers its built-in DEMO identity (PIN 0000).
# Extra arguments go to `imza-agent demo` (e.g. --no-browser, --port 8443).
# Run twice, it never starts a second agent: `demo` reuses the running one when its
# settings are the same, and otherwise (or when the portal's port is taken) says what runs
# and exits 1 (docs/cli.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh scripts/runtime-packages.txt
bash scripts/venv.sh formats
exec .venv/bin/imza-agent demo "$@"
