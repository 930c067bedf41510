"""Which OS user owns the other end of a loopback TCP connection.

Loopback is shared by every user of the machine: without this check another local
account (a guest, a compromised service running as ``nobody``) could connect to the agent,
send ``Origin: https://e-gov.az`` and act as that site on the victim's desktop.  The
browser of the user the agent runs for is that user's process, so a connection whose
client socket belongs to anybody else is refused before the WebSocket handshake.

The only question this module answers is "whose socket is the client's end".  How each OS
tells is behind ``PeerLookup``:

- Linux: ``/proc/net/tcp`` and ``/proc/net/tcp6`` list every socket of the network
  namespace with its owner's uid.  The client's row is the one whose local address is
  the peer address we see and whose remote address is our own listening side.
- Windows: ``GetExtendedTcpTable`` → owning PID → its token's user SID and session
  (``agent/platform/windows/peer.py``); macOS: a libproc walk behind a seam
  (``agent/platform/macos/peer.py``). ``agent.platform.current().peer_check()`` picks one.

Callers decide what "unknown" means: ``can_check_peers()`` says whether this platform
has a lookup at all, and ``same_user`` is False whenever the answer is unknown, so a
caller that refuses on ``can_check_peers() and not same_user(...)`` fails closed on Linux
and keeps working where no lookup exists yet.
"""

from __future__ import annotations

import ipaddress
import logging
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Endpoint:
    """One end of a TCP connection; an IPv4-mapped IPv6 address is kept as IPv4, so a
    socket listed in ``/proc/net/tcp6`` as ``::ffff:127.0.0.1`` matches 127.0.0.1."""

    address: IPAddress
    port: int

    @classmethod
    def of(cls, sockaddr: Sequence[Any]) -> Endpoint:
        """From what ``getsockname``/``getpeername`` return: ``(host, port)`` for IPv4,
        ``(host, port, flowinfo, scope_id)`` for IPv6."""
        return cls(_unmapped(ipaddress.ip_address(str(sockaddr[0]))), int(sockaddr[1]))


class PeerLookup(Protocol):
    """One platform's way to find the owner of a connected TCP socket."""

    def owner_uid(self, client: Endpoint, server: Endpoint) -> int | None:
        """The uid that owns the socket bound at ``client`` and connected to ``server``;
        None when there is no such socket or the answer is ambiguous."""


# --- Linux ----------------------------------------------------------------------------------

# TCP states in /proc/net/tcp (include/net/tcp_states.h).  A TIME_WAIT row is a kernel
# leftover with no owner (its uid column reads 0, i.e. root) and never the live client.
_TIME_WAIT = 0x06
_NATIVE_WORD = struct.Struct("=I")  # the kernel prints each 32-bit word in host order


@dataclass(frozen=True)
class ProcNetTcp:
    """The Linux lookup: read ``tcp`` and ``tcp6`` under ``root`` (``/proc/net``)."""

    root: Path = Path("/proc/net")

    def owner_uid(self, client: Endpoint, server: Endpoint) -> int | None:
        uids: set[int] = set()
        for name in ("tcp", "tcp6"):
            try:
                text = (self.root / name).read_text(encoding="ascii", errors="replace")
            except FileNotFoundError:  # no IPv6 in this kernel
                continue
            except OSError as exc:
                log.warning("cannot read %s: %s", self.root / name, exc.strerror)
                return None
            uids.update(_matching_uids(text.splitlines()[1:], client, server))
        if len(uids) == 1:
            return uids.pop()
        if len(uids) > 1:  # two owners for one 4-tuple: trust neither
            log.warning("two sockets claim the loopback connection from port %d", client.port)
        return None

    def available(self) -> bool:
        return (self.root / "tcp").is_file()


def _matching_uids(rows: Iterable[str], client: Endpoint, server: Endpoint
                   ) -> Iterable[int]:
    for row in rows:
        fields = row.split()
        # sl local rem st queues timer retrnsmt uid ...
        if len(fields) < 8:
            continue
        try:
            local = _parse_endpoint(fields[1])
            remote = _parse_endpoint(fields[2])
            state = int(fields[3], 16)
            uid = int(fields[7])
        except ValueError:
            continue
        if state != _TIME_WAIT and local == client and remote == server:
            yield uid


def _parse_endpoint(text: str) -> Endpoint:
    """``0100007F:1F90`` (IPv4) or 32 hex digits ``:PORT`` (IPv6), as /proc prints them."""
    address_hex, _, port_hex = text.partition(":")
    if len(address_hex) not in (8, 32) or not port_hex:
        raise ValueError("not a /proc/net/tcp address")
    raw = b"".join(_NATIVE_WORD.pack(int(address_hex[i:i + 8], 16))
                   for i in range(0, len(address_hex), 8))
    address: IPAddress = (ipaddress.IPv4Address(raw) if len(raw) == 4
                          else ipaddress.IPv6Address(raw))
    return Endpoint(_unmapped(address), int(port_hex, 16))


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# --- the platform's lookup ------------------------------------------------------------------

def platform_lookup() -> PeerLookup | None:
    """The /proc lookup where /proc/net/tcp exists (Linux), else None."""
    lookup = ProcNetTcp()
    return lookup if lookup.available() else None


def can_check_peers() -> bool:
    """True when this platform can tell who owns a loopback client socket."""
    from agent.platform import current

    return current().peer_check() is not None


def peer_uid(local: Sequence[Any], remote: Sequence[Any]) -> int | None:
    """The uid owning the client end of an accepted loopback connection (Linux).

    ``local`` is our side (``getsockname()`` of the accepted socket), ``remote`` the
    client's (``getpeername()``).  None when the platform cannot tell or no live socket
    matches (the client already closed, or the addresses are not local)."""
    lookup = platform_lookup()
    if lookup is None:
        return None
    try:
        client, server = Endpoint.of(remote), Endpoint.of(local)
    except (ValueError, IndexError, TypeError):
        return None
    return lookup.owner_uid(client, server)


def same_user(local: Sequence[Any], remote: Sequence[Any]) -> bool:
    """True only when the client's socket is known to belong to the user running us (on
    Windows: and to this logon session); unknown is False (see the module docstring)."""
    from agent.platform import current

    check = current().peer_check()
    return check is not None and check.same_user(local, remote)
