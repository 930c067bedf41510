"""The Linux implementation of the platform layer: NSS databases with certutil, XDG
autostart entries, the XDG native messaging directories, the Unix socket relay and the
/proc/net/tcp peer check."""

from __future__ import annotations

import os
import platform as _platform_module
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from agent.platform.base import (
    Autostart,
    AutostartStatus,
    NativeMessagingRegistrar,
    OsKeyStoreHook,
    PeerCheck,
    RelayEndpoint,
    TrustStore,
)
from agent.platform.manifest_dirs import DirectoryRegistrar, linux_dirs
from agent.platform.posix import PosixDefaults
from agent.platform.unix_relay import UnixSocketRelay

if TYPE_CHECKING:
    pass


@dataclass
class XdgAutostart:
    env: Mapping[str, str] | None = None

    def status(self) -> AutostartStatus:
        from agent.platform import autostart

        return autostart.xdg_status(self.env)

    def set_enabled(self, on: bool) -> AutostartStatus:
        from agent.platform import autostart

        return autostart.xdg_set_enabled(on, self.env)


@dataclass
class ProcPeerCheck:
    def same_user(self, local: Sequence[Any], remote: Sequence[Any]) -> bool:
        from agent.platform import peer

        return peer.peer_uid(local, remote) == os.getuid()


@dataclass
class LinuxPlatform(PosixDefaults):
    name: Literal["linux"] = "linux"
    trust_automatic: bool = True  # NSS databases take a root without asking anybody
    pkcs11_table: str = "linux"
    pkcs11_pack: int | None = None

    def trust_store(self, home: Path) -> TrustStore:
        from agent.tls.trust_nss import NssTrustStore

        return NssTrustStore(home)

    def native_messaging(self, home: Path) -> NativeMessagingRegistrar:
        return DirectoryRegistrar(linux_dirs(home, os.environ))

    def autostart(self, env: Mapping[str, str] | None = None) -> Autostart:
        return XdgAutostart(env)

    def relay(self) -> RelayEndpoint:
        return UnixSocketRelay()

    def peer_check(self) -> PeerCheck | None:
        from agent.platform.peer import ProcNetTcp

        return ProcPeerCheck() if ProcNetTcp().available() else None

    def system_policy_file(self) -> Path:
        return Path("/etc/imza-agent/policy.toml")

    def agent_process(self, pid: int) -> bool | None:
        from agent.platform.agent_process import proc_agent_process

        return proc_agent_process(pid)

    def os_key_store(self) -> OsKeyStoreHook | None:
        return None  # Linux has no OS certificate store with token keys: PKCS#11 is it

    def description(self) -> str:
        return (f"{_platform_module.system()} {_platform_module.release()} "
                f"({_platform_module.machine()})")
