"""The macOS peer check's libproc walk, on Linux, against a fake libproc.

The fake returns the bytes the kernel would: ``socket_fdinfo`` and ``proc_bsdinfo`` are
declared below as ctypes structures field by field after XNU's ``bsd/sys/proc_info.h``,
so ctypes (not the parser) decides where each field lands, and a wrong offset in
``agent/platform/macos/libproc.py`` reads the wrong bytes and fails.
"""

from __future__ import annotations

import ctypes
import ipaddress
import socket
from pathlib import Path

import pytest

from agent.platform.macos import MacPlatform
from agent.platform.macos.libproc import (
    SOCKET_FDINFO_SIZE,
    LibprocSockets,
    parse_tcp_socket,
    real_sockets,
)
from agent.platform.macos.peer import MacPeerCheck
from agent.platform.peer import Endpoint

UID = 501
c = ctypes


class ProcFileinfo(c.Structure):
    _fields_ = (("fi_openflags", c.c_uint32), ("fi_status", c.c_uint32),
                ("fi_offset", c.c_int64), ("fi_type", c.c_int32), ("fi_guardflags", c.c_uint32))


class VinfoStat(c.Structure):
    _fields_ = (("vst_dev", c.c_uint32), ("vst_mode", c.c_uint16), ("vst_nlink", c.c_uint16),
                ("vst_ino", c.c_uint64), ("vst_uid", c.c_uint32), ("vst_gid", c.c_uint32),
                ("times", c.c_int64 * 8), ("vst_size", c.c_int64), ("vst_blocks", c.c_int64),
                ("vst_blksize", c.c_int32), ("vst_flags", c.c_uint32), ("vst_gen", c.c_uint32),
                ("vst_rdev", c.c_uint32), ("vst_qspare", c.c_int64 * 2))


class SockbufInfo(c.Structure):
    _fields_ = (("sbi_cc", c.c_uint32), ("sbi_hiwat", c.c_uint32), ("sbi_mbcnt", c.c_uint32),
                ("sbi_mbmax", c.c_uint32), ("sbi_lowat", c.c_uint32), ("sbi_flags", c.c_short),
                ("sbi_timeo", c.c_short))


class In4In6(c.Structure):
    _fields_ = (("pad", c.c_uint32 * 3), ("addr4", c.c_uint8 * 4))


class InAddrUnion(c.Union):
    _fields_ = (("ina_46", In4In6), ("ina_6", c.c_uint8 * 16))


class InV4(c.Structure):
    _fields_ = (("in4_tos", c.c_uint8),)


class InV6(c.Structure):
    _fields_ = (("in6_hlim", c.c_uint8), ("in6_cksum", c.c_int), ("in6_ifindex", c.c_ushort),
                ("in6_hops", c.c_short))


class InSockinfo(c.Structure):
    _fields_ = (("insi_fport", c.c_int), ("insi_lport", c.c_int), ("insi_gencnt", c.c_uint64),
                ("insi_flags", c.c_uint32), ("insi_flow", c.c_uint32), ("insi_vflag", c.c_uint8),
                ("insi_ip_ttl", c.c_uint8), ("rfu_1", c.c_uint32), ("insi_faddr", InAddrUnion),
                ("insi_laddr", InAddrUnion), ("insi_v4", InV4), ("insi_v6", InV6))


class TcpSockinfo(c.Structure):
    _fields_ = (("tcpsi_ini", InSockinfo), ("tcpsi_state", c.c_int),
                ("tcpsi_timer", c.c_int * 4), ("tcpsi_mss", c.c_int),
                ("tcpsi_flags", c.c_uint32), ("rfu_1", c.c_uint32), ("tcpsi_tp", c.c_uint64))


class UnSockinfo(c.Structure):
    _fields_ = (("unsi_conn_so", c.c_uint64), ("unsi_conn_pcb", c.c_uint64),
                ("unsi_addr", c.c_char * 255), ("unsi_caddr", c.c_char * 255))


class SoiProto(c.Union):
    _fields_ = (("pri_in", InSockinfo), ("pri_tcp", TcpSockinfo), ("pri_un", UnSockinfo))


