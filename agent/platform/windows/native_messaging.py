"""Native messaging on Windows: the browsers find a host through the registry, not a
directory. Under ``HKCU`` (this user) or ``HKLM`` (a machine install) each browser reads
``Software\\<its vendor path>\\NativeMessagingHosts\\<host name>``, whose default value is
the full path of the manifest file. Chromium-family browsers share one manifest
(``allowed_origins``), Firefox has its own (``allowed_extensions``).

Key paths: Chrome and Chromium from Chrome's native messaging documentation, Edge from
Microsoft's, Firefox from MDN's "Native manifests"; Brave uses Chromium's scheme with its
own vendor path (and also reads Chrome's key). docs/platforms.md lists them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.platform.base import Registration
from agent.platform.manifest_dirs import HOST_NAME
from agent.platform.windows.registry import Hive, Registry, join

VENDOR_PATHS = {
    "chrome": "Software\\Google\\Chrome",
    "edge": "Software\\Microsoft\\Edge",
    "chromium": "Software\\Chromium",
    "brave": "Software\\BraveSoftware\\Brave-Browser",
    "firefox": "Software\\Mozilla",
}
BROWSERS = tuple(VENDOR_PATHS)


def host_key(browser: str) -> str:
    return f"{VENDOR_PATHS[browser]}\\NativeMessagingHosts\\{HOST_NAME}"


def manifest_kind(browser: str) -> str:
    return "firefox" if browser == "firefox" else "chromium"


@dataclass
class RegistryRegistrar:
    """Writes the manifests into ``manifest_dir`` and points each browser's key at them."""

    registry: Registry
    manifest_dir: Path  # %LOCALAPPDATA%\imza-agent\native-messaging, or the install dir's
    hive: Hive = "HKCU"
    browsers: tuple[str, ...] = BROWSERS

    def manifest_path(self, browser: str) -> Path:
        return self.manifest_dir / f"{HOST_NAME}.{manifest_kind(browser)}.json"

    def launcher_name(self) -> str:
        return "native-host.cmd"

    def launcher_text(self, env: Mapping[str, str], command: Sequence[str]) -> str:
        # Chrome starts a host through cmd.exe, Firefox too for a .cmd: a batch file works
        # for both. `set "NAME=value"` keeps spaces and needs no other quoting; a
        # percent sign would expand, so it is doubled.
        lines = ["@echo off"]
        lines += [f'set "{k}={v.replace("%", "%%")}"' for k, v in env.items()]
        lines.append(" ".join(f'"{c}"' for c in command) + " %*")
        return "\r\n".join(lines) + "\r\n"

    def planned(self, browsers: Sequence[str]) -> list[Registration]:
        return [Registration(b, self.manifest_path(b), join(self.hive, host_key(b)))
                for b in browsers]

    def register(self, browsers: Sequence[str], manifests: Mapping[str, str]
                 ) -> list[Registration]:
        done = []
        for reg in self.planned(browsers):
            reg.manifest.parent.mkdir(parents=True, exist_ok=True)
            reg.manifest.write_text(manifests[reg.browser], encoding="utf-8")
            self.registry.set(self.hive, host_key(reg.browser), "", str(reg.manifest))
            done.append(reg)
        return done

    def unregister(self, browsers: Sequence[str]) -> list[Registration]:
        done = []
        for reg in self.planned(browsers):
            if self.registry.get(self.hive, host_key(reg.browser), "") is not None:
                self.registry.delete_key(self.hive, host_key(reg.browser))
                done.append(reg)
        kinds = {manifest_kind(b) for b in self.browsers
                 if self.registry.get(self.hive, host_key(b), "") is not None}
        for reg in done:  # a manifest goes once no browser's key names it any more
            if manifest_kind(reg.browser) not in kinds:
                reg.manifest.unlink(missing_ok=True)
        return done
