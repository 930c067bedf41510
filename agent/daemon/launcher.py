"""Starting the daemon on demand, for the native messaging host and `imza-agent demo`.

The daemon runs in its own session so it outlives whoever started it (the browser kills
the native host when the extension disconnects). A lock file makes "start it" idempotent
across processes: two browsers starting their hosts at once start one daemon, not two.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from agent.paths import data_dir
from agent.platform import current as current_platform
from agent.platform import file_lock
from agent.platform.spawn import detached_popen_options

log = logging.getLogger("imza_agent.launcher")

DAEMON_START_TIMEOUT = 30.0
# How often the starter looks for the new daemon's socket: the daemon listens about
# 0.2 s after spawn, and each look is one connect() on a local socket.
SOCKET_LOOK_EVERY = 0.01


def daemon_command(config_path: Path | None, language: str | None = None) -> list[str]:
    """``imza-agent run`` with the config file (and language) this caller was given; no
    file: the daemon looks for the user's default file itself."""
    command = [sys.executable, "-m", "agent.cli"]
    if config_path is not None:
        command += ["--config", str(config_path.expanduser().absolute())]
    if language is not None:
        command += ["--language", language]
    return [*command, "run"]


def make_daemon_starter(socket_path: Path, config_path: Path | None,
                        timeout: float = DAEMON_START_TIMEOUT, *, language: str | None = None
                        ) -> Callable[[], Awaitable[None]]:
    """An idempotent "make sure the daemon runs": under a lock file, so two browsers
    starting their hosts at once start one daemon, not two."""
    lock = asyncio.Lock()

    async def ensure() -> None:
        async with lock:
            if await _socket_answers(socket_path):
                return
            await asyncio.to_thread(_start_and_wait, socket_path, config_path, timeout,
                                    language)

    return ensure


def start_daemon(socket_path: Path, config_path: Path | None, *, language: str | None = None,
                 timeout: float = DAEMON_START_TIMEOUT) -> None:
    """The same, for a command line (`imza-agent demo`): returns once the socket answers."""
    if not _socket_answers_sync(socket_path):
        _start_and_wait(socket_path, config_path, timeout, language)


def _start_and_wait(socket_path: Path, config_path: Path | None, timeout: float,
                    language: str | None = None) -> None:
    home = data_dir()
    with open(home / "daemon-start.lock", "a+b") as lock_file:
        file_lock.lock(lock_file.fileno(), wait=True)
        if _socket_answers_sync(socket_path):
            return
        log.info("starting the agent")
        with open(home / "daemon.log", "ab") as log_file:
            # Detached (its own session; on Windows its own process group, no console):
            # the daemon outlives this host (the browser kills the host when the extension
            # disconnects). stdout must not be the browser's pipe.
            daemon = subprocess.Popen(daemon_command(config_path, language),
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=log_file, close_fds=True,
                                      **detached_popen_options())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _socket_answers_sync(socket_path):
                return
            if daemon.poll() is not None:  # it refused to start (a bad config, another
                break                      # agent): waiting longer would not help
            time.sleep(SOCKET_LOOK_EVERY)
    if daemon.returncode is not None:
        raise OSError(f"the agent exited with status {daemon.returncode} "
                      f"(see {home / 'daemon.log'})")
    raise OSError(f"the agent did not start in time (see {home / 'daemon.log'})")


async def _socket_answers(path: Path) -> bool:
    return await asyncio.to_thread(_socket_answers_sync, path)


def _socket_answers_sync(path: Path) -> bool:
    """The daemon's relay endpoint answers: its Unix socket, or on Windows its pipe."""
    return current_platform().relay().answers(path, 2.0)