class SocketInfo(c.Structure):
    _fields_ = (("soi_stat", VinfoStat), ("soi_so", c.c_uint64), ("soi_pcb", c.c_uint64),
                ("soi_type", c.c_int), ("soi_protocol", c.c_int), ("soi_family", c.c_int),
                ("shorts", c.c_short * 7), ("soi_error", c.c_ushort),
                ("soi_oobmark", c.c_uint32), ("soi_rcv", SockbufInfo), ("soi_snd", SockbufInfo),
                ("soi_kind", c.c_int), ("rfu_1", c.c_uint32), ("soi_proto", SoiProto))


class SocketFdinfo(c.Structure):
    _fields_ = (("pfi", ProcFileinfo), ("psi", SocketInfo))


class ProcBsdinfo(c.Structure):
    _fields_ = (("pbi_flags", c.c_uint32), ("pbi_status", c.c_uint32),
                ("pbi_xstatus", c.c_uint32), ("pbi_pid", c.c_uint32), ("pbi_ppid", c.c_uint32),
                ("pbi_uid", c.c_uint32), ("pbi_gid", c.c_uint32), ("pbi_ruid", c.c_uint32),
                ("pbi_rgid", c.c_uint32), ("pbi_svuid", c.c_uint32), ("pbi_svgid", c.c_uint32),
                ("rfu_1", c.c_uint32), ("pbi_comm", c.c_char * 16), ("pbi_name", c.c_char * 32),
                ("rest", c.c_uint32 * 6), ("pbi_start", c.c_uint64 * 2))


class ProcFdinfo(c.Structure):
    _fields_ = (("proc_fd", c.c_int32), ("proc_fdtype", c.c_uint32))


def _net_port(port: int) -> int:
    # What the kernel stores in insi_lport: the port's network-order bytes, read natively.
    return int.from_bytes(port.to_bytes(2, "big") + b"\0\0", "little")


def tcp_fdinfo(local: tuple[str, int], remote: tuple[str, int], *, state: int = 4,
               kind: int = 2) -> bytes:
    info = SocketFdinfo()
    v6 = ":" in local[0]
    info.psi.soi_family = 30 if v6 else 2
    info.psi.soi_kind = kind
    info.psi.soi_type, info.psi.soi_protocol = 1, 6
    info.psi.soi_rcv.sbi_hiwat = 0xFFFFFFFF  # noise where a wrong offset would read
    tcp = info.psi.soi_proto.pri_tcp
    tcp.tcpsi_state = state
    ini = tcp.tcpsi_ini
    ini.insi_vflag = 0x2 if v6 else 0x1
    ini.insi_gencnt = 0xDEADBEEFCAFEBABE
    ini.insi_lport, ini.insi_fport = _net_port(local[1]), _net_port(remote[1])
    for union, host in ((ini.insi_laddr, local[0]), (ini.insi_faddr, remote[0])):
        packed = ipaddress.ip_address(host).packed
        if v6:
            c.memmove(c.addressof(union), packed, 16)
        else:
            union.ina_46.pad[:] = [0xAAAAAAAA] * 3
            c.memmove(c.addressof(union.ina_46.addr4), packed, 4)
    return bytes(info)


def fds(*pairs: tuple[int, int]) -> bytes:
    return b"".join(bytes(ProcFdinfo(fd, kind)) for fd, kind in pairs)


def bsdinfo(pid: int, uid: int) -> bytes:
    info = ProcBsdinfo(pbi_pid=pid, pbi_ppid=1, pbi_uid=uid, pbi_gid=20, pbi_ruid=0)
    return bytes(info)


class FakeLibproc:
    """Answers as libproc would for this user: only ``uid``'s processes are listed."""

    def __init__(self, processes: dict[int, dict[int, bytes | None]],
                 uids: dict[int, int]) -> None:
        self.processes = processes  # pid → fd → socket_fdinfo bytes (None: not a socket)
        self.uids = uids
        self.calls: list[tuple[str, int]] = []

    def list_pids(self, uid: int) -> list[int]:
        self.calls.append(("list_pids", uid))
        return [pid for pid in self.processes if self.uids.get(pid) == uid]

    def list_fds(self, pid: int) -> bytes:
        self.calls.append(("list_fds", pid))
        return fds(*((fd, 2 if info is not None else 1)
                     for fd, info in self.processes[pid].items()))

    def socket_info(self, pid: int, fd: int) -> bytes | None:
        self.calls.append(("socket_info", fd))
        return self.processes[pid][fd]

    def bsd_info(self, pid: int) -> bytes | None:
        return bsdinfo(pid, self.uids[pid]) if pid in self.uids else None


