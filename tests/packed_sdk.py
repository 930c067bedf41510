"""The page SDK as a portal gets it: ``npm pack extension/sdk``, extracted.

Packed once per test session (per process) into a temporary directory. The browser tests
serve the packed ``imza.js`` for the page's ``/sdk/imza.js`` (tests/e2e/packed_sdk.mjs), so
they exercise the artifact a portal installs, not the source file.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from daemon import REPO

SDK_DIR = REPO / "extension" / "sdk"


@dataclass(frozen=True)
class PackedSdk:
    tarball: Path
    root: Path  # the extracted tarball's `package/` directory
    members: tuple[str, ...]  # every entry of the tarball, as npm wrote it
    report: dict[str, Any]  # `npm pack --json`'s description of it

    @property
    def module(self) -> Path:
        return self.root / "imza.js"

    @property
    def manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.root / "package.json").read_text("utf-8"))
        return data


@functools.cache
def packed_sdk() -> PackedSdk:
    npm = shutil.which("npm")
    assert npm is not None, "npm is required to pack the page SDK: apt-get install npm"
    out = Path(tempfile.mkdtemp(prefix="imza-sdk-pack-"))
    atexit.register(shutil.rmtree, out, True)
    done = subprocess.run(
        [npm, "pack", str(SDK_DIR), "--json", "--pack-destination", str(out)],
        cwd=out, capture_output=True, text=True, timeout=120, check=False,
        # npm's cache and logs go to a directory of this run, not the runner's HOME
        env={**os.environ, "npm_config_cache": str(out / "cache"),
             "npm_config_update_notifier": "false", "npm_config_fund": "false",
             "npm_config_audit": "false", "npm_config_logs_dir": str(out / "logs")})
    assert done.returncode == 0, done.stderr[-4000:]
    (report,) = json.loads(done.stdout)
    tarball = out / report["filename"]
    with tarfile.open(tarball, "r:gz") as archive:
        members = tuple(m.name for m in archive.getmembers())
        archive.extractall(out / "extracted", filter="data")
    return PackedSdk(tarball, out / "extracted" / "package", members, report)


def served_packed(result: dict[str, Any]) -> list[str]:
    """Assert a browser driver answered the page's /sdk/imza.js with the packed SDK
    (tests/e2e/packed_sdk.mjs) at least once; returns the URLs it answered."""
    packed = packed_sdk()
    sdk = result.get("sdk")
    assert sdk is not None, "the driver did not set up the packed SDK"
    assert sdk["file"] == str(packed.module)
    assert sdk["sha256"] == hashlib.sha256(packed.module.read_bytes()).hexdigest()
    served: list[str] = sdk["served"]
    assert served, "the page never got /sdk/imza.js from the packed SDK"
    assert {urlsplit(url).path for url in served} == {"/sdk/imza.js"}, served
    return served
