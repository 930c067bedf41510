"""The libproc walk behind ``ProcSockets``: which process holds a given TCP socket.

For every process this user may inspect: ``proc_pidinfo(PROC_PIDLISTFDS)`` lists its file
descriptors, ``proc_pidfdinfo(PROC_PIDFDSOCKETINFO)`` describes each socket, and
``proc_pidinfo(PROC_PIDTBSDINFO)`` gives the process's uid.

The structures are read from their raw bytes here, at fixed offsets, rather than declared
as ctypes structures, so the tests can hand in bytes laid out as the kernel lays them out
and a wrong offset fails on Linux. The layouts are those of XNU's ``bsd/sys/proc_info.h``
(apple-oss-distributions/xnu): ``struct proc_fdinfo``, ``struct socket_fdinfo`` (=
``proc_fileinfo`` + ``socket_info``), ``struct vinfo_stat``, ``struct sockbuf_info``,
``struct in_sockinfo``, ``struct tcp_sockinfo`` and ``struct proc_bsdinfo``; offsets
below are computed from those declarations with the natural alignment of LP64 macOS.
"""

from __future__ import annotations

import ctypes
import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from agent.platform.macos.peer import ProcSocket
from agent.platform.peer import Endpoint, _unmapped

PROC_UID_ONLY = 4  # proc_listpids: the processes of one uid
PROC_PIDLISTFDS = 1
PROC_PIDTBSDINFO = 3
PROC_PIDFDSOCKETINFO = 3
PROX_FDTYPE_SOCKET = 2
SOCKINFO_TCP = 2
INI_IPV4, INI_IPV6 = 0x1, 0x2
AF_INET, AF_INET6 = 2, 30  # macOS's AF_INET6 is 30, not Linux's 10
TSI_S_TIME_WAIT = 10

# struct proc_fdinfo { int32_t proc_fd; uint32_t proc_fdtype; }
FDINFO = struct.Struct("=iI")
# struct socket_fdinfo: proc_fileinfo is 24 bytes (2×u32, off_t, i32, u32); socket_info
# follows with vinfo_stat (136 bytes), so soi_so sits at 24 + 136 = 160.
SOI_FAMILY = 24 + 136 + 8 + 8 + 4 + 4  # after soi_so, soi_pcb, soi_type, soi_protocol
# soi_family (4), eight shorts (16), soi_oobmark (4), soi_rcv and soi_snd (2 × 24 bytes)
SOI_KIND = SOI_FAMILY + 4 + 16 + 4 + 48
SOI_PROTO = SOI_KIND + 8  # after soi_kind and rfu_1; 8-aligned (the union has u64s)
# in_sockinfo inside soi_proto: fport, lport (ints holding the port in network order),
# gencnt (u64 at +8), flags, flow, vflag (u8 at +24), ttl, rfu_1 (u32 at +28), then the
# foreign and the local address (16-byte unions at +32 and +48; IPv4 in the last 4 bytes).
INSI_FPORT, INSI_LPORT, INSI_VFLAG = 0, 4, 24
INSI_FADDR, INSI_LADDR = 32, 48
TCPSI_STATE = 80  # tcp_sockinfo: in_sockinfo is 80 bytes (insi_v4 at 64, insi_v6 68..80)
# sizeof(struct socket_fdinfo): the union's largest member is un_sockinfo (528 bytes).
SOCKET_FDINFO_SIZE = SOI_PROTO + 528
# struct proc_bsdinfo: pbi_flags, status, xstatus, pid, ppid, then pbi_uid at 20; 136 bytes.
PBI_UID = 20
BSDINFO_SIZE = 136


def _port(raw: bytes) -> int:
    # ``insi_lport`` is an int whose first two bytes hold the port in network order.
    return int.from_bytes(raw[:2], "big")


def _address(union: bytes, v6: bool) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if v6:
        return _unmapped(ipaddress.IPv6Address(union))
    return ipaddress.IPv4Address(union[12:16])  # in4in6_addr: 3 pad words, then in_addr


def parse_fds(data: bytes) -> Iterator[tuple[int, int]]:
    """``(fd, type)`` from PROC_PIDLISTFDS's array of ``proc_fdinfo``."""
    for offset in range(0, len(data) - FDINFO.size + 1, FDINFO.size):
        fd, kind = FDINFO.unpack_from(data, offset)
        yield fd, kind


