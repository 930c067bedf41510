"""Registering the native messaging host with the browsers (`imza-agent native-host install`).

A browser starts a native messaging host only when a manifest named after the host sits in
its per-user directory and allows the calling extension. This module writes those manifests
and the launcher script they point at; the host itself is ``agent/transport/native_host.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.paths import data_dir

HOST_NAME = "az.imza.agent"
DESCRIPTION = "imza-agent: e-signature with USB tokens and smart cards"
# The extension's ID in Chromium-family browsers, fixed by the "key" in its manifest
# (tests/e2e/test_browser.py checks the two agree), and its Firefox add-on ID.
CHROMIUM_EXTENSION_ID = "ajnfmipgaekhgddmadkchgoigmjfbhha"
FIREFOX_EXTENSION_ID = "imza-agent@imza.az"
BROWSERS = ("chrome", "chromium", "edge", "firefox")
# Environment variables the launcher keeps, so the browser-started host finds the same
# agent as the shell that installed it (tests, portable installs).
KEPT_ENV = ("IMZA_AGENT_HOME", "IMZA_AGENT_SYSTEM_POLICY", "SOFTHSM2_CONF")


def manifest_dirs(home: Path) -> dict[str, Path]:
    """Per-user native messaging host directories (Linux and macOS)."""
    if sys.platform == "darwin":
        base = home / "Library" / "Application Support"
        return {"chrome": base / "Google/Chrome/NativeMessagingHosts",
                "chromium": base / "Chromium/NativeMessagingHosts",
                "edge": base / "Microsoft Edge/NativeMessagingHosts",
                "firefox": base / "Mozilla/NativeMessagingHosts"}
    config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    return {"chrome": config / "google-chrome/NativeMessagingHosts",
            "chromium": config / "chromium/NativeMessagingHosts",
            "edge": config / "microsoft-edge/NativeMessagingHosts",
            "firefox": home / ".mozilla/native-messaging-hosts"}


def host_manifest(browser: str, launcher: Path, extension_ids: Sequence[str]) -> dict[str, Any]:
    manifest: dict[str, Any] = {"name": HOST_NAME, "description": DESCRIPTION,
                                "path": str(launcher), "type": "stdio"}
    if browser == "firefox":
        manifest["allowed_extensions"] = list(extension_ids)
    else:
        manifest["allowed_origins"] = [f"chrome-extension://{i}/" for i in extension_ids]
    return manifest


def write_launcher(path: Path, config_path: Path | None) -> Path:
    """A script the browser can execute without arguments of ours: it runs this
    interpreter's `imza-agent native-host` with the environment it was installed with."""
    lines = ["#!/bin/sh"]
    for name in KEPT_ENV:
        value = os.environ.get(name)
        if value:
            lines.append(f"export {name}={shlex.quote(value)}")
    command = [sys.executable, "-m", "agent.cli"]
    if config_path is not None:
        command += ["--config", str(config_path.resolve())]
    lines.append(f'exec {shlex.join(command)} native-host "$@"')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def install(argv: Sequence[str], config_path: Path | None) -> int:
    parser = argparse.ArgumentParser(
        prog="imza-agent native-host install",
        description="Register the native messaging host for the browser extension.")
    parser.add_argument("--browser", action="append", choices=list(BROWSERS),
                        help="only these browsers (default: all)")
    parser.add_argument("--extension-id", action="append", default=[],
                        help="allowed Chromium extension ID (default: the published one)")
    parser.add_argument("--firefox-id", action="append", default=[],
                        help="allowed Firefox add-on ID (default: the published one)")
    parser.add_argument("--target-dir", type=Path,
                        help="write the Chromium-style manifest into this directory only "
                             "(e.g. <user-data-dir>/NativeMessagingHosts)")
    parser.add_argument("--print", dest="print_only", action="store_true",
                        help="print the manifests instead of writing them")
    args = parser.parse_args(argv)

    launcher = data_dir() / "native-host.sh"
    if not args.print_only:
        write_launcher(launcher, config_path)
    chromium_ids = args.extension_id or [CHROMIUM_EXTENSION_ID]
    firefox_ids = args.firefox_id or [FIREFOX_EXTENSION_ID]
    if args.target_dir is not None:
        targets = {"chromium": args.target_dir}
    else:
        dirs = manifest_dirs(Path.home())
        targets = {b: dirs[b] for b in (args.browser or dirs)}
    for browser, directory in targets.items():
        ids = firefox_ids if browser == "firefox" else chromium_ids
        text = json.dumps(host_manifest(browser, launcher, ids), indent=2) + "\n"
        if args.print_only:
            print(f"# {directory / (HOST_NAME + '.json')}\n{text}")
            continue
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{HOST_NAME}.json").write_text(text, encoding="utf-8")
        print(f"{browser}: {directory / (HOST_NAME + '.json')}")
    if sys.platform == "win32":  # pragma: no cover - the Windows installer's job
        print("On Windows the manifest is registered under HKCU\\Software\\Google\\Chrome\\"
              f"NativeMessagingHosts\\{HOST_NAME} by the installer.")
    return 0
