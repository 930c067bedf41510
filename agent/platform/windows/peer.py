"""Which Windows user and session own the client end of a loopback TCP connection.

``GetExtendedTcpTable`` lists every TCP connection with its owning process id
(``TCP_TABLE_OWNER_PID_CONNECTIONS``); the client's row is the one whose local end is the
peer address we see and whose remote end is our listening side. That process's token gives
the user SID, and its session id tells two logons of one user apart on a terminal server.

The tables come in as the raw bytes Windows fills in (``TcpTables`` is the seam); parsing
them here, in Python, lets the tests build such bytes and check every field.
"""

from __future__ import annotations

import ctypes
import ipaddress
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agent.platform.peer import Endpoint, _unmapped
from agent.platform.windows.identity import Identities

AF_INET = 2
AF_INET6 = 23
TCP_TABLE_OWNER_PID_CONNECTIONS = 4
MIB_TCP_STATE_TIME_WAIT = 11  # a leftover with owner pid 0, never the live client
_ROW4 = struct.Struct("<I4s4s4s4sI")  # state, local addr, local port, remote addr/port, pid
_ROW6 = struct.Struct("<16sI4s16sI4sII")  # addr, scope, port (×2), state, pid
_COUNT = struct.Struct("<I")


@dataclass(frozen=True)
class TcpRow:
    local: Endpoint
    remote: Endpoint
    state: int
    pid: int


def _port(raw: bytes) -> int:
    # The DWORD holds the port in network byte order in its first two bytes.
    return int.from_bytes(raw[:2], "big")


def parse_table(data: bytes, family: int) -> Iterator[TcpRow]:
    """Rows of a MIB_TCPTABLE_OWNER_PID (AF_INET) or MIB_TCP6TABLE_OWNER_PID (AF_INET6)."""
    (count,) = _COUNT.unpack_from(data, 0)
    row = _ROW4 if family == AF_INET else _ROW6
    for i in range(count):
        offset = _COUNT.size + i * row.size
        if offset + row.size > len(data):
            return
        if family == AF_INET:
            state, la, lp, ra, rp, pid = _ROW4.unpack_from(data, offset)
            local = Endpoint(ipaddress.IPv4Address(la), _port(lp))
            remote = Endpoint(ipaddress.IPv4Address(ra), _port(rp))
        else:
            la, _ls, lp, ra, _rs, rp, state, pid = _ROW6.unpack_from(data, offset)
            local = Endpoint(_unmapped(ipaddress.IPv6Address(la)), _port(lp))
            remote = Endpoint(_unmapped(ipaddress.IPv6Address(ra)), _port(rp))
        yield TcpRow(local, remote, state, pid)


class TcpTables(Protocol):
    def table(self, family: int) -> bytes:
        """The raw connection table of ``family`` with owning pids."""


@dataclass
class WindowsPeerCheck:
    tables: TcpTables
    identities: Identities

    def owner_pid(self, client: Endpoint, server: Endpoint) -> int | None:
        pids = {row.pid for family in (AF_INET, AF_INET6)
                for row in parse_table(self.tables.table(family), family)
                if row.state != MIB_TCP_STATE_TIME_WAIT
                and row.local == client and row.remote == server}
        return pids.pop() if len(pids) == 1 else None  # two owners: trust neither

    def same_user(self, local: Sequence[Any], remote: Sequence[Any]) -> bool:
        try:
            client, server = Endpoint.of(remote), Endpoint.of(local)
        except (ValueError, IndexError, TypeError):
            return False
        pid = self.owner_pid(client, server)
        if pid is None:
            return False
        owner = self.identities.of_process(pid)
        return owner is not None and owner == self.identities.own()


class IpHlpApi:
    """The real tables from iphlpapi.dll (Windows only)."""

    def __init__(self) -> None:
        self._dll: Any = ctypes.WinDLL("iphlpapi")  # type: ignore[attr-defined,unused-ignore]

    def table(self, family: int) -> bytes:
        size = ctypes.c_uint32(0)
        for _attempt in range(5):  # the table may grow between the two calls
            buffer = ctypes.create_string_buffer(max(size.value, 4))
            result = self._dll.GetExtendedTcpTable(buffer, ctypes.byref(size), False, family,
                                                   TCP_TABLE_OWNER_PID_CONNECTIONS, 0)
            if result == 0:
                return buffer.raw[:size.value]
            if result != 122:  # ERROR_INSUFFICIENT_BUFFER: size now says how much
                raise OSError(result, "GetExtendedTcpTable failed")
        raise OSError(122, "GetExtendedTcpTable: the table keeps growing")
