#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs what the tests need
# (Debian packages, a venv with the Python packages), checks lint, runs pytest.
# Safe to run twice. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh
bash scripts/venv.sh test,formats
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
