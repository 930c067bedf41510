"""The Windows implementation of the platform layer (``agent/platform/base.py``).

Every call into Windows goes through a seam passed in here (registry, CryptoAPI, token and
TCP tables, named pipes); ``WindowsPlatform.real()`` wires the ctypes/winreg ones, the tests
wire fakes and run everything but those few lines on Linux.
"""

from __future__ import annotations

import os
import platform as _platform_module
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from agent.platform.base import (
    Autostart,
    NativeMessagingRegistrar,
    OsKeyStoreHook,
    PeerCheck,
    RelayEndpoint,
    StopWatch,
    TrustStore,
)
from agent.platform.windows import image_name, stop_event
from agent.platform.windows.autostart import RunKeyAutostart
from agent.platform.windows.cng_store import CngApi, CngHook
from agent.platform.windows.identity import Identities
from agent.platform.windows.image_name import ImageApi
from agent.platform.windows.native_messaging import RegistryRegistrar
from agent.platform.windows.peer import TcpTables, WindowsPeerCheck
from agent.platform.windows.registry import Registry
from agent.platform.windows.relay import NamedPipeRelay, PipeApi
from agent.platform.windows.stop_event import EventApi
from agent.platform.windows.trust import Crypt32, WindowsTrustStore

if TYPE_CHECKING:
    from agent.pcsc.scard import StartedEvent
    from agent.policy.sources import PolicyFile

APP = "imza-agent"


@dataclass
class WindowsPlatform:
    registry: Registry
    crypt32: Crypt32
    identities: Identities
    tcp_tables: TcpTables
    env: Mapping[str, str]  # APPDATA, LOCALAPPDATA, PROGRAMDATA
    agent_argv: Callable[[], Sequence[str]]  # how a logon starts the agent
    elevated: bool = False  # an administrator's process: machine-wide stores and keys
    pipes: PipeApi | None = None
    cng: CngApi | None = None  # the user's "MY" store as a key store (cng_store.py)
    events: EventApi | None = None  # the agent's stop event (stop_event.py); None: kernel32
    images: ImageApi | None = None  # another process's program (image_name.py); None: kernel32
    pid: Callable[[], int] = os.getpid
    terminate: Callable[[int], None] = field(default=stop_event.terminate, repr=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)  # stop's retries
    name: Literal["windows"] = "windows"
    trust_automatic: bool = False  # Windows asks the user before adding a root
    pkcs11_table: str = "windows"
    pkcs11_pack: int | None = 1  # Cryptoki on Windows packs its structures to 1 byte
    _relay: NamedPipeRelay | None = field(default=None, repr=False)

    @classmethod
    def real(cls, env: Mapping[str, str], agent_argv: Callable[[], Sequence[str]]
             ) -> WindowsPlatform:  # pragma: no cover - needs Windows
        import ctypes

        from agent.platform.windows.cng_store import NcryptDll
        from agent.platform.windows.identity import TokenIdentities
        from agent.platform.windows.peer import IpHlpApi
        from agent.platform.windows.registry import WinReg
        from agent.platform.windows.trust import Crypt32Dll

        shell32 = ctypes.WinDLL("shell32")  # type: ignore[attr-defined,unused-ignore]
        return cls(WinReg(), Crypt32Dll(), TokenIdentities(), IpHlpApi(), env, agent_argv,
                   elevated=bool(shell32.IsUserAnAdmin()), cng=NcryptDll())

    def _dir(self, variable: str, fallback: str) -> Path:
        return Path(self.env.get(variable) or fallback)

    def trust_store(self, home: Path) -> TrustStore:
        appdata = self._dir("APPDATA", str(home / "AppData" / "Roaming"))
        return WindowsTrustStore(self.crypt32, appdata / "Mozilla" / "Firefox" / "Profiles",
                                 machine=self.elevated)

    def native_messaging(self, home: Path) -> NativeMessagingRegistrar:
        # A machine registration must not point into the administrator's own profile.
        base = (self._dir("PROGRAMDATA", "C:\\ProgramData") if self.elevated
                else self._dir("LOCALAPPDATA", str(home / "AppData" / "Local")))
        return RegistryRegistrar(self.registry, base / APP / "native-messaging",
                                 hive="HKLM" if self.elevated else "HKCU")

    def autostart(self, env: Mapping[str, str] | None = None) -> Autostart:
        return RunKeyAutostart(self.registry, list(self.agent_argv()))

    def relay(self) -> RelayEndpoint:
        if self._relay is None:
            self._relay = NamedPipeRelay(self.identities.own().sid, self.pipes, self.identities)
        return self._relay

    def peer_check(self) -> PeerCheck | None:
        return WindowsPeerCheck(self.tcp_tables, self.identities)

    def system_policy_file(self) -> Path:
        return self._dir("PROGRAMDATA", "C:\\ProgramData") / APP / "policy.toml"

    def admin_policy(self, policy: PolicyFile) -> PolicyFile:
        # Group Policy (installer/windows/policy/*.admx) writes under Software\Policies.
        from agent.platform.windows import policy_registry

        return policy_registry.apply(policy, policy_registry.read(self.registry))

    def smartcard_started_event(self) -> StartedEvent | None:
        from agent.platform.windows.scard_event import WinScardStartedEvent

        try:
            return WinScardStartedEvent()
        except (AttributeError, OSError):  # no winscard.dll (a server without the service)
            return None

    def admin_tsa_url(self) -> str | None:
        from agent.platform.windows import policy_registry

        return policy_registry.read(self.registry).tsa_url

    def process_exists(self, pid: int) -> bool | None:
        # os.kill(pid, 0) would *terminate* it on Windows; the runtime file's pid is checked
        # through the token lookup instead, which fails for a gone process.
        return self.identities.of_process(pid) is not None

    def own_process_alive(self, pid: int) -> bool:
        # Another user's process cannot be opened (None) or shows another SID.
        found = self.identities.of_process(pid)
        return found is not None and found.sid == self.identities.own().sid

    def agent_process(self, pid: int) -> bool | None:
        if self.images is None:  # pragma: no cover - needs Windows
            self.images = image_name.Kernel32Images()
        return image_name.agent_process(self.images, pid)

    def _events(self) -> EventApi:
        if self.events is None:  # pragma: no cover - needs Windows
            from agent.platform.windows.stop_event import Kernel32Events

            self.events = Kernel32Events()
        return self.events

    def request_stop(self, pid: int) -> None:
        stop_event.request_stop(self._events(), pid, self.terminate, sleep=self.sleep)

    def force_stop_command(self, pid: int) -> str:
        return f"taskkill /F /PID {pid}"

    def end_workers(self, spared: Iterable[int]) -> list[int]:
        # As before this moved here: no children are listed on Windows (that needs a
        # Toolhelp snapshot walk). The PKCS#11 workers read their requests from a pipe
        # the daemon's exit closes, and end at its EOF.
        return []

    def watch_stop_requests(self, callback: Callable[[], object]) -> StopWatch:
        return stop_event.watch_stop_requests(self._events(), self.identities.own().sid,
                                              self.pid(), callback)

    def os_key_store(self) -> OsKeyStoreHook | None:
        return None if self.cng is None else CngHook(self.cng)

    def description(self) -> str:
        return f"Windows {_platform_module.release()} ({_platform_module.machine()})"
