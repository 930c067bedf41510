"""Origin parsing, canonical form, loopback and Host-header checks."""

from __future__ import annotations

import pytest

from agent.policy.origin import (
    Origin,
    OriginError,
    check_host_header,
    escape,
    is_loopback_host,
    origin_from_url,
    parse_origin,
)

CANONICAL = [
    ("https://a.gov.az", "https://a.gov.az"),
    ("HTTPS://A.GOV.AZ:443", "https://a.gov.az"),
    ("https://a.gov.az:443", "https://a.gov.az"),
    ("http://localhost:80", "http://localhost"),
    ("http://localhost:8000", "http://localhost:8000"),
    ("https://a.gov.az:8443", "https://a.gov.az:8443"),
    ("https://[::1]:8443", "https://[::1]:8443"),
    ("https://[0:0:0:0:0:0:0:1]", "https://[::1]"),
    ("https://127.0.0.1:29170", "https://127.0.0.1:29170"),
    ("https://xn--bcher-kva.de", "https://xn--bcher-kva.de"),
    ("https://bücher.de", "https://xn--bcher-kva.de"),
    ("https://BÜCHER.DE", "https://xn--bcher-kva.de"),
    ("https://nüfus.gov.tr", "https://xn--nfus-0ra.gov.tr"),
    ("https://госуслуги.рф", "https://xn--c1aapkosapc.xn--p1ai"),
    ("https://r3---sn-abc.example", "https://r3---sn-abc.example"),
]


@pytest.mark.parametrize(("text", "expected"), CANONICAL)
def test_canonical_form(text: str, expected: str) -> None:
    assert parse_origin(text).serialize() == expected


REJECTED = [
    (None, "missing"),
    ("", "missing"),
    ("null", "null"),
    ("https://a.gov.az/", "path"),
    ("https://a.gov.az/x", "path"),
    ("https://a.gov.az\\", "path"),
    ("https://a.gov.az?x", "query"),
    ("https://a.gov.az?", "query"),
    ("https://a.gov.az#f", "fragment"),
    ("https://user@a.gov.az", "user info"),
    ("https://user:pw@a.gov.az", "user info"),
    ("https://a.gov.az ", "whitespace"),
    (" https://a.gov.az", "whitespace"),
    ("https://a .gov.az", "whitespace"),
    ("https://a.gov.az\t", "whitespace"),
    ("https://a.gov.az\x00", "control"),
    ("https://a.gov.az\x7f", "control"),
    ("https://a\u200b.gov.az", "invisible"),
    ("https://a\u202e.gov.az", "invisible"),
    # Issue 11 §12: every non-printable is refused as such, not left to the IDNA codec.
    ("https://a\ue000.gov.az", "control"),
    ("https://a\u0378.gov.az", "control"),
    ("https://a\U000f0000.gov.az", "control"),
    ("https://a.gov.az\x9b", "control"),
    ("ftp://a.gov.az", "scheme"),
    ("file://a.gov.az", "scheme"),
    ("chrome-extension://abcdef", "scheme"),
    ("javascript://a.gov.az", "scheme"),
    ("a.gov.az", "scheme://"),
    ("https:/a.gov.az", "scheme://"),
    ("//a.gov.az", "scheme://"),
    ("https://", "empty host"),
    ("https://:443", "empty host"),
    ("https://.", "empty host"),
    ("https://a.gov.az:", "port"),
    ("https://a.gov.az:0", "port"),
    ("https://a.gov.az:65536", "port"),
    ("https://a.gov.az:0443", "port"),
    ("https://a.gov.az:+443", "port"),
    ("https://a.gov.az:44x", "port"),
    ("https://a.gov.az:١٢٣", "port"),
    ("https://a.gov.az:443:443", "colons"),
    ("https://a..gov.az", "empty label"),
    ("https://.a.gov.az", "empty label"),
    ("https://a.gov.az..", "trailing dot"),
    # Issue 11 §12: a browser keeps the dot, so it is another origin (and virtual host).
    ("https://a.gov.az.", "trailing dot"),
    ("https://e-gov.az.", "trailing dot"),
    ("https://E-GOV.AZ.:443", "trailing dot"),
    ("https://bücher.de。", "trailing dot"),
    ("https://-a.gov.az", "label"),
    ("https://a-.gov.az", "label"),
    ("https://a_b.gov.az", "label"),
    ("https://*.gov.az", "label"),
    ("https://" + "a" * 64 + ".az", "label"),
    ("https://" + ".".join(["abcdefghi"] * 26), "too long"),
    ("https://xn--zz.az", "punycode"),
    ("https://127.1", "IPv4"),
    ("https://0x7f.0.0.1", "IPv4"),
    ("https://0177.0.0.1", "IPv4"),
    ("https://256.0.0.1", "IPv4"),
    ("https://a.gov.123", "IPv4"),
    ("https://[::1", "IPv6"),
    ("https://[::g]", "IPv6"),
    ("https://[::1]x", "IPv6"),
    ("https://[fe80::1%25eth0]", "zone"),
    ("https://::1", "colons"),
]


@pytest.mark.parametrize(("text", "reason"), REJECTED)
def test_rejected(text: str | None, reason: str) -> None:
    with pytest.raises(OriginError) as caught:
        parse_origin(text)
    assert reason in caught.value.reason


def test_unicode_and_punycode_forms_are_the_same_origin() -> None:
    assert parse_origin("https://bücher.de") == parse_origin("https://xn--bcher-kva.de")
    assert parse_origin("https://BÜCHER.de:443") == parse_origin("https://xn--bcher-kva.de")


