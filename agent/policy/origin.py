"""Web origins as the agent sees them: strict parsing, one canonical form, loopback checks.

A browser always sends a canonical ``Origin`` header (lower-case, punycode, no default
port), so anything looser than ``scheme://host[:port]`` is refused rather than repaired:
leniency here is where look-alike and smuggling tricks live.  Policy files written by
people may use Unicode or upper case; those are normalised to the same canonical form,
so a rule and a header compare as plain strings.

Two spellings are refused rather than folded, because a browser treats them as different
origins: a trailing dot (``https://e-gov.az.`` can reach another virtual host than
``https://e-gov.az``) and an IPv6 zone identifier.  Nothing that is not printable passes
(control, format, private-use and unassigned characters), and ``escape`` is how a value
that was refused may appear in a log line.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

# IDNA 2008 + UTS #46 mapping: what browsers use to turn Unicode hosts into punycode.  A
# required dependency: the stdlib's IDNA 2003 codec maps some hosts differently ("ß"), so
# a rule could silently miss the header it was written for.
import idna

DEFAULT_PORTS = {"https": 443, "http": 80}
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_PORT_RE = re.compile(r"[1-9][0-9]{0,4}")
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?")
_MAX_HOST_LEN = 253


class OriginError(ValueError):
    """Not an acceptable origin; ``reason`` is short and safe to log or show (escaped
    here, whatever part of the input a library's message quoted)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason if reason.isprintable() else escape(reason)
        super().__init__(self.reason)


def escape(value: str, limit: int = 200) -> str:
    """``value`` for one log line: every character that is not printable (controls, line
    separators, bidi and other format characters, private-use, unassigned) and the
    backslash itself become Python-style escapes (``\\x00``, ``\\u202e``), so a refused
    header is recorded exactly and cannot forge or reorder log text; cut to ``limit``."""
    out = []
    for char in value[:limit]:
        if char == "\\":
            out.append("\\\\")
        elif char.isprintable():
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else
                       f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out) + ("…" if len(value) > limit else "")


@dataclass(frozen=True, order=True)
class Origin:
    """A canonical web origin.  ``host`` is lower-case ASCII (punycode for IDN) and an
    IPv6 literal is kept without brackets; ``port`` is always explicit (443 for https)."""

    scheme: str
    host: str
    port: int

    def serialize(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == DEFAULT_PORTS[self.scheme]:
            return f"{self.scheme}://{host}"
        return f"{self.scheme}://{host}:{self.port}"

    def __str__(self) -> str:
        return self.serialize()

    @property
    def is_https(self) -> bool:
        return self.scheme == "https"

    @property
    def is_ip_literal(self) -> bool:
        return _ip_or_none(self.host) is not None

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)


def parse_origin(text: object) -> Origin:
    """Parse an ``Origin`` header value or a policy entry; raise ``OriginError``."""
    if text is None or text == "":
        raise OriginError("missing origin")
    if not isinstance(text, str):
        raise OriginError("origin is not text")
    if text == "null":
        raise OriginError("opaque (null) origin")
    _reject_invisible(text)
    scheme, sep, authority = text.partition("://")
    if not sep or not _SCHEME_RE.fullmatch(scheme):
        raise OriginError("not scheme://host")
    scheme = scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise OriginError(f"scheme {scheme!r} is not http or https")
    host, port = split_authority(authority)
    return Origin(scheme, normalize_host(host), port if port is not None
                  else DEFAULT_PORTS[scheme])


