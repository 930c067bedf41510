#!/usr/bin/env bash
# Refreshes docs/screenshots/<language>/*.png: every dialog in every language, as the README
# and docs/ui.md show them. It runs the screenshot test of tests/test_ui_tk.py (on a private
# Xvfb, with SoftHSM's test certificates) with its output pointed at docs/screenshots/; the
# test suite itself writes them to a temp dir only. Needs the `desktop` and `softhsm`
# components (docs/testing.md; `bash scripts/test.sh` installs them). Review and commit the
# changed images. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export IMZA_SCREENSHOTS_DIR="$PWD/docs/screenshots"
exec .venv/bin/python -m pytest -p no:cacheprovider -q \
  "tests/test_ui_tk.py::test_screenshot_every_dialog" \
  "tests/test_ui_pin_dialogs.py::test_screenshot_pin_dialogs" "$@"
