#!/usr/bin/env bash
# Runs the agent on this machine: installs it into .venv (once) and starts the daemon.
# With no token or configured key present, the agent offers its built-in demo identity.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh ""
exec .venv/bin/imza-agent run "$@"
