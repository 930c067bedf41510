"""How the trusted window names the asking site: the host a person must recognise, in
its Unicode form, and for an internationalised name also the ASCII (punycode) form the
browser reported, so a look-alike written in other letters stands out."""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit

import idna

from agent.ui.page_text import page_line

DEFAULT_PORTS = {"https": 443, "http": 80}
HOST_LIMIT = 300


class SiteName(NamedTuple):
    unicode: str  # what the header shows large
    ascii: str | None  # the punycode form, only when it differs from ``unicode``
    origin: str  # the origin as the browser gave it


def _port(origin: str) -> str:
    parts = urlsplit(origin)
    try:
        port = parts.port
    except ValueError:
        return ""
    if port is not None and DEFAULT_PORTS.get(parts.scheme) != port:
        return f":{port}"
    return ""


def _unicode_host(host: str) -> str | None:
    """The Unicode form of an ASCII host, or None when it is not a valid IDN."""
    try:
        return idna.decode(host)
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


def site_name(origin: str) -> SiteName:
    parts = urlsplit(origin)
    host = (parts.hostname or origin).rstrip(".")
    if not host.isascii():  # a Unicode host given as such: also show what the DNS sees
        try:
            ascii_host: str | None = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            ascii_host = None
        shown = host
    elif any(label.startswith("xn--") for label in host.split(".")):
        ascii_host = host
        shown = _unicode_host(host) or host
    else:
        ascii_host, shown = None, host
    port = _port(origin)
    ascii_text = ascii_host + port if ascii_host and ascii_host != shown else None
    return SiteName(page_line(shown + port, HOST_LIMIT),
                    page_line(ascii_text, HOST_LIMIT) if ascii_text else None,
                    page_line(origin, HOST_LIMIT))