def origin_from_url(url: str) -> Origin:
    """The origin of a full page URL (the extension transport's ``sender.url``)."""
    _reject_invisible(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise OriginError("malformed URL") from exc
    if not parts.scheme or not parts.netloc:
        raise OriginError("URL has no origin")
    return parse_origin(f"{parts.scheme}://{parts.netloc}")


def split_authority(authority: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` (``[v6][:port]``) of an origin; the host is not yet checked."""
    for char, what in (("/", "a path"), ("\\", "a path"), ("?", "a query"),
                       ("#", "a fragment"), ("@", "user info")):
        if char in authority:
            raise OriginError(f"origin has {what}")
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise OriginError("unclosed IPv6 literal")
        host, rest = authority[: end + 1], authority[end + 1:]
        if rest and not rest.startswith(":"):
            raise OriginError("junk after IPv6 literal")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_raw = authority.partition(":")
        if ":" in port_text_raw:
            raise OriginError("too many colons")
        port_text = port_text_raw if colon else None
    if port_text is None:
        return host, None
    if not _PORT_RE.fullmatch(port_text) or int(port_text) > 65535:
        raise OriginError("malformed port")
    return host, int(port_text)


def normalize_host(host: str) -> str:
    """Canonical host: IP literal, or lower-case punycode DNS name; a trailing dot is
    refused, not removed."""
    if host.startswith("["):
        if not host.endswith("]"):
            raise OriginError("malformed IPv6 literal")
        try:
            v6 = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise OriginError("malformed IPv6 literal") from None
        if v6.scope_id:
            raise OriginError("IPv6 zone identifiers are not allowed")
        return v6.compressed
    if not host.rstrip("."):
        raise OriginError("empty host")
    if not host.isascii():
        host = _to_punycode(host)
    if host.endswith("."):  # checked after UTS #46, which maps "。" to "." too
        raise OriginError("trailing dot in host: a different origin from the dotless one")
    host = host.lower()
    if len(host) > _MAX_HOST_LEN:
        raise OriginError("host name too long")
    labels = host.split(".")
    if any(label == "" for label in labels):
        raise OriginError("empty label in host")
    if labels[-1].isdigit() or _looks_numeric(labels[-1]):
        # Browsers parse a numeric last label as IPv4 (including 0x7f.1 forms); accept
        # only the canonical dotted quad, which is what they would have sent.
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise OriginError("malformed IPv4 address") from None
    for label in labels:
        if not _LABEL_RE.fullmatch(label):
            raise OriginError(f"invalid host label {label!r}")
        if label.startswith("xn--"):
            _check_punycode_label(label)
    return host


def is_loopback_host(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ``::1`` (with or without brackets)."""
    host = host.lower()
    if host == "localhost":
        return True
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    ip = _ip_or_none(host)
    return ip is not None and ip.is_loopback


def check_host_header(value: str | None, allowed_ports: set[int] | frozenset[int]) -> bool:
    """True when ``Host`` names a loopback host literally with one of our ports.

    This is the DNS-rebinding defence: a page that got ``evil.example`` to resolve to
    127.0.0.1 still sends ``Host: evil.example:PORT``.  Only the literal names a browser
    uses for loopback pass; ``localhost.evil.com`` and ``127.0.0.1.nip.io`` do not, and the
    port is mandatory because our ports are never the scheme default.  A zone identifier
    (``[fe80::1%25eth0]``, ``[::1%lo]``) is refused: no browser sends one for loopback.
    """
    if not value or not isinstance(value, str) or "%" in value:
        return False
    try:
        _reject_invisible(value)
        host, port = split_authority(value)
    except OriginError:
        return False
    if port is None or port not in allowed_ports:
        return False
    host = host.lower()
    if host == "localhost":
        return True
    if host.startswith("["):
        bare = host[1:-1] if host.endswith("]") else ""
        ip = _ip_or_none(bare)
        return ip is not None and ip.version == 6 and ip.is_loopback
    ip = _ip_or_none(host)
    # Only the canonical dotted quad: "127.1" or "0177.0.0.1" are not what browsers send.
    return ip is not None and ip.version == 4 and ip.is_loopback and str(ip) == host


def _reject_invisible(text: str) -> None:
    """Whitespace, and anything ``str.isprintable`` refuses: Unicode's "Other" (Cc, Cf,
    Cs, Co, Cn) and separators (Zl, Zp).  A browser sends an origin in ASCII and a URL
    percent-encoded, so none of these is ever legitimate."""
    for char in text:
        if char.isspace():
            raise OriginError("whitespace in origin")
        if not char.isprintable():
            raise OriginError("control or invisible character in origin")


def _looks_numeric(label: str) -> bool:
    return bool(re.fullmatch(r"0x[0-9a-f]*", label, re.IGNORECASE))


def _ip_or_none(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _to_punycode(host: str) -> str:
    try:
        return idna.encode(host, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise OriginError(f"invalid international host name: {exc}") from None


def _check_punycode_label(label: str) -> None:
    """An ``xn--`` label must decode to a valid IDN, else it is a smuggling attempt."""
    try:
        idna.decode(label)
    except (UnicodeError, ValueError):
        raise OriginError(f"invalid punycode label {label!r}") from None
