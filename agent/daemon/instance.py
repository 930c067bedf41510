"""Finding the running agent of this user (this data dir), and making sure there is one.

``imza-agent run`` holds an exclusive ``flock`` on ``<data dir>/agent.lock`` for as long
as it lives, and writes into that file what a person asks about it: the pid, the config
file, a digest of each effective config section, the system policy's digest, the
language, the start time. The kernel drops the lock when the process ends however it
ends, so a stale file never looks like a running agent, and two ``run`` at once cannot
both get past it, before either binds a port.

``runtime.json`` (written by the daemon once it listens) adds the ports, the transports
that could not listen and the key stores; an agent that holds no lock (an older version)
is still found through it: its pid alive, its process ours (``Platform.agent_process``) and
its socket answering.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config import Config
from agent.paths import data_dir
from agent.platform import current as current_platform
from agent.platform import file_lock

LOCK_NAME = "agent.lock"
RUNTIME_NAME = "runtime.json"  # agent/daemon/runtime.py's RUNTIME_FILE (not imported: heavy)
SOCKET_NAME = "agent.sock"  # agent/transport/local.py's SOCKET_NAME
# How long a second `run` waits for a starting agent to say who it is.
SETTLE_SECONDS = 3.0


def section_digests(config: Config) -> dict[str, str]:
    """A digest of each effective section (defaults and resolved paths included), so two
    files that mean the same compare equal, and a change names its section."""
    digests = {}
    for name in Config.model_fields:
        values = getattr(config, name).model_dump(mode="json")
        text = json.dumps(values, sort_keys=True, ensure_ascii=False)
        digests[name] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return digests


def file_digest(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


@dataclass(frozen=True)
class Facts:
    """What a running agent recorded about itself when it started."""

    pid: int
    config: str | None  # absolute path of its config file; None: built-in defaults
    sections: dict[str, str]  # section → digest (section_digests)
    language: str
    policy: str | None = None  # the system policy file it read
    policy_digest: str | None = None  # None: no such file
    started: float = 0.0  # epoch seconds

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "config": self.config, "sections": self.sections,
                           "language": self.language, "policy": self.policy,
                           "policy_digest": self.policy_digest, "started": self.started},
                          ensure_ascii=False)

    @staticmethod
    def from_json(text: str) -> Facts | None:
        try:
            data = json.loads(text)
            facts = Facts(pid=int(data["pid"]), config=data.get("config"),
                          sections=dict(data.get("sections") or {}),
                          language=str(data.get("language") or ""),
                          policy=data.get("policy"), policy_digest=data.get("policy_digest"),
                          started=float(data.get("started") or 0.0))
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return None
        return facts if facts.pid > 0 else None


def current_facts(config: Config, config_path: Path | None, language: str) -> Facts:
    from agent.policy.sources import system_policy_path

    policy = system_policy_path()
    return Facts(pid=os.getpid(), config=None if config_path is None else str(config_path),
                 sections=section_digests(config), language=language, policy=str(policy),
                 policy_digest=file_digest(policy), started=time.time())


@dataclass
class RunningAgent:
    """A running agent of this data dir, as far as it can be known."""

    pid: int | None  # None: an agent is starting and has not said who it is yet
    facts: Facts | None = None
    runtime: dict[str, Any] = field(default_factory=dict)

    def changed_sections(self, config: Config) -> list[str] | None:
        """The sections ``config`` sets differently from this agent; None: unknown (it
        did not record them)."""
        if self.facts is None or not self.facts.sections:
            return None
        mine = section_digests(config)
        return [name for name, digest in mine.items() if self.facts.sections.get(name) != digest]

    def policy_changed(self) -> bool:
        if self.facts is None or self.facts.policy is None:
            return False
        return file_digest(Path(self.facts.policy)) != self.facts.policy_digest


# --- the lock held by `imza-agent run` ----------------------------------------------------------

class InstanceLock:
    """Held by the one ``run`` of a data dir, from before it binds a port to its end."""

    def __init__(self, home: Path | None = None) -> None:
        self.path = (home or data_dir()) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, facts: Facts) -> RunningAgent | None:
        """None when this process is now the agent; else the agent that is."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited (PEP 446)
        deadline = time.monotonic() + SETTLE_SECONDS
        while not file_lock.lock(fd, wait=False):
            other = _from_lock_file(self.path)
            if other is not None or time.monotonic() > deadline:
                os.close(fd)
                return other or RunningAgent(pid=None)
            time.sleep(0.05)  # the holder writes its facts right after locking
        # Another agent from before the lock (or with another version) may still serve.
        older = _from_runtime_file(self.path.parent)
        if older is not None and older.pid != os.getpid():
            file_lock.unlock(fd)
            os.close(fd)
            return older
        data = facts.to_json().encode("utf-8")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, data)
        self._fd = fd
        return None

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing drops the lock
        self._fd = None


