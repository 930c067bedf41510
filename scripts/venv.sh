#!/usr/bin/env bash
# Creates .venv (once) and installs the agent into it with the given extras.
# Usage: scripts/venv.sh EXTRAS   e.g. scripts/venv.sh test,formats
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-}
if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
fi
# Reinstall only when pyproject.toml changed since the last install.
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)-${extras//,/_}
if [[ ! -f $stamp ]]; then
    .venv/bin/python -m pip install -q -e ".${extras:+[$extras]}"
    touch "$stamp"
fi
