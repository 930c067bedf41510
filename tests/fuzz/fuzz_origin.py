"""atheris target: the origin parser and the Host check (agent/policy/origin.py) and
``site_of`` (agent/policy/site.py) on any text.

``parse_origin`` and ``origin_from_url`` raise nothing but OriginError; what parses
serializes cleanly and parses back to itself; ``check_host_header`` and ``site_of``
never raise, and a site is a suffix of its host."""

from __future__ import annotations

import contextlib
import sys
import unicodedata

import harness

with harness.instrumented():
    from agent.policy.origin import (
        OriginError,
        check_host_header,
        is_loopback_host,
        origin_from_url,
        parse_origin,
    )
    from agent.policy.site import site_of

SEEDS = ("https://e-gov.az", "https://www.e-gov.az:8443", "http://[::1]:29171",
         "https://xn--80ak6aa92e.com", "https://ÉGOV.az.", "http://127.0.0.1",
         "https://a.b.github.io", "http://localhost:8000", "https://e-gov.az/path?q#f",
         "https://user@e-gov.az", "https://[fe80::1%25eth0]", "127.0.0.1:29170",
         "localhost:29171", "[::1]:29170", "https://0x7f.1", "https://e\u200b-gov.az")


def _clean(serialized: str) -> None:
    assert serialized.isascii(), serialized
    for char in serialized:
        assert not char.isspace() and unicodedata.category(char) != "Cc", serialized
    scheme, _, authority = serialized.partition("://")
    assert scheme in ("http", "https") and authority, serialized
    for char in "/\\?#@":
        assert char not in authority, serialized
    assert not authority.partition("]")[0].partition(":")[0].endswith("."), serialized


def test_one(data: bytes) -> None:
    # The last two bytes are a port of ours; the rest is the text (UTF-8, lone surrogates
    # allowed, else Latin-1 so every byte string is some text).
    ports = {int.from_bytes(data[-2:], "big"), 29170}
    try:
        text = data[:-2].decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        text = data[:-2].decode("latin-1")
    try:
        origin = parse_origin(text)
    except OriginError:
        pass
    else:
        serialized = origin.serialize()
        _clean(serialized)
        assert parse_origin(serialized) == origin, (text, serialized)
        site = site_of(serialized)
        assert origin.host == site or origin.host.endswith("." + site), (serialized, site)
    with contextlib.suppress(OriginError):
        _clean(origin_from_url(text).serialize())
    assert isinstance(check_host_header(text, ports), bool)
    assert isinstance(is_loopback_host(text), bool)
    assert isinstance(site_of(text), str)


def seeds() -> list[bytes]:
    return [s.encode("utf-8") + (29171).to_bytes(2, "big") for s in SEEDS]


if __name__ == "__main__":
    harness.fuzz(test_one, seeds)
    sys.exit(0)
