"""Another OS user on this machine: who owns a loopback client socket (agent/platform/peer.py),
and the agent refusing that user's connections (issue 11 §2).

The second user is ``nobody``, reached with ``setpriv``: these tests need root to switch
user, and fail (never skip) with a message saying so when they cannot.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon import Daemon

from agent.platform.peer import (
    Endpoint,
    ProcNetTcp,
    can_check_peers,
    peer_uid,
    same_user,
)

# setpriv, /proc/net/tcp and a second OS user: Linux itself (docs/testing.md)
pytestmark = [pytest.mark.linux]

OTHER_USER = "nobody"
OTHER_GROUP = "nogroup"
ORIGIN = "https://e-gov.az"  # trusted by the shipped defaults: the attacker's favourite

# Connects, says which local port it got, and holds the connection until stdin closes.
HOLD = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
sock = socket.socket(family, socket.SOCK_STREAM)
sock.connect((sys.argv[1], int(sys.argv[2])))
print(sock.getsockname()[1], flush=True)
sys.stdin.read()
"""

# A WebSocket upgrade over TLS written by hand (stdlib only, so it runs with any Python
# the other user may execute); prints the HTTP status the agent answered.
UPGRADE = """
import base64, os, socket, ssl, sys
port, origin = int(sys.argv[1]), sys.argv[2]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
key = base64.b64encode(os.urandom(16)).decode()
request = (f"GET /v1 HTTP/1.1\\r\\nHost: 127.0.0.1:{port}\\r\\nOrigin: {origin}\\r\\n"
           "Upgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
           f"Sec-WebSocket-Key: {key}\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n")
with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(request.encode())
        answer = b""
        while b"\\r\\n" not in answer:
            chunk = tls.recv(4096)
            if not chunk:
                break
            answer += chunk
print(answer.split(b"\\r\\n", 1)[0].decode("latin-1").split()[1])
"""


# --- running as another user ----------------------------------------------------------------

def _other_uid() -> int:
    import pwd  # POSIX only: imported here so that collecting this module works on Windows

    return pwd.getpwnam(OTHER_USER).pw_uid


def _as_other_user() -> list[str]:
    """The command prefix that runs a program as ``nobody``; fails the test when this
    machine cannot (the component is root plus util-linux's setpriv)."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.fail("this test switches to the user 'nobody' to play a second local user: "
                    "run it as root on a machine with setpriv (util-linux)")
    try:
        _other_uid()
    except KeyError:
        pytest.fail(f"this test needs the user {OTHER_USER!r} on the machine")
    return [setpriv, f"--reuid={OTHER_USER}", f"--regid={OTHER_GROUP}", "--clear-groups"]


def _python_for_other_user() -> str:
    """A Python ``nobody`` may execute: ours when its path is readable, else the system's."""
    prefix = _as_other_user()
    for candidate in (sys.executable, "/usr/bin/python3"):
        probe = subprocess.run([*prefix, candidate, "-I", "-c", "pass"], capture_output=True,
                               timeout=30, check=False)
        if probe.returncode == 0:
            return candidate
    pytest.fail(f"the user {OTHER_USER!r} can execute neither {sys.executable} nor "
                "/usr/bin/python3")


@contextlib.contextmanager
def _listener(host: str, *, dual_stack: bool = False) -> Iterator[socket.socket]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as server:
        if dual_stack:
            server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        server.bind((host, 0))
        server.listen(4)
        server.settimeout(30)
        yield server


