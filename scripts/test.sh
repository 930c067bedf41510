#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs what the tests need
# (Debian packages, a venv with the Python packages), checks lint and types, runs
# pytest.
# Safe to run twice. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh scripts/runtime-packages.txt scripts/system-packages.txt \
    installer/linux/build-packages.txt
bash scripts/venv.sh test,formats
.venv/bin/ruff check .
.venv/bin/mypy  # strict, over agent/ (pyproject.toml [tool.mypy])
# tests/e2e's npm packages: playwright-core and puppeteer-core for the browser end-to-end
# tests (no browser download), TypeScript for the .d.ts files of the page SDK and the Node
# verifier, xadesjs as an independent XAdES validator. Installed when any is missing.
if ! command -v node >/dev/null 2>&1 || ! (cd tests/e2e && node -e '
    const fs = require("fs");
    const deps = Object.keys(JSON.parse(fs.readFileSync("package.json")).dependencies);
    process.exit(deps.every((d) => fs.existsSync("node_modules/" + d)) ? 0 : 1);'); then
  if ! command -v npm >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]]; then sudo=(); else sudo=(sudo); fi
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends npm
  fi
  (cd tests/e2e && npm ci --no-audit --no-fund)
fi
exec .venv/bin/python -m pytest "$@"
