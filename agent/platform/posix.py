"""What Linux and macOS answer alike in the platform layer: the administrator's policy is
a file only, the PC/SC service does not stop without readers, a process can be asked
whether it exists without harm, and SIGTERM asks the agent to stop."""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING

from agent.platform.base import NoStopWatch
from agent.platform.unix_relay import own_process_alive, process_exists
from agent.platform.workers import end_children

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from agent.pcsc.scard import StartedEvent
    from agent.platform.base import StopWatch
    from agent.policy.sources import PolicyFile


class PosixDefaults:
    def admin_policy(self, policy: PolicyFile) -> PolicyFile:
        return policy  # the file is the administrator's only policy store here

    def admin_tsa_url(self) -> str | None:
        return None

    def smartcard_started_event(self) -> StartedEvent | None:
        return None  # pcsc-lite's pcscd and macOS's service do not stop without readers

    def process_exists(self, pid: int) -> bool | None:
        return process_exists(pid)

    def own_process_alive(self, pid: int) -> bool:
        return own_process_alive(pid)

    def request_stop(self, pid: int) -> None:
        os.kill(pid, signal.SIGTERM)  # the daemon's handler runs the orderly stop

    def force_stop_command(self, pid: int) -> str:
        return f"kill -9 {pid}"

    def end_workers(self, spared: Iterable[int]) -> list[int]:
        return end_children(spared)

    def watch_stop_requests(self, callback: Callable[[], object]) -> StopWatch:
        return NoStopWatch()  # SIGTERM's handler is already installed (agent/daemon/run.py)
