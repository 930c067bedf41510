"""The site an origin belongs to: its registrable domain ("eTLD+1").

Limits that a page could multiply by opening sub-domains (connections, pending requests,
consent dialogs) are counted per site, not per origin: ``a.evil.example`` and
``b.evil.example`` are one site, while ``a.github.io`` and ``b.github.io`` are two,
because ``github.io`` is a public suffix.

The public suffix list comes from the ``publicsuffixlist`` package, which ships the
list maintained at publicsuffix.org and is released when the list changes; a hand-written
list here would miss the suffixes that matter (``gov.az``, ``com.tr``, ``github.io``).

The list's rules are kept in their Unicode form only (``accept_encoded_idn=False``):
IDNA-encoding its 10,000 rules as well doubled the parse, which the first connection of
every start waits for (issue 17, bar 6). A browser's origin names an IDN host in
punycode (``xn--…``), so such labels are decoded before the lookup (``_lookup_label``)
and the site is returned in the form the origin gave. tests/test_site_unicode_lookup.py
checks that this gives the same site as the encoded list for every rule of the list.
"""

from __future__ import annotations

import functools
import ipaddress
from urllib.parse import urlsplit

from publicsuffixlist import PublicSuffixList

_ACE_PREFIX = "xn--"


@functools.cache
def _psl() -> PublicSuffixList:
    # Parsing the list takes a few tens of milliseconds: once per process, on first use.
    return PublicSuffixList(accept_encoded_idn=False)


def _host_of(origin: str) -> str:
    if "://" not in origin:
        return origin.lower().strip("[]")
    try:
        host = urlsplit(origin).hostname
    except ValueError:
        host = None
    return (host or origin).lower()


def _lookup_label(label: str) -> str:
    """A punycode label in the Unicode form the list's rules have; any other label as it
    is. Only a label that is exactly the encoding of its Unicode form is decoded (the
    encoded list matched only those): not malformed punycode, not one that decodes to
    ASCII or to letters the lookup would lower-case."""
    if not label.startswith(_ACE_PREFIX):
        return label
    try:
        decoded = label[len(_ACE_PREFIX):].encode("ascii").decode("punycode")
        again = _ACE_PREFIX + decoded.encode("punycode").decode("ascii")
    except UnicodeError:
        return label
    if decoded.isascii() or decoded != decoded.lower() or again != label:
        return label
    return decoded


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
    labels = host.split(".")
    site = _psl().privatesuffix(".".join(_lookup_label(label) for label in labels))
    if site is None:
        return host
    if labels[-1] == "":  # the list ignores one trailing dot, and so does the site
        labels.pop()
    # The same labels as the lookup's answer, in the origin's own (ASCII) form.
    return ".".join(labels[-(site.count(".") + 1):])
