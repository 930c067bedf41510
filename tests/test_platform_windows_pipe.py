"""The daemon's side of the Windows named pipe, on Linux, against a fake pipe API.

The fake records every ``CreateNamedPipeW`` (name, security descriptor, flags, instance
count), refuses a first instance whose name is already held, and connects clients through
real socket pairs, so the local transport's handshake, admission and JSON-RPC frames run
unchanged over what the accept loop hands them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agent.config import ServerConfig
from agent.platform.windows.identity import Identity
from agent.platform.windows.relay import NamedPipeRelay
from agent.policy.policy import Policy
from agent.protocol.dispatch import Dispatcher
from agent.transport import local as local_transport
from agent.transport.admission import OTHER_USER, Admission
from agent.transport.local import LocalSocketTransport
from agent.transport.session import SessionLimits

SID = "S-1-5-21-1111111111-2222222222-3333333333-1001"
OTHER_SID = "S-1-5-21-1111111111-2222222222-3333333333-1002"
NAME = f"\\\\.\\pipe\\imza-agent-{SID}"
ORIGIN = "https://portal.example"
OURS, OTHER_USERS, OUR_OTHER_SESSION = 4100, 4200, 4300
FIRST_PIPE_INSTANCE = 0x00080000


class FakeIdentities:
    def __init__(self) -> None:
        self.asked: list[int] = []
        self.processes = {OURS: Identity(SID, 2), OTHER_USERS: Identity(OTHER_SID, 3),
                          OUR_OTHER_SESSION: Identity(SID, 5)}

    def of_process(self, pid: int) -> Identity | None:
        self.asked.append(pid)
        return self.processes.get(pid)

    def own(self) -> Identity:
        return Identity(SID, 2)


class FakePipes:
    """Pipe instances in memory: each waits for one client, who arrives on a socket pair."""

    def __init__(self, held_by_others: frozenset[str] = frozenset()) -> None:
        self.created: list[tuple[str, str, int, int, int]] = []
        self.held_by_others = held_by_others
        self.waiting: dict[int, asyncio.Future[tuple[int | None, socket.socket]]] = {}
        self.connected: dict[int, tuple[int | None, socket.socket]] = {}
        self.closed: list[int] = []

    def create(self, name: str, sddl: str, open_mode: int, pipe_mode: int,
               max_instances: int) -> Any:
        if open_mode & FIRST_PIPE_INSTANCE and name in self.held_by_others:
            raise PermissionError(5, "Access is denied")  # what Windows answers then
        self.created.append((name, sddl, open_mode, pipe_mode, max_instances))
        handle = len(self.created)
        self.waiting[handle] = asyncio.get_running_loop().create_future()
        return handle

    async def accept(self, handle: Any) -> None:
        self.connected[handle] = await self.waiting[handle]
        del self.waiting[handle]

    def client_pid(self, handle: Any) -> int | None:
        return self.connected[handle][0]

    async def open_streams(self, handle: Any, limit: int
                           ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        _pid, sock = self.connected.pop(handle)
        return await asyncio.open_connection(sock=sock, limit=limit)

    def close(self, handle: Any) -> None:
        self.closed.append(handle)
        waiting = self.waiting.pop(handle, None)
        if waiting is not None:
            waiting.cancel()
        if handle in self.connected:
            self.connected.pop(handle)[1].close()

    async def client(self, pid: int | None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The native host's side: opens the one instance waiting, as CreateFileW would."""
        free = [h for h, f in self.waiting.items() if not f.done()]
        if not free:
            raise OSError(231, "All pipe instances are busy")
        server_end, client_end = socket.socketpair()
        self.waiting[free[0]].set_result((pid, server_end))
        return await asyncio.open_connection(sock=client_end)


def frame(payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload).encode()
    return struct.pack(">I", len(data)) + data


async def read(reader: asyncio.StreamReader) -> Any:
    (size,) = struct.unpack(">I", await asyncio.wait_for(reader.readexactly(4), 5))
    return json.loads(await reader.readexactly(size))


@pytest.fixture
def pipes() -> FakePipes:
    return FakePipes()


@pytest.fixture
async def transport(tmp_path: Path, pipes: FakePipes, monkeypatch: pytest.MonkeyPatch
                    ) -> Any:
    relay = NamedPipeRelay(SID, pipes, FakeIdentities())
    monkeypatch.setattr(local_transport, "current_platform",
                        lambda: SimpleNamespace(relay=lambda: relay))
    settings = ServerConfig(ws_port=0, ws_enabled=True, wss_enabled=False,
                            max_connections_per_origin=2)
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text('block = ["https://blocked.example"]\n', encoding="utf-8")
    policy = Policy.load(system_policy=policy_file, grants_file=tmp_path / "grants.json")
    admission = Admission(policy, max_connections_per_origin=2)
    local = LocalSocketTransport(Dispatcher(), settings, tmp_path / "agent.sock", admission,
                                 SessionLimits.from_settings(settings))
    assert await local.start()
    try:
        yield local, admission
    finally:
        await local.close()


