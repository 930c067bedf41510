"""The macOS implementation of the platform layer (``agent/platform/base.py``): the
keychain, LaunchAgents, the per-browser manifest directories and the Unix socket relay.
``security`` and ``launchctl`` run through a ``Runner`` the tests replace with a recorder;
libproc and sysctl through seams of their own (``ProcSockets``, ``ProcArgs``)."""

from __future__ import annotations

import platform as _platform_module
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.platform.base import (
    Autostart,
    NativeMessagingRegistrar,
    OsKeyStoreHook,
    PeerCheck,
    RelayEndpoint,
    TrustStore,
)
from agent.platform.macos import procargs as kern_procargs
from agent.platform.macos.keychain import KeychainTrustStore
from agent.platform.macos.keychain_store import KeychainHook, SecurityApi
from agent.platform.macos.launch_agent import LaunchAgentAutostart
from agent.platform.macos.peer import MacPeerCheck, ProcSockets
from agent.platform.macos.procargs import ProcArgs
from agent.platform.macos.runner import Runner
from agent.platform.manifest_dirs import DirectoryRegistrar, macos_dirs
from agent.platform.posix import PosixDefaults
from agent.platform.unix_relay import UnixSocketRelay


@dataclass
class MacPlatform(PosixDefaults):
    run: Runner
    uid: int
    agent_argv: Callable[[], Sequence[str]]
    elevated: bool = False  # root (the .pkg's scripts): the System keychain
    sockets: ProcSockets | None = None  # None: the libproc walk (macos/libproc.py)
    security: SecurityApi | None = None  # the keychain as a key store (keychain_store.py)
    procargs: ProcArgs | None = None  # None: sysctl's (macos/procargs.py)
    name: Literal["macos"] = "macos"
    trust_automatic: bool = False  # macOS asks for the password before trusting a root
    pkcs11_table: str = "darwin"
    pkcs11_pack: int | None = None

    def trust_store(self, home: Path) -> TrustStore:
        return KeychainTrustStore(self.run, home, machine=self.elevated)

    def native_messaging(self, home: Path) -> NativeMessagingRegistrar:
        return DirectoryRegistrar(macos_dirs(home))

    def autostart(self, env: Mapping[str, str] | None = None) -> Autostart:
        home = Path((env or {}).get("HOME") or Path.home())
        return LaunchAgentAutostart(self.run, home, self.uid, list(self.agent_argv()))

    def relay(self) -> RelayEndpoint:
        return UnixSocketRelay()

    def peer_check(self) -> PeerCheck | None:
        if self.sockets is None:  # the real walk; None where libproc is missing
            from agent.platform.macos.libproc import real_sockets

            self.sockets = real_sockets(self.uid)
        return None if self.sockets is None else MacPeerCheck(self.sockets, self.uid)

    def system_policy_file(self) -> Path:
        return Path("/Library/Application Support/imza-agent/policy.toml")

    def agent_process(self, pid: int) -> bool | None:
        if self.procargs is None:  # pragma: no cover - needs macOS
            try:
                self.procargs = kern_procargs.SysctlProcArgs()
            except OSError:  # no libSystem to load: cannot tell
                return None
        return kern_procargs.agent_process(self.procargs, pid)

    def os_key_store(self) -> OsKeyStoreHook | None:
        return None if self.security is None else KeychainHook(self.security)

    def description(self) -> str:
        return f"macOS {_platform_module.mac_ver()[0]} ({_platform_module.machine()})"
