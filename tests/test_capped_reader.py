"""Every TSA, OCSP, CRL and certificate answer is read through the capped reader: a gzip
bomb, a huge body (declared or not) and a slow drip from a real loopback server
(tests/pki_services.py ``HostileServer``) end as a failure of that fetch, with the memory
of this process bounded.  The clients are the agent's own: ``GuardedTimeStamper``,
``fetch_ocsp`` and the CRL and certificate fetchers pyhanko-certvalidator is given."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pki_services
import pytest
from asn1crypto import tsp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives.serialization import Encoding
from pki_services import HostileServer, PkiServices, start_hostile, start_services
from pyhanko_certvalidator.authority import AuthorityWithCert
from pyhanko_certvalidator.errors import CertificateFetchError, CRLFetchError, OCSPFetchError
from pyhanko_certvalidator.fetchers.api import FetchLimits
from pyhanko_certvalidator.fetchers.common_utils import FetchBudget
from testbed.pki import TestPKI

from agent.config import FormatsConfig
from agent.errors import NetworkError
from agent.formats.network import FetchFailed, NetworkSettings, ResponseLimits, fetch
from agent.formats.revocation import CappedCertificateFetcher, CappedCrlFetcher, fetch_ocsp
from agent.formats.timestamps import GuardedTimeStamper

MIB = 1 << 20
MEMORY_BOUND = 100 * MIB  # a 1 GiB answer read whole (or inflated) would pass it tenfold
SETTINGS = NetworkSettings(timeout=20.0)  # generous: these tests measure memory, not time


@pytest.fixture(scope="module")
def services(pki: TestPKI) -> Iterator[PkiServices]:
    running = start_services(pki)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def hostile(services: PkiServices) -> Iterator[HostileServer]:
    running = start_hostile(services)
    try:
        yield running
    finally:
        running.close()


def _peak_rss() -> int:
    """VmHWM of this process, bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")


def _reset_peak() -> None:
    # Linux ≥ 4.0: "5" resets the peak RSS to the current RSS, so the measure below is
    # this test's own; where refused, the peak so far only makes the bound stricter.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


async def _bounded(call: Callable[[], Awaitable[Any]], error: type[Exception]) -> None:
    _reset_peak()
    before = _peak_rss()
    with pytest.raises(error):
        await call()
    grown = _peak_rss() - before
    assert grown < MEMORY_BOUND, f"peak memory grew by {grown // MIB} MiB"


def _tsa_request() -> bytes:
    imprint = {"hash_algorithm": {"algorithm": "sha256"},
               "hashed_message": hashlib.sha256(b"x").digest()}
    request: bytes = tsp.TimeStampReq({"version": 1, "message_imprint": imprint,
                                       "cert_req": True}).dump()
    return request


def _asn1(cert: Any) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))


def _cert_naming(services: PkiServices, hostile: HostileServer, path: str, kind: str
                 ) -> asn1_x509.Certificate:
    """A certificate whose OCSP, CRL and caIssuers addresses are ``path?type=kind`` on the
    hostile server."""
    target = f"{path}?type={kind}"
    issued = services.issue(f"victim-{kind}-{path.strip('/')}", base=hostile.base,
                            ocsp_path=target, crl_path=target, ca_path=target)
    return _asn1(issued.cert)


HOSTILE_PATHS = ["/gzip-bomb", "/huge", "/huge-undeclared"]


@pytest.mark.linux
@pytest.mark.parametrize("path", HOSTILE_PATHS)
async def test_tsa_answer_is_capped(hostile: HostileServer, path: str) -> None:
    before = hostile.hits[path]

    async def call() -> None:
        async with SETTINGS.session() as session:
            stamper = GuardedTimeStamper(hostile.url(f"{path}?type=tsa"), SETTINGS, session)
            await stamper.async_timestamp(hashlib.sha256(b"x").digest(), "sha256")

    await _bounded(call, NetworkError)
    assert hostile.hits[path] == before + 1  # the hostile answer was really sent


@pytest.mark.linux
@pytest.mark.parametrize("path", HOSTILE_PATHS)
async def test_ocsp_answer_is_capped(services: PkiServices, hostile: HostileServer,
                                     path: str) -> None:
    cert = _cert_naming(services, hostile, path, "ocsp")
    authority = AuthorityWithCert(_asn1(services.pki.intermediate.cert))
    before = hostile.hits[path]

    async def call() -> None:
        async with SETTINGS.session() as session:
            await fetch_ocsp(session, hostile.url(f"{path}?type=ocsp"), cert, authority,
                             SETTINGS)

    await _bounded(call, OCSPFetchError)
    assert hostile.hits[path] == before + 1


