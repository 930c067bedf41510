"""``site_of`` with the public suffix list kept in Unicode form only (agent/policy/site.py,
issue 17 bar 6) gives the site the IDNA-encoded list gave, for hosts built from every
rule of the list: ASCII and IDN rules, in punycode and in Unicode, wildcard and exception
rules, the private section (``github.io``), and malformed labels.

The reference is the previous ``site_of``: the list parsed with its rules IDNA-encoded
as well (the library's default), the host looked up as it came.
"""

from __future__ import annotations

import functools
import ipaddress
from pathlib import Path

import publicsuffixlist
from hypothesis import given, settings
from hypothesis import strategies as st
from publicsuffixlist import PublicSuffixList

from agent.policy.site import _host_of, site_of


@functools.cache
def _encoded_list() -> PublicSuffixList:
    return PublicSuffixList(accept_encoded_idn=True)


def reference_site_of(origin: str) -> str:
    """The previous implementation, line for line."""
    host = _host_of(origin)
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    return _encoded_list().privatesuffix(host) or host


def _rules() -> list[str]:
    text = Path(publicsuffixlist.PSLFILE).read_text(encoding="utf-8")
    found = []
    for line in text.splitlines():
        rule = line.split(" ")[0].strip().lower()
        if rule and not rule.startswith("//"):
            found.append(rule)
    return found


def _ace(host: str) -> str | None:
    """The host as a browser's origin names it (IDNA, punycode labels), if it can."""
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def _hosts_for(rule: str) -> list[str]:
    base = rule.lstrip("!").replace("*", "wild")
    hosts = [base, f"www.{base}", f"a.b.{base}", f"{base}.", f"x.{base}.", f"WWW.{base}"]
    if rule.startswith("!"):  # the exception itself and below it
        hosts += [f"shop.{base}"]
    if "*" in rule:  # the wildcard's own parent, and a name under the wildcard
        parent = rule.split(".", 1)[1]
        hosts += [parent, f"q.{parent}", f"z.y.{parent}"]
    encoded = [ace for host in hosts if not host.isascii() and (ace := _ace(host))]
    return hosts + encoded + [ace.upper() for ace in encoded]


def test_the_list_has_the_rule_kinds_this_test_relies_on() -> None:
    rules = _rules()
    assert len(rules) > 5000
    assert any(r.startswith("!") for r in rules)
    assert any(r.startswith("*.") for r in rules)
    assert sum(not r.isascii() for r in rules) > 100
    assert "github.io" in rules  # the private section is part of the list in use


def test_same_site_for_hosts_from_every_rule_of_the_list() -> None:
    hosts = [host for rule in _rules() for host in _hosts_for(rule)]
    assert len(hosts) > 50_000
    differing = [(h, site_of(f"https://{h}"), reference_site_of(f"https://{h}"))
                 for h in hosts if site_of(f"https://{h}") != reference_site_of(f"https://{h}")]
    assert differing == []
    # Punycode hosts were looked up through their Unicode form, not passed through.
    idn = [h for h in hosts if h.startswith("xn--") or ".xn--" in h]
    assert len(idn) > 500
    assert any(site_of(f"https://{h}") != h for h in idn)


KNOWN = {
    "https://www.e-gov.az": "e-gov.az",
    "https://a.github.io": "a.github.io",
    "https://x.y.gov.az": "y.gov.az",
    "https://www.xn--80ak6aa92e.com": "xn--80ak6aa92e.com",  # IDN under an ASCII suffix
    "https://shop.xn--p1ai": "shop.xn--p1ai",  # .рф in punycode, a public suffix
    "https://a.b.xn--p1ai": "b.xn--p1ai",
    "https://a.b.рф": "b.рф",
    "https://xn--p1ai": "xn--p1ai",  # a public suffix used as a host: the host
    "https://www.city.kobe.jp": "city.kobe.jp",  # exception rule
    "https://a.b.kobe.jp": "a.b.kobe.jp",  # wildcard rule
    "http://127.0.0.1:8080": "127.0.0.1",
    "http://[::1]:9": "::1",
    "http://localhost": "localhost",
}


def test_known_sites() -> None:
    for origin, site in KNOWN.items():
        assert site_of(origin) == site, origin
        assert reference_site_of(origin) == site, origin


# Malformed punycode and labels that only look encoded: the encoded list matched none of
# them, so the Unicode lookup must not either.
ODD = ["xn--", "xn--abc-", "xn---", "xn--zz", "xn--a.xn--p1ai", "b.xn--a-ecp.ru",
       "xn--ls8h.la", "xn--p1ai.", "a..xn--p1ai", ".xn--p1ai", "xn--KN", "xn--0ca.com",
       "xn--ca-3fa.xn--p1ai", "xn--n3h.xn--n3h", "a.xn--9-8cd.com", "xn--1ca.xn--1ca"]


def test_same_site_for_odd_labels() -> None:
    # "aÉroport": the encoding of an upper-case form of the rule aéroport.ci; the encoded
    # list never matched it, so it is no public suffix here either.
    upper = "xn--" + "aÉroport".encode("punycode").decode("ascii") + ".ci"
    assert site_of(f"www.shop.{upper}") == reference_site_of(f"www.shop.{upper}") == upper
    for label in ODD:
        for host in (label, f"www.{label}", f"q.{label}.xn--p1ai", f"q.{label}.com"):
            assert site_of(host) == reference_site_of(host), host


_ALPHABET = "abcxn-.0рфäöüßçğışə公司ΑΣ*!"


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=_ALPHABET, max_size=30))
def test_same_site_for_any_text(text: str) -> None:
    assert site_of(text) == reference_site_of(text)
    ace = _ace(text)
    if ace is not None:
        assert site_of(ace) == reference_site_of(ace)
