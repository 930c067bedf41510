"""Registering the native messaging host with the browsers (`imza-agent native-host install`).

A browser starts a native messaging host only when a manifest named after the host sits in
its per-user directory and allows the calling extension. This module writes those manifests
and the launcher script they point at (on Windows also the registry keys naming them,
through ``agent.platform.current().native_messaging``); the host itself is
``agent/transport/native_host.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.paths import data_dir
from agent.platform import current
from agent.platform.base import NativeMessagingRegistrar
from agent.platform.manifest_dirs import HOST_NAME, DirectoryRegistrar

__all__ = ["CHROMIUM_EXTENSION_ID", "FIREFOX_EXTENSION_ID", "HOST_NAME", "host_manifest",
           "install", "launcher_command", "write_launcher"]

DESCRIPTION = "imza-agent: e-signature with USB tokens and smart cards"
# The extension's ID in Chromium-family browsers, fixed by the "key" in its manifest
# (tests/e2e/test_browser.py checks the two agree), and its Firefox add-on ID.
CHROMIUM_EXTENSION_ID = "ajnfmipgaekhgddmadkchgoigmjfbhha"
FIREFOX_EXTENSION_ID = "imza-agent@imza.az"
# Environment variables the launcher keeps, so the browser-started host finds the same
# agent as the shell that installed it (tests, portable installs).
KEPT_ENV = ("IMZA_AGENT_HOME", "IMZA_AGENT_SYSTEM_POLICY", "SOFTHSM2_CONF")


def host_manifest(browser: str, launcher: Path, extension_ids: Sequence[str]) -> dict[str, Any]:
    manifest: dict[str, Any] = {"name": HOST_NAME, "description": DESCRIPTION,
                                "path": str(launcher), "type": "stdio"}
    if browser == "firefox":
        manifest["allowed_extensions"] = list(extension_ids)
    else:
        manifest["allowed_origins"] = [f"chrome-extension://{i}/" for i in extension_ids]
    return manifest


def launcher_command(config_path: Path | None) -> list[str]:
    """This interpreter's `imza-agent` (a frozen build: the executable itself)."""
    frozen = bool(getattr(sys, "frozen", False))
    command = [sys.executable] if frozen else [sys.executable, "-m", "agent.cli"]
    if config_path is not None:
        command += ["--config", str(config_path.resolve())]
    return [*command, "native-host"]


def write_launcher(path: Path, config_path: Path | None,
                   registrar: NativeMessagingRegistrar | None = None) -> Path:
    """A script the browser can execute without arguments of ours: it runs this
    interpreter's `imza-agent native-host` with the environment it was installed with."""
    registrar = registrar or current().native_messaging(Path.home())
    env = {name: value for name in KEPT_ENV if (value := os.environ.get(name))}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(registrar.launcher_text(env, launcher_command(config_path)),
                    encoding="utf-8", newline="")
    path.chmod(0o755)
    return path


def install(argv: Sequence[str], config_path: Path | None) -> int:
    registrar: NativeMessagingRegistrar = current().native_messaging(Path.home())
    parser = argparse.ArgumentParser(
        prog="imza-agent native-host install",
        description="Register the native messaging host for the browser extension.")
    parser.add_argument("--browser", action="append", choices=list(registrar.browsers),
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
    parser.add_argument("--remove", action="store_true",
                        help="unregister the host from these browsers instead")
    args = parser.parse_args(argv)

    if args.target_dir is not None:
        registrar = DirectoryRegistrar({"chromium": args.target_dir})
    browsers = list(args.browser or registrar.browsers)
    if args.remove:
        for reg in registrar.unregister(browsers):
            print(f"{reg.browser}: removed {reg.registry_key or reg.manifest}")
        return 0
    launcher = data_dir() / registrar.launcher_name()
    if not args.print_only:
        write_launcher(launcher, config_path, registrar)
    chromium_ids = args.extension_id or [CHROMIUM_EXTENSION_ID]
    firefox_ids = args.firefox_id or [FIREFOX_EXTENSION_ID]
    manifests = {b: json.dumps(host_manifest(b, launcher, firefox_ids if b == "firefox"
                                             else chromium_ids), indent=2) + "\n"
                 for b in browsers}
    if args.print_only:
        for reg in registrar.planned(browsers):
            key = f" ({reg.registry_key})" if reg.registry_key else ""
            print(f"# {reg.manifest}{key}\n{manifests[reg.browser]}")
        return 0
    for reg in registrar.register(browsers, manifests):
        key = f" ← {reg.registry_key}" if reg.registry_key else ""
        print(f"{reg.browser}: {reg.manifest}{key}")
    return 0
