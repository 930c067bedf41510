"""A page's ``tsaUrl`` cannot make the agent reach the user's network (issue 11, §5).

Real agents with SoftHSM keys and a hostile service on loopback (tests/pki_services.py
``HostileServer``, whose ``hits`` count the requests that reached it):

* by default a page's tsaUrl is UNSUPPORTED and nothing is contacted;
* with page TSAs allowed, loopback, private, link-local, ULA, CGNAT … addresses and names
  resolving to them (``localhost``) are refused before any connection;
* a redirect from a page-chosen TSA is not followed;
* failed attempts with a page-chosen TSA are limited per handle (then RATE_LIMITED
  without contacting anything);
* a TSA answering a gzip bomb, or naming bomb OCSP/CRL addresses in its certificate,
  costs NETWORK and leaves the daemon's memory bounded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pki_services
import pytest
from daemon import Daemon, RpcError, b64
from pki_services import (
    ORIGIN,
    FormatsBed,
    HostileServer,
    daemon_in_temp_home,
    pin_dialogs,
    select_handle,
    start_formats_daemon,
    start_hostile,
    start_proxy,
    start_services,
)
from testbed.pki import TestPKI

from agent.app.documents import TsaChoice, choose_tsa, page_tsa_guard
from agent.config import ConfigError, FormatsConfig, load_config
from agent.errors import Unsupported
from agent.formats.network import (
    AddressGuard,
    FetchFailed,
    NetworkSettings,
    fetch,
    forbidden_address,
)

formats_bed = pki_services.formats_bed
DATA = b"SSRF"
MIB = 1 << 20


# --- the address rule ----------------------------------------------------------------------

REFUSED = ["127.0.0.1", "127.8.9.10", "::1", "0.0.0.0", "::", "10.1.2.3", "172.16.0.1",
           "192.168.1.1", "169.254.169.254", "fe80::1", "fe80::1%eth0", "fc00::1",
           "fd12:3456::1", "100.64.0.1", "100.127.255.254", "224.0.0.1", "239.1.1.1",
           "ff02::1", "240.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1",
           "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
           "2002:7f00:1::", "2002:a00:1::", "64:ff9b::7f00:1", "2001:0:4136:e378::1",
           "fec0::1", "not-an-address"]
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2001:4860:4860::8888",
           "2a00:1450:4001::200e", "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_forbidden(address: str) -> None:
    assert forbidden_address(address)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert not forbidden_address(address)


# --- which TSA: the page's only when allowed --------------------------------------------------

def test_page_tsa_is_off_by_default() -> None:
    with pytest.raises(Unsupported):
        choose_tsa(FormatsConfig(), ORIGIN, "https://tsa.example/tsr")


def test_allow_list_of_page_tsas() -> None:
    config = FormatsConfig(allow_page_tsa=True, page_tsa_allowed=[
        "https://tsa.example/tsr", "tsa.other.example", "*.gov.example"])
    # an exact URL is the administrator's choice: no guard, as tsa_url
    assert choose_tsa(config, ORIGIN, "https://TSA.example:443/tsr") == TsaChoice(
        "https://TSA.example:443/tsr", from_page=False)
    # a host or a host pattern: the page chose the URL, the guard applies
    assert choose_tsa(config, ORIGIN, "http://tsa.other.example/x").from_page
    assert choose_tsa(config, ORIGIN, "https://a.b.gov.example/tsr").from_page
    for refused in ("https://tsa.example/other", "https://gov.example/tsr",
                    "https://evilgov.example/tsr", "http://tsa.other.example.evil/x",
                    "https://tsa.example.evil/tsr"):
        with pytest.raises(Unsupported):
            choose_tsa(config, ORIGIN, refused)


def test_allow_list_needs_page_tsa_allowed(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[formats]\npage_tsa_allowed = ["tsa.example"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="allow_page_tsa"):
        load_config(path)
    path.write_text('[formats]\nallow_page_tsa = true\npage_tsa_allowed = ["a b"]\n',
                    encoding="utf-8")
    with pytest.raises(ConfigError, match="page_tsa_allowed"):
        load_config(path)


def test_the_administrators_addresses_stay_trusted() -> None:
    config = FormatsConfig(allow_page_tsa=True, tsa_url="http://10.0.0.5/tsr",
                           ocsp_by_issuer={"ab" * 32: "http://ocsp.corp.example/"})
    guard = page_tsa_guard(config, [])
    assert guard.trusts("http://10.0.0.5:80/tsr")
    assert guard.trusts("HTTP://OCSP.corp.example/")
    assert not guard.trusts("http://10.0.0.5/other")
    assert not guard.private_allowed


# --- the guard on a real session, against a real server ---------------------------------------

@pytest.fixture(scope="module")
def hostile(pki: TestPKI) -> Iterator[HostileServer]:
    services = start_services(pki)  # the TSA's CA: the test PKI the agents' anchors name
    running = start_hostile(services)
    try:
        yield running
    finally:
        running.close()
        services.close()


GUARDED = NetworkSettings(timeout=5.0, guard=AddressGuard())


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "10.0.0.1",
                                  "169.254.169.254", "[fc00::1]", "100.64.0.1",
                                  "[::ffff:127.0.0.1]", "0.0.0.0"])
async def test_guard_refuses_before_connecting(hostile: HostileServer, host: str) -> None:
    """Refused by the guard (its own reason, not a connection error), and for the
    addresses where the hostile server listens it saw nothing."""
    before = hostile.hits["/tsa"]
    async with GUARDED.session() as session:
        with pytest.raises(FetchFailed, match="not allowed") as refused:
            await fetch(session, GUARDED, "tsa", "POST", f"http://{host}:{hostile.port}/tsa",
                        data=b"")
    assert refused.value.kind == "tsa"
    assert hostile.hits["/tsa"] == before


async def test_a_trusted_url_may_be_private(hostile: HostileServer) -> None:
    settings = NetworkSettings(timeout=5.0, guard=AddressGuard.for_page_tsa(
        [hostile.url("/tsa-garbage")], private_allowed=False))
    before = hostile.hits["/tsa-garbage"]
    async with settings.session() as session:
        reply = await fetch(session, settings, "tsa", "POST", hostile.url("/tsa-garbage"))
        assert reply.body == b"not a tsr"
        # the same host at a path the administrator did not name is a page's address
        with pytest.raises(FetchFailed, match="not allowed"):
            await fetch(session, settings, "tsa", "POST", hostile.url("/tsa"))
    assert hostile.hits["/tsa-garbage"] == before + 1


@pytest.mark.parametrize("status", ["302", "307"])
async def test_redirects_from_a_page_address_are_not_followed(hostile: HostileServer,
                                                              status: str) -> None:
    settings = NetworkSettings(timeout=5.0, guard=AddressGuard(private_allowed=True))
    before, target = hostile.hits[f"/redirect-{status}"], hostile.hits["/tsa"]
    async with settings.session() as session:
        with pytest.raises(FetchFailed, match="redirected"):
            await fetch(session, settings, "tsa", "POST",
                        hostile.url(f"/redirect-{status}?to=/tsa"), data=b"")
    assert hostile.hits[f"/redirect-{status}"] == before + 1
    assert hostile.hits["/tsa"] == target


async def test_a_trusted_address_redirecting_to_loopback_is_checked_at_the_hop(
        hostile: HostileServer) -> None:
    """Trusted addresses may redirect, but each hop is a new address: checked."""
    first = hostile.url("/redirect-302?to=/tsa-garbage")
    settings = NetworkSettings(timeout=5.0, guard=AddressGuard.for_page_tsa(
        [first], private_allowed=False))
    target = hostile.hits["/tsa-garbage"]
    async with settings.session() as session:
        with pytest.raises(FetchFailed):
            await fetch(session, settings, "tsa", "GET", first)
    assert hostile.hits["/tsa-garbage"] == target


async def test_through_a_proxy_the_name_is_checked_too(hostile: HostileServer) -> None:
    """The proxy (the administrator's) is reached; the page's loopback name is not."""
    proxy = start_proxy()
    try:
        settings = NetworkSettings(timeout=5.0, proxy=proxy.url, guard=AddressGuard())
        before = hostile.hits["/tsa"]
        async with settings.session() as session:
            for host in ("localhost", "127.0.0.1"):
                with pytest.raises(FetchFailed, match="not allowed"):
                    await fetch(session, settings, "tsa", "POST",
                                f"http://{host}:{hostile.port}/tsa", data=b"")
        assert proxy.requests == [] and hostile.hits["/tsa"] == before
        # with private addresses allowed (development), the same request goes through
        dev = NetworkSettings(timeout=5.0, proxy=proxy.url,
                              guard=AddressGuard(private_allowed=True))
        async with dev.session() as session:
            reply = await fetch(session, dev, "tsa", "POST", hostile.url("/tsa-garbage"))
        assert reply.body == b"not a tsr" and len(proxy.requests) == 1
    finally:
        proxy.close()


# --- through the daemon -------------------------------------------------------------------

@contextmanager
def _agent(bed: FormatsBed, *, page_tsa: bool, **formats: object) -> Iterator[Daemon]:
    with daemon_in_temp_home("imza-ssrf-home-", lambda home: start_formats_daemon(
            bed, home, page_tsa=page_tsa, **formats)) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def default_agent(formats_bed: FormatsBed) -> Iterator[Daemon]:
    with _agent(formats_bed, page_tsa=False) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def page_tsa_agent(formats_bed: FormatsBed) -> Iterator[Daemon]:
    """Page TSAs allowed, private addresses not (the production setting that allows it)."""
    with _agent(formats_bed, page_tsa=False, allow_page_tsa=True) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def dev_agent(formats_bed: FormatsBed) -> Iterator[Daemon]:
    """Page TSAs on loopback allowed (the development setting)."""
    with _agent(formats_bed, page_tsa=True) as daemon:
        yield daemon


def _cms(level: str, tsa: str) -> dict[str, object]:
    return {"data": b64(DATA), "hashAlgorithm": "SHA-256", "level": level, "tsaUrl": tsa}


async def _errors(daemon: Daemon, bed: FormatsBed, params: list[dict[str, object]]
                  ) -> list[RpcError]:
    """The calls' errors, one connection and one handle for all."""
    async with daemon.client(ORIGIN) as client:
        handle = await select_handle(client, bed.serial("rsa"))
        return [await client.error("sign.cms", {"handle": handle, **p}) for p in params]


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
async def test_by_default_a_page_tsa_is_unsupported_and_not_contacted(
        default_agent: Daemon, formats_bed: FormatsBed, hostile: HostileServer) -> None:
    before = hostile.hits["/tsa"]
    mark = default_agent.transcript_mark()
    [error] = await _errors(default_agent, formats_bed, [_cms("T", hostile.url("/tsa"))])
    assert error.reason == "UNSUPPORTED"
    assert hostile.hits["/tsa"] == before
    assert pin_dialogs(default_agent, mark) == []


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
async def test_page_tsa_on_loopback_is_refused_without_a_connection(
        page_tsa_agent: Daemon, formats_bed: FormatsBed, hostile: HostileServer) -> None:
    before = hostile.hits["/tsa"]
    urls = [hostile.url("/tsa"), f"http://localhost:{hostile.port}/tsa",
            f"http://[::1]:{hostile.port}/tsa"]
    errors = await _errors(page_tsa_agent, formats_bed, [_cms("T", u) for u in urls])
    assert [e.reason for e in errors] == ["NETWORK"] * 3
    # one text whatever the address or port: no oracle in the message
    assert len({e.args[0] for e in errors}) == 1
    assert hostile.hits["/tsa"] == before


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
async def test_failed_page_tsa_attempts_are_limited_per_handle(
        page_tsa_agent: Daemon, formats_bed: FormatsBed, hostile: HostileServer) -> None:
    """The default limit is 3: the 4th and 5th attempts are RATE_LIMITED (whatever their
    address); a new handle starts again."""
    private = [_cms("T", f"http://10.255.255.{n}/tsa") for n in range(1, 6)]
    errors = await _errors(page_tsa_agent, formats_bed, private)
    assert [e.reason for e in errors] == ["NETWORK"] * 3 + ["RATE_LIMITED"] * 2
    [again] = await _errors(page_tsa_agent, formats_bed, private[:1])
    assert again.reason == "NETWORK"


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
async def test_limit_counts_contacts_too(dev_agent: Daemon, formats_bed: FormatsBed,
                                         hostile: HostileServer) -> None:
    before = hostile.hits["/tsa-garbage"]
    errors = await _errors(dev_agent, formats_bed,
                           [_cms("T", hostile.url("/tsa-garbage"))] * 5)
    assert [e.reason for e in errors] == ["NETWORK"] * 3 + ["RATE_LIMITED"] * 2
    assert hostile.hits["/tsa-garbage"] == before + 3  # nothing asked past the limit


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
@pytest.mark.parametrize("status", ["302", "307"])
async def test_daemon_follows_no_redirect_from_a_page_tsa(
        dev_agent: Daemon, formats_bed: FormatsBed, hostile: HostileServer,
        status: str) -> None:
    before, target = hostile.hits[f"/redirect-{status}"], hostile.hits["/tsa"]
    [error] = await _errors(dev_agent, formats_bed,
                            [_cms("T", hostile.url(f"/redirect-{status}?to=/tsa"))])
    assert error.reason == "NETWORK"
    assert hostile.hits[f"/redirect-{status}"] == before + 1
    assert hostile.hits["/tsa"] == target


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
async def test_bombs_from_a_page_tsa_leave_the_daemon_bounded(
        dev_agent: Daemon, formats_bed: FormatsBed, hostile: HostileServer) -> None:
    """A gzip bomb as the time-stamp, then a working TSA whose certificate names bomb
    OCSP/CRL/caIssuers addresses (CAdES-LT gathers their validation data): NETWORK both,
    and the daemon's peak memory grows by less than 100 MiB (the bombs inflate to 1 GiB
    each)."""
    assert dev_agent.process is not None
    pid = dev_agent.process.pid
    with contextlib.suppress(OSError):  # the peak so far would hide this test's own
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = _peak_rss(pid)
    bombs = hostile.hits["/gzip-bomb"], hostile.hits["/ocsp-bomb"] + hostile.hits["/crl-bomb"]
    errors = await _errors(dev_agent, formats_bed, [
        _cms("T", hostile.url("/gzip-bomb?type=tsa")), _cms("LT", hostile.url("/tsa-hostile"))])
    assert [e.reason for e in errors] == ["NETWORK", "NETWORK"]
    assert hostile.hits["/gzip-bomb"] == bombs[0] + 1
    assert hostile.hits["/ocsp-bomb"] + hostile.hits["/crl-bomb"] > bombs[1]
    grown = _peak_rss(pid) - before
    assert grown < 100 * MIB, f"the daemon's peak memory grew by {grown // MIB} MiB"
