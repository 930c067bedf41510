"""The native messaging host on input that stops mid-message (issue 11 §12): it exits with
status 0 and one warning line, never a traceback.

The host runs as the browser starts it (``imza-agent native-host <extension origin>``, a
real subprocess with pipes); none of these inputs opens a page connection, so no daemon is
involved.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from daemon import REPO

from agent.platform.native_messaging import CHROMIUM_EXTENSION_ID
from agent.transport.native_relay import MAX_FROM_BROWSER

NATIVE = struct.Struct("=I")  # native byte order, as the browsers write it
TRUNCATED = "input ended inside a"


def _run_host(tmp_path: Path, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "IMZA_AGENT_HOME": str(tmp_path / "home"),
           "IMZA_AGENT_SYSTEM_POLICY": str(tmp_path / "no-policy.toml")}
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "native-host",
         f"chrome-extension://{CHROMIUM_EXTENSION_ID}/"],
        cwd=REPO, env=env, input=stdin, capture_output=True, timeout=60, check=False)


def _message(body: bytes) -> bytes:
    return NATIVE.pack(len(body)) + body


@pytest.mark.parametrize(("stdin", "what"), [
    (b"\x10", "length prefix (1 of 4 bytes)"),
    (NATIVE.pack(100)[:3], "length prefix (3 of 4 bytes)"),
    (NATIVE.pack(100) + b'{"ty', "message (4 of 100 bytes)"),
    (NATIVE.pack(100), "message (0 of 100 bytes)"),
    # A whole message first (junk, dropped as such), then a cut one.
    (_message(b"not json") + NATIVE.pack(50) + b"{}", "message (2 of 50 bytes)"),
    # Over the host's limit: read away unparsed, and the input ends while it is.
    (NATIVE.pack(MAX_FROM_BROWSER + 1) + b"x" * 1000,
     f"message (fewer than {MAX_FROM_BROWSER + 1} bytes)"),
])
def test_truncated_input_exits_cleanly(tmp_path: Path, stdin: bytes, what: str) -> None:
    done = _run_host(tmp_path, stdin)
    stderr = done.stderr.decode("utf-8", errors="replace")
    assert done.returncode == 0, stderr
    assert "Traceback" not in stderr
    warnings = [line for line in stderr.splitlines() if TRUNCATED in line]
    assert len(warnings) == 1, stderr
    assert f"{TRUNCATED} {what}" in warnings[0]
    assert done.stdout == b""  # nothing half-written to the browser either


def test_input_ending_between_messages_is_silent(tmp_path: Path) -> None:
    for stdin in (b"", _message(b"not json")):
        done = _run_host(tmp_path, stdin)
        stderr = done.stderr.decode("utf-8", errors="replace")
        assert done.returncode == 0, stderr
        assert TRUNCATED not in stderr and "Traceback" not in stderr