def parse_tcp_socket(data: bytes) -> tuple[Endpoint, Endpoint] | None:
    """(local, remote) of a connected TCP socket's ``socket_fdinfo``; None otherwise."""
    if len(data) < SOI_PROTO + TCPSI_STATE + 4:
        return None
    (family,) = struct.unpack_from("=i", data, SOI_FAMILY)
    (kind,) = struct.unpack_from("=i", data, SOI_KIND)
    if kind != SOCKINFO_TCP or family not in (AF_INET, AF_INET6):
        return None
    base = SOI_PROTO
    (state,) = struct.unpack_from("=i", data, base + TCPSI_STATE)
    if state == TSI_S_TIME_WAIT:
        return None
    v6 = bool(data[base + INSI_VFLAG] & INI_IPV6) and not data[base + INSI_VFLAG] & INI_IPV4
    local = Endpoint(_address(data[base + INSI_LADDR:base + INSI_LADDR + 16], v6),
                     _port(data[base + INSI_LPORT:base + INSI_LPORT + 4]))
    remote = Endpoint(_address(data[base + INSI_FADDR:base + INSI_FADDR + 16], v6),
                      _port(data[base + INSI_FPORT:base + INSI_FPORT + 4]))
    return local, remote


def parse_uid(data: bytes) -> int | None:
    if len(data) < PBI_UID + 4:
        return None
    return int(struct.unpack_from("=I", data, PBI_UID)[0])


class Libproc(Protocol):
    """The four libproc calls, as raw bytes (empty or None when the call fails)."""

    def list_pids(self, uid: int) -> list[int]: ...

    def list_fds(self, pid: int) -> bytes: ...

    def socket_info(self, pid: int, fd: int) -> bytes | None: ...

    def bsd_info(self, pid: int) -> bytes | None: ...


@dataclass
class LibprocSockets:
    """``ProcSockets`` over libproc, walking only ``uid``'s processes: those are the ones
    this user may inspect, and the only ones that can be the same user."""

    libproc: Libproc
    uid: int

    def tcp_sockets(self) -> Iterator[ProcSocket]:
        for pid in self.libproc.list_pids(self.uid):
            for fd, kind in parse_fds(self.libproc.list_fds(pid)):
                if kind != PROX_FDTYPE_SOCKET:
                    continue
                info = self.libproc.socket_info(pid, fd)
                ends = parse_tcp_socket(info) if info else None
                if ends is not None:
                    yield ProcSocket(pid, ends[0], ends[1])

    def uid_of(self, pid: int) -> int | None:
        info = self.libproc.bsd_info(pid)
        return parse_uid(info) if info else None


class LibprocDll:  # pragma: no cover - needs macOS
    """The real calls through /usr/lib/libproc.dylib (not run on this project's CI)."""

    def __init__(self) -> None:
        self._lib: Any = ctypes.CDLL("/usr/lib/libproc.dylib", use_errno=True)
        self._lib.proc_listpids.argtypes = [ctypes.c_uint32, ctypes.c_uint32, ctypes.c_void_p,
                                            ctypes.c_int]
        self._lib.proc_pidinfo.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_uint64,
                                           ctypes.c_void_p, ctypes.c_int]
        self._lib.proc_pidfdinfo.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                             ctypes.c_void_p, ctypes.c_int]

    def list_pids(self, uid: int) -> list[int]:
        size = self._lib.proc_listpids(PROC_UID_ONLY, uid, None, 0)
        if size <= 0:
            return []
        buffer = (ctypes.c_int * (size // 4 + 64))()  # room for processes started since
        size = self._lib.proc_listpids(PROC_UID_ONLY, uid, buffer, ctypes.sizeof(buffer))
        return [pid for pid in buffer[:max(size, 0) // 4] if pid > 0]

    def list_fds(self, pid: int) -> bytes:
        size = self._lib.proc_pidinfo(pid, PROC_PIDLISTFDS, 0, None, 0)
        if size <= 0:
            return b""
        buffer = ctypes.create_string_buffer(size + 32 * FDINFO.size)
        size = self._lib.proc_pidinfo(pid, PROC_PIDLISTFDS, 0, buffer, len(buffer))
        return buffer.raw[:max(size, 0)]

    def socket_info(self, pid: int, fd: int) -> bytes | None:
        buffer = ctypes.create_string_buffer(SOCKET_FDINFO_SIZE)
        size = self._lib.proc_pidfdinfo(pid, fd, PROC_PIDFDSOCKETINFO, buffer, len(buffer))
        return buffer.raw[:size] if size == SOCKET_FDINFO_SIZE else None

    def bsd_info(self, pid: int) -> bytes | None:
        buffer = ctypes.create_string_buffer(BSDINFO_SIZE)
        size = self._lib.proc_pidinfo(pid, PROC_PIDTBSDINFO, 0, buffer, len(buffer))
        return buffer.raw[:size] if size == BSDINFO_SIZE else None


def real_sockets(uid: int) -> LibprocSockets | None:
    """The walk on a Mac; None where libproc cannot be loaded (no check then)."""
    try:
        return LibprocSockets(LibprocDll(), uid)
    except OSError:
        return None