# --- looking from outside ---------------------------------------------------------------------

def find_running(home: Path | None = None) -> RunningAgent | None:
    """The agent running on this data dir, or None."""
    home = home or data_dir()
    if _lock_held(home / LOCK_NAME):
        # Held but not (yet, or any more) saying who: an agent starting or ending.
        agent: RunningAgent | None = (_from_lock_file(home / LOCK_NAME)
                                      or RunningAgent(pid=None))
    else:
        agent = _from_runtime_file(home)
    if agent is None:
        return None
    if agent.pid is not None:
        runtime = _read_runtime(home)
        if runtime.get("pid") == agent.pid:
            agent.runtime = runtime
    return agent


def _lock_held(path: Path) -> bool:
    return file_lock.is_held(path)


def _from_lock_file(path: Path) -> RunningAgent | None:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    facts = Facts.from_json(text) if text else None
    if facts is None or not pid_alive(facts.pid):
        return None
    return RunningAgent(facts.pid, facts)


def _read_runtime(home: Path) -> dict[str, Any]:
    try:
        data = json.loads((home / RUNTIME_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _from_runtime_file(home: Path) -> RunningAgent | None:
    """An agent that holds no lock: its runtime.json, its pid alive and ours, its socket
    answering."""
    runtime = _read_runtime(home)
    pid = runtime.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or pid == os.getpid():
        return None
    if not (is_agent_process(pid) and socket_answers(home / SOCKET_NAME)):
        return None
    return RunningAgent(pid, None, runtime)


def pid_alive(pid: int) -> bool:
    """Running as this user, not a zombie (another user's process that took the pid is
    not our agent). Asked of the platform: on Windows ``os.kill(pid, 0)`` is no question."""
    return current_platform().own_process_alive(pid)


def is_agent_process(pid: int) -> bool:
    """Whether ``pid`` is this user's live process and runs ``imza-agent run``, as far as
    the platform can see (its command line, or on Windows its program:
    ``Platform.agent_process``). Where it cannot tell, alive and ours is all we know."""
    return pid_alive(pid) and current_platform().agent_process(pid) is not False


def socket_answers(path: Path) -> bool:
    """The daemon's relay endpoint answers: its Unix socket, or on Windows its pipe."""
    return current_platform().relay().answers(path, 2.0)


def send_stop(pid: int) -> None:
    """The orderly stop: SIGTERM, or on Windows the agent's stop event (the platform's)."""
    current_platform().request_stop(pid)


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def token_summary(snapshot: Any) -> list[dict[str, Any]] | None:
    """runtime.json's ``tokens``: what ``imza-agent status`` shows of the last look at the
    key stores (``TokenWatch.latest``; None before the first look)."""
    if snapshot is None:
        return None
    return [{"label": t.label, "kind": str(getattr(t.kind, "value", t.kind)),
             "present": t.present, "demo": t.demo} for t in snapshot.tokens]
