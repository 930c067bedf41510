"""The daemon's request to stop itself (agent/platform/stop.py): for real here, from a
thread as the tray link does, reaching the SIGTERM handler; on Windows the signal is
raised in the process, never sent through ``os.kill`` (``TerminateProcess`` there)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.platform.stop import stop_this_process


def test_the_stop_reaches_the_sigterm_handler_from_another_thread() -> None:
    code = textwrap.dedent("""
        import signal, threading, time
        from agent.platform.stop import stop_this_process
        got = []
        signal.signal(signal.SIGTERM, lambda n, f: got.append(n))
        threading.Thread(target=stop_this_process).start()
        for _ in range(500):
            if got:
                break
            time.sleep(0.01)
        print(got == [signal.SIGTERM])
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False, cwd=Path(__file__).resolve().parents[1])
    assert done.stdout.strip() == "True", done.stderr


@pytest.mark.parametrize(("system", "killed", "raised"), [
    ("linux", [(os.getpid(), signal.SIGTERM)], []),
    ("darwin", [(os.getpid(), signal.SIGTERM)], []),
    ("win32", [], [signal.SIGTERM])])
def test_each_os_asks_its_own_way(system: str, killed: list[tuple[int, int]],
                                  raised: list[int]) -> None:
    kills: list[tuple[int, int]] = []
    raises: list[int] = []
    stop_this_process(system, kill=lambda pid, sig: kills.append((pid, sig)),
                      raise_signal=raises.append)
    assert (kills, raises) == (killed, raised)