SERVER = ("127.0.0.1", 43210)
CLIENT = ("127.0.0.1", 50001)


def test_the_structure_sizes_match_the_header() -> None:
    assert c.sizeof(ProcFileinfo) == 24 and c.sizeof(VinfoStat) == 136
    assert c.sizeof(InSockinfo) == 80 and c.sizeof(ProcBsdinfo) == 136
    assert c.sizeof(SocketFdinfo) == SOCKET_FDINFO_SIZE == 792


def test_a_socket_fdinfo_is_read_at_xnus_offsets() -> None:
    assert parse_tcp_socket(tcp_fdinfo(CLIENT, SERVER)) == (Endpoint.of(CLIENT),
                                                            Endpoint.of(SERVER))
    v6 = parse_tcp_socket(tcp_fdinfo(("::1", 50002), ("::1", 443)))
    assert v6 == (Endpoint.of(("::1", 50002)), Endpoint.of(("::1", 443)))
    assert parse_tcp_socket(tcp_fdinfo(CLIENT, SERVER, kind=3)) is None  # a Unix socket
    assert parse_tcp_socket(tcp_fdinfo(CLIENT, SERVER, state=10)) is None  # TIME_WAIT


def test_the_walk_finds_the_clients_process_and_its_uid() -> None:
    fake = FakeLibproc({
        300: {3: None, 4: tcp_fdinfo(SERVER, CLIENT)},  # the agent's own accepted socket
        400: {7: tcp_fdinfo(("127.0.0.1", 50999), SERVER), 9: tcp_fdinfo(CLIENT, SERVER)},
    }, {300: UID, 400: UID})
    sockets = LibprocSockets(fake, UID)
    found = {(s.pid, s.local.port, s.remote.port) for s in sockets.tcp_sockets()}
    assert found == {(300, 43210, 50001), (400, 50999, 43210), (400, 50001, 43210)}
    assert ("list_pids", UID) in fake.calls and ("socket_info", 3) not in fake.calls
    assert sockets.uid_of(400) == UID
    check = MacPeerCheck(sockets, UID)
    assert check.same_user(SERVER, CLIENT) is True
    assert check.same_user(SERVER, ("127.0.0.1", 50003)) is False  # nobody of ours


def test_another_users_client_is_refused() -> None:
    # Another user's browser is not among this user's processes: not found → refused.
    fake = FakeLibproc({400: {9: tcp_fdinfo(CLIENT, SERVER)}}, {400: 502})
    assert MacPeerCheck(LibprocSockets(fake, UID), UID).same_user(SERVER, CLIENT) is False
    # Listed as ours but its uid says otherwise (setuid since): refused as well.
    class Lying(FakeLibproc):
        def list_pids(self, uid: int) -> list[int]:
            return list(self.processes)
    lying = Lying({400: {9: tcp_fdinfo(CLIENT, SERVER)}}, {400: 502})
    assert MacPeerCheck(LibprocSockets(lying, UID), UID).same_user(SERVER, CLIENT) is False


@pytest.mark.linux
def test_peer_check_uses_libproc_on_a_mac_and_none_without_it(tmp_path: Path) -> None:
    assert real_sockets(UID) is None  # no /usr/lib/libproc.dylib here
    fake = FakeLibproc({400: {9: tcp_fdinfo(CLIENT, SERVER)}}, {400: UID})
    mac = MacPlatform(lambda argv: None, UID, lambda: ["imza-agent"],  # type: ignore[arg-type,return-value]
                      sockets=LibprocSockets(fake, UID))
    check = mac.peer_check()
    assert check is not None and check.same_user(SERVER, CLIENT) is True
    bare = MacPlatform(lambda argv: None, UID, lambda: ["imza-agent"])  # type: ignore[arg-type,return-value]
    assert bare.peer_check() is None


def test_a_real_connection_endpoints_round_trip() -> None:
    # Endpoints as getpeername gives them on a real socket pair match the parsed bytes.
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        with client, accepted:
            data = tcp_fdinfo(client.getsockname(), client.getpeername())
            assert parse_tcp_socket(data) == (Endpoint.of(accepted.getpeername()),
                                              Endpoint.of(accepted.getsockname()))
