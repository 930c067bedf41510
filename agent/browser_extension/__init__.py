"""The browser extension's installable packages, made from the sources this package carries.

``manifest.base.json`` and ``src/`` here are symlinks to ``extension/`` in the checkout: the
wheel build copies the files they point at, so the wheel (and the .deb made from it) holds
the extension's sources without a second copy in the tree. The extension has no build step
but merging its manifest, so the packages are made here, in Python, when asked for — the
wheel and the .deb need no node:

- Chromium, Google Chrome, Microsoft Edge, Brave: a zip with the fixed ``key`` in its
  manifest, so the extension ID is the one the native host manifests allow;
- Firefox: a signed-ready .xpi, a zip with ``manifest.json`` at its root and the add-on ID
  in ``browser_specific_settings.gecko.id``, to send to AMO for (unlisted) signing.

The manifest is merged exactly as ``extension/build.mjs`` does (tests/test_extension_package.py
checks the two agree), and the archives are reproducible: sorted names, fixed times, fixed
modes, so the same sources give the same bytes.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import zipfile
from collections.abc import Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "firefox")
SUFFIX = {"chromium": "zip", "firefox": "xpi"}
# The earliest time a zip can say (1980-01-01); SOURCE_DATE_EPOCH, when set, wins.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _sources() -> Traversable:
    return resources.files(__name__)


def base_manifest() -> dict[str, Any]:
    text = (_sources() / "manifest.base.json").read_text(encoding="utf-8")
    base: dict[str, Any] = json.loads(text)
    return base


def manifest(browser: str) -> dict[str, Any]:
    """The browser's manifest.json: the common part with the browser's section over it
    (a shallow merge, as build.mjs's ``{...base.common, ...base[browser]}``)."""
    if browser not in BROWSERS:
        raise ValueError(f"unknown browser family {browser!r}")
    base = base_manifest()
    return {**base["common"], **base[browser]}


def manifest_text(browser: str) -> str:
    # The same bytes as JSON.stringify(manifest, null, 2) + "\n" in build.mjs.
    return json.dumps(manifest(browser), indent=2, ensure_ascii=False) + "\n"


def source_files() -> dict[str, bytes]:
    """The extension's scripts and schema by name (what build.mjs copies from src/)."""
    src = _sources() / "src"
    return {entry.name: entry.read_bytes() for entry in src.iterdir() if entry.is_file()}


def package_name(browser: str) -> str:
    return f"imza-agent-{browser}-{manifest(browser)['version']}.{SUFFIX[browser]}"


def _zip_time() -> tuple[int, int, int, int, int, int]:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return ZIP_EPOCH
    import time

    moment = time.gmtime(max(int(epoch), 315532800))  # not before 1980 (zip's epoch)
    return (moment.tm_year, moment.tm_mon, moment.tm_mday, moment.tm_hour, moment.tm_min,
            moment.tm_sec)


def package_bytes(browser: str) -> bytes:
    """The archive for ``browser``: manifest.json first, then the sources by name, all at
    the root (where both Chromium and AMO look for the manifest)."""
    files = {"manifest.json": manifest_text(browser).encode("utf-8"), **source_files()}
    when = _zip_time()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ["manifest.json", *sorted(n for n in files if n != "manifest.json")]:
            info = zipfile.ZipInfo(name, date_time=when)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o100644 << 16  # a regular file, rw-r--r--
            info.create_system = 3  # Unix, so the mode above is read
            archive.writestr(info, files[name])
    return out.getvalue()


def write_packages(out_dir: Path) -> dict[str, Path]:
    """Write both packages into ``out_dir``; their paths by browser family."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for browser in BROWSERS:
        path = out_dir / package_name(browser)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(package_bytes(browser))
        tmp.replace(path)  # never half a package where a browser or a policy points
        written[browser] = path
    return written


def default_out_dir() -> Path:
    from agent.paths import sub_dir

    return sub_dir("extension")


def write_packages_command(*, out: Path | None, json_output: bool) -> int:
    """`imza-agent extension`: write both packages, print where they are."""
    written = write_packages(out if out is not None else default_out_dir())
    if json_output:
        print(json.dumps({browser: str(path) for browser, path in written.items()}))
    else:
        for browser, path in written.items():
            print(f"{browser}: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m agent.browser_extension`` and installer/extension/package.py."""
    parser = argparse.ArgumentParser(
        prog="python -m agent.browser_extension",
        description="Write the browser extension's packages (Chromium zip, Firefox .xpi) "
                    "and print where they are. docs/extension.md says how to load or "
                    "force-install them.")
    parser.add_argument("--out", type=Path, default=None,
                        help="directory to write them into (default: the agent's data "
                             "directory, subdirectory extension)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    return write_packages_command(out=args.out, json_output=args.json)


if __name__ == "__main__":
    raise SystemExit(main())