def test_fields_and_properties() -> None:
    origin = parse_origin("https://[::1]:8443")
    assert (origin.scheme, origin.host, origin.port) == ("https", "::1", 8443)
    assert origin.is_https and origin.is_ip_literal and origin.is_loopback
    plain = parse_origin("http://portal.test")
    assert (plain.scheme, plain.host, plain.port) == ("http", "portal.test", 80)
    assert not plain.is_https and not plain.is_ip_literal and not plain.is_loopback
    assert str(plain) == "http://portal.test"


def test_origin_is_frozen_and_hashable() -> None:
    origin = parse_origin("https://a.gov.az")
    with pytest.raises(AttributeError):
        origin.host = "evil.example"  # type: ignore[misc]
    assert {origin, Origin("https", "a.gov.az", 443)} == {origin}


def test_http_and_https_on_same_host_differ() -> None:
    assert parse_origin("http://a.gov.az") != parse_origin("https://a.gov.az")
    assert parse_origin("https://a.gov.az:8443") != parse_origin("https://a.gov.az")


@pytest.mark.parametrize(("url", "expected"), [
    ("https://www.e-gov.az/az/services/123?x=1#top", "https://www.e-gov.az"),
    ("https://portal.test:8443/", "https://portal.test:8443"),
    ("HTTPS://Portal.Test:443/a", "https://portal.test"),
])
def test_origin_from_url(url: str, expected: str) -> None:
    assert origin_from_url(url).serialize() == expected


@pytest.mark.parametrize("url", ["https://user@portal.test/", "about:blank", "data:text/html,x",
                                 "file:///etc/passwd", "https://portal.test /x",
                                 "https://portal.test./x"])
def test_origin_from_url_rejects(url: str) -> None:
    with pytest.raises(OriginError):
        origin_from_url(url)


@pytest.mark.parametrize("url", [
    "https://portal.test/a\x00b", "https://portal.test/a\x1bb", "https://portal.test/a\x7f",
    "https://portal.test/\u00ad", "https://portal.test/\u200e", "https://portal.test/\ue000",
    "https://portal.test/\u0378", "https://portal.test/\U000f0000", "https://portal.test/?q=\x9b",
])
def test_origin_from_url_refuses_non_printables_anywhere(url: str) -> None:
    """Issue 11 §12: a browser percent-encodes a URL; a raw non-printable anywhere in it (path
    and query included) means it was not a browser's, and is refused."""
    with pytest.raises(OriginError) as caught:
        origin_from_url(url)
    assert "control or invisible character" in caught.value.reason


@pytest.mark.parametrize(("value", "logged"), [
    ("https://a.gov.az\x00", "https://a.gov.az\\x00"),
    ("a\r\nrefused x: forged", "a\\x0d\\x0arefused x: forged"),
    ("a\u202ecba", "a\\u202ecba"),
    ("\U000f0000\u2028", "\\U000f0000\\u2028"),
    ("a\\x00", "a\\\\x00"),  # a literal backslash stays distinguishable from an escape
    ("Əliyev İ. — ş", "Əliyev İ. — ş"),  # printable text is kept as written
])
def test_escape_for_logs(value: str, logged: str) -> None:
    assert escape(value) == logged
    assert escape(value).isprintable()


def test_escape_cuts_long_values() -> None:
    assert escape("x" * 500, limit=10) == "x" * 10 + "…"


def test_origin_error_reason_is_always_printable() -> None:
    assert OriginError("bad \x00 \u2028 thing").reason == "bad \\x00 \\u2028 thing"


@pytest.mark.parametrize(("host", "expected"), [
    ("localhost", True), ("LOCALHOST", True), ("127.0.0.1", True), ("127.1.2.3", True),
    ("::1", True), ("[::1]", True), ("128.0.0.1", False), ("10.0.0.1", False),
    ("localhost.evil.com", False), ("127.0.0.1.nip.io", False), ("::2", False),
    ("evil.localhost", False), ("", False),
])
def test_is_loopback_host(host: str, expected: bool) -> None:
    assert is_loopback_host(host) is expected


PORTS = {29170, 29171}


@pytest.mark.parametrize(("value", "expected"), [
    ("localhost:29170", True),
    ("LocalHost:29171", True),
    ("127.0.0.1:29170", True),
    ("127.0.0.2:29170", True),
    ("[::1]:29171", True),
    ("localhost", False),
    ("127.0.0.1", False),
    ("[::1]", False),
    ("localhost:8080", False),
    ("127.0.0.1:443", False),
    ("localhost.evil.com:29170", False),
    ("127.0.0.1.nip.io:29170", False),
    ("evil.example:29170", False),
    ("localhost.:29170", False),
    ("127.1:29170", False),
    ("0x7f000001:29170", False),
    ("[::2]:29170", False),
    ("::1:29170", False),
    ("user@localhost:29170", False),
    ("localhost:29170/x", False),
    ("localhost :29170", False),
    ("localhost:029170", False),
    # Issue 11 §12: a zone identifier, escaped or not, names no browser's loopback.
    ("[::1%lo]:29170", False),
    ("[::1%251]:29170", False),
    ("[::1%25lo]:29170", False),
    ("[fe80::1%25eth0]:29170", False),
    ("127.0.0.1%lo:29170", False),
    ("", False),
    (None, False),
])
def test_check_host_header(value: str | None, expected: bool) -> None:
    assert check_host_header(value, PORTS) is expected
