#!/usr/bin/env bash
# Refreshes docs/screenshots/<language>/*.png: every dialog the agent draws (consent, picker,
# PIN with a text, a PDF preview, an XML preview, a batch and a hash-only request, PIN locked,
# PIN change and unblock, the signature.extend confirmation, the agent's own message) in every
# language, plus the PDF preview in the dark theme and at twice the scale
# (en/pin-pdf-dark.png, en/pin-pdf-scale-2.png), as the README and docs/ui.md show them. It
# runs tests/test_ui_qt_screenshots.py (the Qt UI process on a private Xvfb) with
# IMZA_WRITE_SCREENSHOTS=1; the test suite itself writes them to a temp dir only. Needs the
# `desktop` component (docs/testing.md; `bash scripts/test.sh` installs it). Review and
# commit the changed images. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export IMZA_WRITE_SCREENSHOTS=1
exec .venv/bin/python -m pytest -p no:cacheprovider -q \
  "tests/test_ui_qt_screenshots.py::test_screenshot_every_dialog" \
  "tests/test_ui_qt_screenshots.py::test_dark_theme_and_double_scale" "$@"
