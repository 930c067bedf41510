"""The platform layer's interfaces: everything that differs by operating system.

``agent.platform.current()`` picks one implementation of ``Platform`` at start-up (Linux,
Windows or macOS); the rest of the agent talks to these protocols only and never asks
which OS it runs on (tests/test_platform_layer.py checks the source for that).

Each Windows and macOS piece reaches the OS through a small seam (the registry, CryptoAPI,
a command runner, libproc), so the same code runs on Linux against fakes that record what
it would do (tests/test_platform_windows.py, tests/test_platform_macos.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:  # asyncio is not imported by every process that asks the platform
    import asyncio
    from collections.abc import Awaitable, Callable

    from agent.keystores.base import KeyStore
    from agent.pcsc.scard import StartedEvent
    from agent.policy.sources import PolicyFile

    ClientHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

OsName = Literal["linux", "windows", "macos"]
Scope = Literal["user", "system"]


# --- local TLS trust ----------------------------------------------------------------------

@dataclass(frozen=True)
class CaCert:
    """The agent's current local CA: its PEM file and SHA-256 fingerprint (hex)."""

    pem_path: Path
    fingerprint_sha256: str


@dataclass
class TrustResult:
    """One trust store: an NSS database directory, or an OS store such as the Windows
    user's ``Root`` store or the macOS login keychain (then ``path`` names it)."""

    path: Path | str
    browser: str
    trusted: bool = False  # the current CA is there as a TLS trust anchor
    stale: list[str] = field(default_factory=list)  # older agent CAs still present
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        return {"path": str(self.path), "browser": self.browser, "trusted": self.trusted,
                "stale": self.stale, "error": self.error}


class TrustStore(Protocol):
    """Where browsers on this OS look for trust anchors, as one thing to install into."""

    def require_tools(self) -> None:
        """Raise when a program the store needs is missing (Linux: certutil)."""

    def status(self, fingerprint: str | None) -> list[TrustResult]:
        """Read-only: is the CA with ``fingerprint`` trusted, and which old ones remain."""

    def install(self, ca: CaCert) -> list[TrustResult]:
        """Trust ``ca`` and remove older generations of the agent's CA."""

    def remove(self) -> list[TrustResult]:
        """Remove every generation of the agent's CA."""


# --- native messaging ---------------------------------------------------------------------

@dataclass(frozen=True)
class Registration:
    """Where one browser will find the host: a manifest file, and on Windows the
    registry key whose default value names that file."""

    browser: str
    manifest: Path
    registry_key: str | None = None


class NativeMessagingRegistrar(Protocol):
    @property
    def browsers(self) -> tuple[str, ...]: ...

    def launcher_name(self) -> str:
        """File name of the script the manifests point at (``native-host.sh`` / ``.cmd``)."""

    def launcher_text(self, env: Mapping[str, str], command: Sequence[str]) -> str:
        """The launcher script: exports ``env`` and runs ``command`` with the host's args."""

    def register(self, browsers: Sequence[str], manifests: Mapping[str, str]
                 ) -> list[Registration]:
        """Make each browser find its manifest text (``manifests[browser]``)."""

    def unregister(self, browsers: Sequence[str]) -> list[Registration]:
        """Undo ``register``; what was removed."""

    def planned(self, browsers: Sequence[str]) -> list[Registration]:
        """Where ``register`` would write, without writing (``--print``)."""


# --- start at login -----------------------------------------------------------------------

@dataclass(frozen=True)
class AutostartStatus:
    enabled: bool
    file: Path | str | None  # the entry that decides (a file, or a registry value); None: none
    scope: Scope | None

    def to_json(self) -> dict[str, object]:
        return {"enabled": self.enabled, "file": str(self.file) if self.file else None,
                "scope": self.scope}


class Autostart(Protocol):
    def status(self) -> AutostartStatus: ...

    def set_enabled(self, on: bool) -> AutostartStatus:
        """Raises ``OSError`` when the entry cannot be changed."""


# --- the relay between the native host and the daemon -------------------------------------

class RelayEndpoint(Protocol):
    """The daemon's local endpoint the native host connects to: a Unix socket (mode 0600
    in a 0700 directory), or on Windows a named pipe whose DACL admits only this user."""

    def address(self, socket_path: Path) -> str:
        """The endpoint for the daemon whose Unix-socket path would be ``socket_path``."""

    async def connect(self, socket_path: Path, limit: int
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]: ...

    async def listen(self, socket_path: Path, handler: ClientHandler, limit: int
                     ) -> asyncio.Server:
        """The daemon's side; raises ``OSError`` when it cannot listen."""

    def answers(self, socket_path: Path, timeout: float) -> bool:
        """Blocking: whether a daemon listens there now (the native host and
        ``imza-agent status`` ask before starting one). Not from an event loop's thread."""


# --- who is on the other end of a loopback TCP connection ---------------------------------

class PeerCheck(Protocol):
    def same_user(self, local: Sequence[Any], remote: Sequence[Any]) -> bool:
        """True only when the client socket is known to belong to this OS user (and on
        Windows to this logon session); unknown is False."""


