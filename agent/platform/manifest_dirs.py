"""Native messaging on Linux and macOS: each browser reads ``<host name>.json`` from a
per-user directory of its own (Chrome's and MDN's native messaging documentation)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.platform.base import Registration

HOST_NAME = "az.imza.agent"


def linux_dirs(home: Path, env: Mapping[str, str]) -> dict[str, Path]:
    config = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    return {"chrome": config / "google-chrome/NativeMessagingHosts",
            "chromium": config / "chromium/NativeMessagingHosts",
            "edge": config / "microsoft-edge/NativeMessagingHosts",
            "brave": config / "BraveSoftware/Brave-Browser/NativeMessagingHosts",
            "firefox": home / ".mozilla/native-messaging-hosts"}


def macos_dirs(home: Path) -> dict[str, Path]:
    base = home / "Library" / "Application Support"
    return {"chrome": base / "Google/Chrome/NativeMessagingHosts",
            "chromium": base / "Chromium/NativeMessagingHosts",
            "edge": base / "Microsoft Edge/NativeMessagingHosts",
            "brave": base / "BraveSoftware/Brave-Browser/NativeMessagingHosts",
            "firefox": base / "Mozilla/NativeMessagingHosts"}


@dataclass
class DirectoryRegistrar:
    dirs: Mapping[str, Path]

    @property
    def browsers(self) -> tuple[str, ...]:
        return tuple(self.dirs)

    def launcher_name(self) -> str:
        return "native-host.sh"

    def launcher_text(self, env: Mapping[str, str], command: Sequence[str]) -> str:
        lines = ["#!/bin/sh"]
        lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
        lines.append(f'exec {shlex.join(command)} "$@"')
        return "\n".join(lines) + "\n"

    def planned(self, browsers: Sequence[str]) -> list[Registration]:
        return [Registration(b, self.dirs[b] / f"{HOST_NAME}.json") for b in browsers]

    def register(self, browsers: Sequence[str], manifests: Mapping[str, str]
                 ) -> list[Registration]:
        done = self.planned(browsers)
        for reg in done:
            reg.manifest.parent.mkdir(parents=True, exist_ok=True)
            reg.manifest.write_text(manifests[reg.browser], encoding="utf-8")
        return done

    def unregister(self, browsers: Sequence[str]) -> list[Registration]:
        done = [r for r in self.planned(browsers) if r.manifest.exists()]
        for reg in done:
            os.unlink(reg.manifest)
        return done