async def test_the_pipe_is_created_for_this_user_only(transport: Any, pipes: FakePipes
                                                      ) -> None:
    (name, sddl, mode, pipe_mode, instances), = pipes.created
    assert name == NAME
    assert sddl == f"D:P(D;;GA;;;NU)(A;;GA;;;{SID})"
    assert mode == 0x00000003 | 0x40000000 | FIRST_PIPE_INSTANCE  # duplex, overlapped
    assert pipe_mode == 0x00000008  # byte mode, blocking, PIPE_REJECT_REMOTE_CLIENTS
    assert instances == 255


async def test_json_frames_round_trip_through_the_pipe(transport: Any, pipes: FakePipes
                                                       ) -> None:
    _local, admission = transport
    reader, writer = await pipes.client(OURS)
    # As soon as one client holds an instance, the next waits without the first-flag.
    assert [c[2] & FIRST_PIPE_INSTANCE for c in pipes.created] == [FIRST_PIPE_INSTANCE, 0]
    writer.write(frame({"origin": ORIGIN}))
    assert await read(reader) == {"ok": True}
    assert admission.connections.count(ORIGIN) == 1
    writer.write(frame({"jsonrpc": "2.0", "id": 7, "method": "no.such.method"}))
    answer = await read(reader)
    assert answer["id"] == 7 and answer["error"]["code"] == -32601
    # A second native host at the same time gets its own instance.
    reader2, writer2 = await pipes.client(OURS)
    writer2.write(frame({"origin": "https://blocked.example"}))
    refused = await read(reader2)
    assert refused["ok"] is False
    writer.close()
    writer2.close()
    for _ in range(100):
        if admission.connections.count(ORIGIN) == 0:
            break
        await asyncio.sleep(0.01)
    assert admission.connections.count(ORIGIN) == 0


@pytest.mark.parametrize("pid", [OTHER_USERS, OUR_OTHER_SESSION, 9999, None])
async def test_a_client_of_another_user_or_session_is_refused(
        transport: Any, pipes: FakePipes, pid: int | None,
        caplog: pytest.LogCaptureFixture) -> None:
    _local, admission = transport
    with caplog.at_level(logging.WARNING, logger="imza_agent.transport"):
        reader, writer = await pipes.client(pid)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing said
        writer.close()
    assert admission.connections.count(ORIGIN) == 0
    assert 1 in pipes.closed
    assert any(OTHER_USER in r.getMessage() for r in caplog.records)
    # The pipe keeps serving this user afterwards.
    reader, writer = await pipes.client(OURS)
    writer.write(frame({"origin": ORIGIN}))
    assert await read(reader) == {"ok": True}
    writer.close()


async def test_a_name_someone_else_holds_turns_the_transport_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    pipes = FakePipes(held_by_others=frozenset({NAME}))
    relay = NamedPipeRelay(SID, pipes, FakeIdentities())
    monkeypatch.setattr(local_transport, "current_platform",
                        lambda: SimpleNamespace(relay=lambda: relay))
    settings = ServerConfig(ws_port=0)
    policy = Policy.load(system_policy=tmp_path / "none.toml", grants_file=tmp_path / "g.json")
    local = LocalSocketTransport(Dispatcher(), settings, tmp_path / "agent.sock",
                                 Admission(policy, max_connections_per_origin=1),
                                 SessionLimits.from_settings(settings))
    with caplog.at_level(logging.WARNING, logger="imza_agent.transport"):
        assert await local.start() is False
    assert "extension transport is off" in caplog.text and pipes.created == []


async def test_without_an_identity_lookup_nobody_is_served(tmp_path: Path) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise AssertionError("must not be called")

    with pytest.raises(OSError, match="imza-agent-S-1-5-21"):
        await NamedPipeRelay(SID, FakePipes()).listen(tmp_path / "x", handler, 2**16)


async def test_closing_stops_accepting_and_frees_the_waiting_instance(
        transport: Any, pipes: FakePipes) -> None:
    local, _admission = transport
    await local.close()
    assert pipes.closed == [1]
    with pytest.raises(OSError, match="busy"):
        await pipes.client(OURS)
