"""Property-based fuzz of the origin parser (agent/policy/origin.py) and of ``site_of``
(agent/policy/site.py): every header value a page or another program can send.

* a canonical origin parses to itself, and parsing is idempotent;
* whatever parses serializes without control characters, whitespace, user info, path,
  query, fragment or a trailing dot;
* ``parse_origin`` and ``origin_from_url`` raise nothing but OriginError;
* ``check_host_header`` never raises, and says yes only to a literal loopback host with one
  of our ports;
* ``site_of`` never raises and returns a suffix of the host, on a label boundary.
"""

from __future__ import annotations

import ipaddress
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from agent.policy.origin import (
    DEFAULT_PORTS,
    Origin,
    OriginError,
    check_host_header,
    is_loopback_host,
    origin_from_url,
    parse_origin,
)
from agent.policy.site import site_of

# --- canonical origins ----------------------------------------------------------------------

_LDH = "abcdefghijklmnopqrstuvwxyz0123456789-"
labels = st.text(alphabet=_LDH, min_size=1, max_size=20).filter(
    lambda s: s[0] != "-" and s[-1] != "-" and not s.startswith(("xn--", "xn"))
    and s[2:4] != "--")
# The last label must not look numeric: browsers would read the host as IPv4.
top_labels = labels.filter(lambda s: not s.isdigit() and not s.startswith("0x"))
dns_hosts = st.builds(lambda ls, top: ".".join([*ls, top]),
                      st.lists(labels, max_size=4), top_labels).filter(lambda h: len(h) <= 253)
ipv4_hosts = st.ip_addresses(v=4).map(str)
ipv6_hosts = st.ip_addresses(v=6).map(lambda a: a.compressed)
hosts = st.one_of(dns_hosts, ipv4_hosts, ipv6_hosts, st.just("localhost"))


@st.composite
def canonical_origins(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["https", "http"]))
    host = draw(hosts)
    shown = f"[{host}]" if ":" in host else host
    port = draw(st.none() | st.integers(1, 65535))
    if port is None or port == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{shown}"
    return f"{scheme}://{shown}:{port}"


@given(canonical_origins())
def test_canonical_origins_parse_to_themselves(text: str) -> None:
    origin = parse_origin(text)
    assert origin.serialize() == text
    assert parse_origin(origin.serialize()) == origin


# --- hostile text ---------------------------------------------------------------------------

# Pieces that matter to URL and host parsers: separators, IPv6 brackets, percent signs,
# dots that Unicode maps to ".", invisible and control characters, look-alikes.
_PIECES = ["https://", "http://", "HTTPS://", "://", "/", "\\", "@", ":", "[", "]", "%",
           "?", "#", ".", "。", "．", "｡", "..", "xn--", "xn--80ak6aa92e", "e-gov.az",
           "ЕGOV", "ß", "İ", "\u200b", "\u200e", "\u202e", "\u00ad", "\u0000", "\t", " ",
           "\n", "\u3000", "\ufeff", "127.0.0.1", "0x7f.1", "::1", "fe80::1%eth0", "443",
           "0", "65536", "localhost", "a" * 64, "%2e", "\ud800", "ａ"]
# Any code point, lone surrogates included (st.text leaves them out by default).
any_chars = st.characters(exclude_categories=()) | st.integers(0xD800, 0xDFFF).map(chr)
origin_texts = st.one_of(
    st.text(alphabet=any_chars, max_size=60),
    st.lists(st.sampled_from(_PIECES) | st.text(max_size=3), max_size=10).map("".join),
    st.builds(lambda o, tail: o + tail, canonical_origins(),
              st.lists(st.sampled_from(_PIECES), max_size=3).map("".join)),
)


def _clean(serialized: str) -> None:
    for char in serialized:
        assert not char.isspace(), serialized
        assert unicodedata.category(char) not in ("Cc", "Cf", "Cs", "Zl", "Zp"), serialized
    assert serialized.isascii(), serialized
    scheme, _, authority = serialized.partition("://")
    assert scheme in DEFAULT_PORTS
    for char in "/\\?#@":
        assert char not in authority, serialized
    host = authority[1:authority.index("]")] if authority.startswith("[") \
        else authority.partition(":")[0]
    assert host and not host.endswith("."), serialized
    assert host == host.lower()


@given(origin_texts)
def test_parse_origin_is_strict_and_idempotent(text: str) -> None:
    try:
        origin = parse_origin(text)
    except OriginError as exc:
        assert exc.reason and isinstance(exc.reason, str)
        return
    assert isinstance(origin, Origin)
    serialized = origin.serialize()
    _clean(serialized)
    again = parse_origin(serialized)
    assert again == origin and again.serialize() == serialized
    assert 1 <= origin.port <= 65535


@given(origin_texts)
def test_origin_from_url_raises_only_origin_error(text: str) -> None:
    for url in (text, text + "/path?q#f"):
        try:
            origin = origin_from_url(url)
        except OriginError:
            continue
        _clean(origin.serialize())


@given(origin_texts, st.sets(st.integers(0, 70000), max_size=3))
def test_check_host_header_never_raises(value: str, ports: set[int]) -> None:
    assert isinstance(is_loopback_host(value), bool)
    if not check_host_header(value, ports):
        return
    # A yes names a loopback host literally, with one of our ports.
    host, _, port = value.rpartition(":")
    assert int(port) in ports and port == str(int(port))
    if host != "localhost":
        address = ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
        assert address.is_loopback
        assert str(address) == host.strip("[]")


@given(st.sampled_from(["localhost", "127.0.0.1", "[::1]", "127.8.9.10"]),
       st.integers(1, 65535))
def test_check_host_header_accepts_loopback_literals(host: str, port: int) -> None:
    assert check_host_header(f"{host}:{port}", {port})
    assert not check_host_header(f"{host}:{port}", {port % 65535 + 1})


@given(origin_texts)
def test_site_of_never_raises(text: str) -> None:
    assert isinstance(site_of(text), str)


@given(canonical_origins())
def test_site_of_is_a_suffix_of_the_host(text: str) -> None:
    origin = parse_origin(text)
    site = site_of(origin.serialize())
    assert site, text
    assert origin.host == site or origin.host.endswith("." + site), (text, site)
    # The scheme is not part of a site.
    assert site_of(f"http://{origin.serialize().partition('://')[2]}") == site