@pytest.mark.linux
@pytest.mark.parametrize("path", HOSTILE_PATHS)
async def test_crl_is_capped(services: PkiServices, hostile: HostileServer, path: str) -> None:
    cert = _cert_naming(services, hostile, path, "crl")
    before = hostile.hits[path]

    async def call() -> None:
        async with SETTINGS.session() as session:
            fetcher = CappedCrlFetcher(session, SETTINGS, budget=FetchBudget(FetchLimits()))
            await fetcher.fetch(cert)

    await _bounded(call, CRLFetchError)
    assert hostile.hits[path] == before + 1


@pytest.mark.linux
@pytest.mark.parametrize("path", HOSTILE_PATHS)
async def test_ca_issuers_certificate_is_capped(services: PkiServices, hostile: HostileServer,
                                                path: str) -> None:
    before = hostile.hits[path]

    async def call() -> None:
        async with SETTINGS.session() as session:
            fetcher = CappedCertificateFetcher(session, SETTINGS,
                                               budget=FetchBudget(FetchLimits()))
            await fetcher.fetch_certs(hostile.url(f"{path}?type=cert"), "certificate")

    await _bounded(call, CertificateFetchError)
    assert hostile.hits[path] == before + 1


async def test_no_transparent_decompression(hostile: HostileServer) -> None:
    """Even a small, valid time-stamp is refused when it comes gzip-encoded, and the
    request asked for ``identity`` only."""
    async with SETTINGS.session() as session:
        with pytest.raises(FetchFailed, match="encoded"):
            await fetch(session, SETTINGS, "tsa", "POST", hostile.url("/gzip-small"),
                        data=_tsa_request())
        stamper = GuardedTimeStamper(hostile.url("/gzip-small"), SETTINGS, session)
        with pytest.raises(NetworkError):
            await stamper.async_timestamp(hashlib.sha256(b"x").digest(), "sha256")
        assert session.auto_decompress is False


async def test_declared_length_over_the_cap_is_refused_before_reading(
        hostile: HostileServer) -> None:
    async with SETTINGS.session() as session:
        with pytest.raises(FetchFailed, match="over the"):
            await fetch(session, SETTINGS, "crl", "GET", hostile.url("/huge?type=crl"))


async def test_each_kind_has_its_own_limit(services: PkiServices,
                                           hostile: HostileServer) -> None:
    """A real time-stamp (a few KB) passes the default cap and fails a 1 KiB one."""
    async with SETTINGS.session() as session:
        stamper = GuardedTimeStamper(hostile.url("/tsa"), SETTINGS, session)
        token = await stamper.async_timestamp(hashlib.sha256(b"x").digest(), "sha256")
        assert len(token.dump()) > 1024
    small = NetworkSettings(timeout=20.0, limits=ResponseLimits(tsa=1024))
    async with small.session() as session:
        stamper = GuardedTimeStamper(hostile.url("/tsa"), small, session)
        with pytest.raises(NetworkError):
            await stamper.async_timestamp(hashlib.sha256(b"x").digest(), "sha256")


async def test_slow_drip_ends_at_the_timeout(hostile: HostileServer) -> None:
    settings = NetworkSettings(timeout=1.0)
    async with settings.session() as session:
        with pytest.raises(FetchFailed):
            await fetch(session, settings, "ocsp", "POST", hostile.url("/drip?type=ocsp"))
    assert hostile.sent["/drip"] < 1000  # it was cut off, not read to the end


def test_limits_are_settings() -> None:
    from agent.app.documents import network_settings

    config = FormatsConfig(max_tsa_response_bytes=2048, max_ocsp_response_bytes=4096,
                           max_crl_bytes=8192, max_certificate_bytes=16384)
    assert network_settings(config).limits == ResponseLimits(2048, 4096, 8192, 16384)
    defaults = network_settings(FormatsConfig()).limits
    assert defaults == ResponseLimits(tsa=128 * 1024, ocsp=64 * 1024, crl=20 * MIB,
                                      certificate=64 * 1024)


_ = pki_services  # the module provides the servers; keep the import explicit