# --- the OS's own certificate store as a key store ----------------------------------------

class OsKeyStoreHook(Protocol):
    """Certificates whose keys the OS reaches through a vendor driver (Windows CNG/
    minidriver: agent/platform/windows/cng_store.py; macOS CryptoTokenKit:
    agent/platform/macos/keychain_store.py). The store manager adds ``open()``'s store
    beside the PKCS#11 ones when ``[tokens] os_store`` is on."""

    @property
    def name(self) -> str: ...

    def available(self) -> bool: ...

    def open(self) -> KeyStore:
        """The key store over the OS's certificate store."""


# --- another process asks the agent to stop ------------------------------------------------

class StopWatch(Protocol):
    """What ``Platform.watch_stop_requests`` started (on Windows a thread waiting on the
    agent's stop event; elsewhere nothing: SIGTERM's handler is the watch)."""

    def close(self) -> None:
        """Stop watching (the daemon could not start and returns to its caller)."""


class NoStopWatch:
    """Nothing to close: Linux and macOS (SIGTERM), or Windows without its stop event."""

    def close(self) -> None:
        return None


# --- the whole platform -------------------------------------------------------------------

class Platform(Protocol):
    @property
    def name(self) -> OsName: ...

    @property
    def trust_automatic(self) -> bool:
        """The daemon may (re)install the CA at start without asking anybody."""

    @property
    def pkcs11_table(self) -> str:
        """The key of agent/keystores/pkcs11/modules.py's KNOWN_MODULES."""

    @property
    def pkcs11_pack(self) -> int | None:
        """Struct packing of PKCS#11 structures (Windows: 1)."""

    def trust_store(self, home: Path) -> TrustStore: ...

    def native_messaging(self, home: Path) -> NativeMessagingRegistrar: ...

    def autostart(self, env: Mapping[str, str] | None = None) -> Autostart: ...

    def relay(self) -> RelayEndpoint: ...

    def peer_check(self) -> PeerCheck | None:
        """None where this OS cannot tell who owns a loopback socket."""

    def system_policy_file(self) -> Path: ...

    def admin_policy(self, policy: PolicyFile) -> PolicyFile:
        """The administrator's policy file with what the OS's own policy store adds on top
        (Windows: Group Policy's registry keys; elsewhere the file alone)."""

    def admin_tsa_url(self) -> str | None:
        """A time-stamping service the OS's policy store imposes, if any."""

    def smartcard_started_event(self) -> StartedEvent | None:
        """Windows: WinSCard's "service started" event (its Smart Card service stops with
        the last reader); None where the PC/SC service does not stop for want of readers."""

    def process_exists(self, pid: int) -> bool | None:
        """None when this OS cannot tell without side effects."""

    def own_process_alive(self, pid: int) -> bool:
        """``pid`` runs (not a zombie) as this OS user: a pid file's agent is still ours.
        Never signals the process (on Windows ``os.kill`` would end it)."""

    def agent_process(self, pid: int) -> bool | None:
        """Whether ``pid`` runs ``imza-agent run``, as far as this OS shows another
        process: a stale runtime.json's pid may since belong to another program, which
        ``imza-agent stop`` must not signal. Asked after ``own_process_alive``.

        Linux: its command line (``/proc/<pid>/cmdline``; None without /proc). macOS: its
        arguments (sysctl KERN_PROCARGS2; None when refused or unreadable). Both: True for
        ``… agent.cli … run`` or an ``imza-agent`` program with ``run``. Windows: only its
        program (reading another process's command line means walking its PEB): True for
        ``imza-agent(w).exe``, which cannot tell ``run`` from another subcommand; None for a
        Python interpreter (a developer's agent, or any script); False for anything else
        or a process that cannot be opened. None: cannot tell, alive is all we know."""

    def end_workers(self, spared: Iterable[int]) -> list[int]:
        """The daemon, as it exits: SIGKILL its remaining children (its workers, in its own
        session) but ``spared``; the pids signalled. Linux lists them from /proc; macOS
        and Windows know none (agent/platform/workers.py)."""

    def request_stop(self, pid: int) -> None:
        """Ask the agent ``pid`` (this user's) to stop in its orderly way: SIGTERM on Linux
        and macOS; on Windows its stop event (``os.kill`` would be ``TerminateProcess``).
        Raises ``OSError`` (``ProcessLookupError``) as ``os.kill`` does."""

    def force_stop_command(self, pid: int) -> str:
        """The command a person types to end the agent ``pid`` when its orderly stop
        hangs (what ``imza-agent stop`` suggests then)."""

    def watch_stop_requests(self, callback: Callable[[], object]) -> StopWatch:
        """The daemon, at start: call ``callback`` (from another thread) when another
        process asks for the stop with ``request_stop``. Linux and macOS: nothing to do,
        SIGTERM's handler (agent/daemon/run.py) is the path."""

    def os_key_store(self) -> OsKeyStoreHook | None: ...

    def description(self) -> str:
        """"Linux 6.1 (x86_64)": for reports."""
