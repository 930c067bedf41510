"""The site an origin belongs to: its registrable domain ("eTLD+1").

Limits that a page could multiply by opening sub-domains (connections, pending requests,
consent dialogs) are counted per site, not per origin: ``a.evil.example`` and
``b.evil.example`` are one site, while ``a.github.io`` and ``b.github.io`` are two,
because ``github.io`` is a public suffix.

The public suffix list comes from the ``publicsuffixlist`` package, which ships the
list maintained at publicsuffix.org and is released when the list changes; a hand-written
list here would miss the suffixes that matter (``gov.az``, ``com.tr``, ``github.io``).
"""

from __future__ import annotations

import functools
import ipaddress
from urllib.parse import urlsplit

from publicsuffixlist import PublicSuffixList


@functools.cache
def _psl() -> PublicSuffixList:
    # Parsing the list takes a few tens of milliseconds: once per process, on first use.
    return PublicSuffixList()


def _host_of(origin: str) -> str:
    if "://" not in origin:
        return origin.lower().strip("[]")
    try:
        host = urlsplit(origin).hostname
    except ValueError:
        host = None
    return (host or origin).lower()


@functools.lru_cache(maxsize=4096)
def site_of(origin: str) -> str:
    """The registrable domain of an origin (``https://www.e-gov.az`` → ``e-gov.az``),
    or the host itself when it has none: an IP address, ``localhost``, a public suffix
    used as a host, a single label.  Scheme and port are not part of a site."""
    host = _host_of(origin)
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    return _psl().privatesuffix(host) or host