@contextlib.contextmanager
def _held_connection(server: socket.socket, host: str, user: list[str] | None
                     ) -> Iterator[socket.socket]:
    """A connection to ``server`` from a child process (as ``user`` when given) that keeps
    it open; yields our accepted end."""
    python = _python_for_other_user() if user else sys.executable
    port = server.getsockname()[1]
    child = subprocess.Popen([*(user or []), python, "-I", "-c", HOLD, host, str(port)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        client_port = int(child.stdout.readline())
        accepted, peer = server.accept()
        with accepted:
            assert peer[1] == client_port
            yield accepted
        child.stdin.close()
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


# --- the lookup ------------------------------------------------------------------------------

def test_linux_can_check_peers() -> None:
    assert sys.platform.startswith("linux")
    assert can_check_peers()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_own_connection_is_the_same_user(host: str) -> None:
    with _listener(host) as server, socket.create_connection(
            (host, server.getsockname()[1]), timeout=30):
        accepted, _ = server.accept()
        with accepted:
            local, remote = accepted.getsockname(), accepted.getpeername()
            assert peer_uid(local, remote) == os.getuid()
            assert same_user(local, remote)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_connection_from_another_user_is_not_the_same_user(host: str) -> None:
    other = _as_other_user()
    with _listener(host) as server, _held_connection(server, host, other) as accepted:
        local, remote = accepted.getsockname(), accepted.getpeername()
        assert peer_uid(local, remote) == _other_uid()
        assert not same_user(local, remote)


def test_ipv4_client_of_a_dual_stack_listener() -> None:
    """The server sees ``::ffff:127.0.0.1``; the client's socket is an IPv4 one."""
    other = _as_other_user()
    with _listener("::", dual_stack=True) as server:
        with _held_connection(server, "127.0.0.1", None) as accepted:
            remote = accepted.getpeername()
            assert remote[0] == "::ffff:127.0.0.1"
            assert peer_uid(accepted.getsockname(), remote) == os.getuid()
        with _held_connection(server, "127.0.0.1", other) as accepted:
            assert peer_uid(accepted.getsockname(), accepted.getpeername()) == _other_uid()


def test_no_live_client_socket_is_unknown() -> None:
    with _listener("127.0.0.1") as server:
        port = server.getsockname()[1]
        # Nobody connected from this port: there is no row to find.
        assert peer_uid(("127.0.0.1", port), ("127.0.0.1", 1)) is None
        assert not same_user(("127.0.0.1", port), ("127.0.0.1", 1))


def test_time_wait_rows_and_two_owners_are_not_an_answer(tmp_path: Path) -> None:
    """A TIME_WAIT row has no owner (its uid column is 0, root); two live rows for one
    connection are not trusted either."""
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt" \
             "   uid  timeout inode\n"

    def row(state: str, uid: int) -> str:
        # 127.0.0.1:40000 → 127.0.0.1:29170, little-endian words as on x86 and ARM.
        local = f"{int.from_bytes(bytes([127, 0, 0, 1]), sys.byteorder):08X}:9C40"
        remote = f"{int.from_bytes(bytes([127, 0, 0, 1]), sys.byteorder):08X}:71F2"
        return f"   0: {local} {remote} {state} 00000000:00000000 00:00000000 00000000" \
               f" {uid:5d}        0 12345 1 0000000000000000 20 4 0 10 -1\n"

    client = Endpoint.of(("127.0.0.1", 40000))
    server = Endpoint.of(("127.0.0.1", 29170))
    (tmp_path / "tcp").write_text(header + row("06", 0) + row("01", 1000), encoding="ascii")
    assert ProcNetTcp(tmp_path).owner_uid(client, server) == 1000
    (tmp_path / "tcp").write_text(header + row("06", 0), encoding="ascii")
    assert ProcNetTcp(tmp_path).owner_uid(client, server) is None
    (tmp_path / "tcp").write_text(header + row("01", 1000) + row("01", 65534),
                                  encoding="ascii")
    assert ProcNetTcp(tmp_path).owner_uid(client, server) is None


# --- the agent -------------------------------------------------------------------------------

def _upgrade_status(port: int, prefix: list[str], python: str) -> int:
    done = subprocess.run([*prefix, python, "-I", "-c", UPGRADE, str(port), ORIGIN],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


@pytest.mark.daemon
def test_another_os_user_is_refused_at_the_handshake(tmp_path: Path) -> None:
    """Issue 11 §2: as ``nobody``, with the Origin of a site the defaults trust, the
    upgrade is refused; the same request from the agent's own user is accepted."""
    other = _as_other_user()
    python = _python_for_other_user()
    agent = Daemon(home=tmp_path / "home", modules=[], env={}).start()
    try:
        port = agent.ports["wss"]
        assert _upgrade_status(port, [], sys.executable) == 101
        assert _upgrade_status(port, other, python) == 403
        assert "another OS user" in agent.log_text()
    finally:
        assert agent.stop() == 0, agent.log_text()[-3000:]
