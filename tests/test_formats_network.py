"""The network side of the signature formats, through running agents with SoftHSM keys and
real HTTP on loopback: a configured and a system HTTP proxy (a forwarding proxy that
records what it carried), TSA and OCSP addresses per issuing CA, and the signer-status
modes off / warn / enforce."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pki_services
import pytest
from asn1crypto import cms
from cryptography.hazmat.primitives.serialization import Encoding
from daemon import Daemon, b64, unb64
from pki_services import (
    ORIGIN,
    FormatsBed,
    ForwardingProxy,
    build_formats_token,
    daemon_in_temp_home,
    pin_dialogs,
    run_tool,
    select_handle,
    start_formats_daemon,
    start_proxy,
    unused_port,
)

from agent.app.documents import TsaChoice, choose_tsa
from agent.config import ConfigError, FormatsConfig, load_config
from agent.errors import Unsupported
from agent.formats.network import NetworkSettings, split_proxy_credentials

formats_bed = pki_services.formats_bed

DATA = "Vergi bəyannaməsi № 2024-117".encode()
XML = b'<?xml version="1.0" encoding="UTF-8"?><Hesabat><Cem>1250.00</Cem></Hesabat>'
OTHER_ORIGIN = "https://other.example"


# --- the bed: identities of our own, issued by the shared loopback CA ----------------------

@pytest.fixture(scope="module")
def net_bed(formats_bed: FormatsBed) -> Iterator[FormatsBed]:
    services = formats_bed.services
    directory = Path(tempfile.mkdtemp(prefix="imza-network-"))
    try:
        identities = {
            "net": services.issue("net"),
            "net_revoked": services.issue("net_revoked"),
            "no_revinfo": services.issue("no_revinfo", ocsp_url=False, crl_url=False),
            "ocsp_down": services.issue("ocsp_down", crl_url=False, ocsp_path="/ocsp-down"),
        }
        services.revoked.add(identities["net_revoked"].cert.serial_number)
        token = build_formats_token(directory / "softhsm", list(identities.values()),
                                    label="Network")
        yield FormatsBed(services, identities, token, formats_bed.anchors, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def proxy() -> Iterator[ForwardingProxy]:
    running = start_proxy()
    try:
        yield running
    finally:
        running.close()


def _issuer_fingerprint(bed: FormatsBed, colons: bool = False) -> str:
    digest = hashlib.sha256(bed.services.pki.intermediate.cert.public_bytes(Encoding.DER))
    if colons:  # as `openssl x509 -fingerprint -sha256` prints it
        return ":".join(f"{b:02X}" for b in digest.digest())
    return digest.hexdigest()


@contextmanager
def _agent(bed: FormatsBed, env: dict[str, str] | None = None,
           **formats: object) -> Iterator[Daemon]:
    with daemon_in_temp_home("imza-network-home-", lambda home: start_formats_daemon(
            bed, home, env=env, **formats)) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def proxied(net_bed: FormatsBed, proxy: ForwardingProxy) -> Iterator[Daemon]:
    with _agent(net_bed, http_proxy=proxy.url) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def by_issuer(net_bed: FormatsBed) -> Iterator[Daemon]:
    services = net_bed.services
    with _agent(net_bed,
                ocsp_by_issuer={_issuer_fingerprint(net_bed, colons=True):
                                services.url("/ocsp-alt")},
                tsa_by_issuer={_issuer_fingerprint(net_bed): services.url("/tsa-alt")},
                tsa_by_origin={OTHER_ORIGIN: services.url("/tsa")},
                tsa_url=services.url("/tsa-garbage")) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def warn(net_bed: FormatsBed) -> Iterator[Daemon]:
    with _agent(net_bed, revocation="warn") as daemon:
        yield daemon


# --- helpers -------------------------------------------------------------------------------

async def _call(daemon: Daemon, bed: FormatsBed, identity: str, method: str, params: dict,
                origin: str = ORIGIN) -> dict:
    async with daemon.client(origin) as client:
        handle = await select_handle(client, bed.serial(identity))
        return await client.call(method, {"handle": handle, **params})


async def _refusal(daemon: Daemon, bed: FormatsBed, identity: str, method: str,
                   params: dict) -> object:
    async with daemon.client(ORIGIN) as client:
        handle = await select_handle(client, bed.serial(identity))
        return await client.error(method, {"handle": handle, **params})


async def _cms(daemon: Daemon, bed: FormatsBed, identity: str, level: str,
               tsa: str | None = None, origin: str = ORIGIN) -> bytes:
    params = {"data": b64(DATA), "hashAlgorithm": "SHA-256", "level": level}
    if tsa is not None:
        params["tsaUrl"] = tsa
    return unb64((await _call(daemon, bed, identity, "sign.cms", params, origin))["cms"])


def _openssl_verify(bed: FormatsBed, der: bytes, tmp: Path) -> None:
    (tmp / "sig.der").write_bytes(der)
    (tmp / "data.bin").write_bytes(DATA)
    done = run_tool(["openssl", "cms", "-verify", "-binary", "-inform", "DER",
                     "-in", str(tmp / "sig.der"), "-content", str(tmp / "data.bin"),
                     "-CAfile", str(bed.anchors[0]), "-certfile", str(bed.anchors[1]),
                     "-purpose", "any", "-out", str(tmp / "out.bin")])
    assert done.returncode == 0, done.stderr
    assert (tmp / "out.bin").read_bytes() == DATA


def _embedded_ocsp_serials(der: bytes) -> set[int]:
    content = cms.ContentInfo.load(der)["content"]
    serials = set()
    for choice in content["crls"]:
        if choice.name == "other":
            single = choice.chosen["other_rev_info"].basic_ocsp_response[
                "tbs_response_data"]["responses"][0]
            serials.add(single["cert_id"]["serial_number"].native)
    return serials


def _has_timestamp(der: bytes) -> bool:
    attrs = cms.ContentInfo.load(der)["content"]["signer_infos"][0]["unsigned_attrs"]
    return any(a["type"].native == "signature_time_stamp_token" for a in attrs)


# --- proxy ---------------------------------------------------------------------------------

@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
async def test_configured_proxy_carries_tsa_and_revocation(
        proxied: Daemon, net_bed: FormatsBed, proxy: ForwardingProxy, tmp_path: Path) -> None:
    tsa = net_bed.services.url("/tsa")
    mark = len(proxy.requests)
    der = await _cms(proxied, net_bed, "net", "T", tsa)
    _openssl_verify(net_bed, der, tmp_path)
    assert _has_timestamp(der)
    carried = proxy.paths(mark)
    assert "POST /tsa" in carried and "POST /ocsp" in carried  # signing, and status check
    assert all(url.split(" ")[1].startswith(net_bed.services.base)
               for url in proxy.requests[mark:])

    mark = len(proxy.requests)
    der = await _cms(proxied, net_bed, "net", "LT", tsa)
    _openssl_verify(net_bed, der, tmp_path)
    carried = proxy.paths(mark)
    assert carried.count("POST /ocsp") >= 2  # the signer's and the TSA's status, for B-LT
    assert "POST /tsa" in carried
    signer = net_bed.identities["net"].cert.serial_number
    assert signer in _embedded_ocsp_serials(der)


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
async def test_proxy_down_is_network_and_asks_nothing(net_bed: FormatsBed) -> None:
    services = net_bed.services
    with _agent(net_bed, http_proxy=f"http://127.0.0.1:{unused_port()}") as daemon:
        for level in ("B", "T"):
            mark, before = daemon.transcript_mark(), len(services.requests)
            error = await _refusal(daemon, net_bed, "net", "sign.cms", {
                "data": b64(DATA), "hashAlgorithm": "SHA-256", "level": level,
                "tsaUrl": services.url("/tsa")})
            assert error.reason == "NETWORK", level  # type: ignore[attr-defined]
            assert pin_dialogs(daemon, mark) == [], level
            assert services.requests[before:] == [], "a request went around the proxy"


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
async def test_system_proxy_from_the_environment(net_bed: FormatsBed, proxy: ForwardingProxy,
                                                 tmp_path: Path) -> None:
    env = {"HTTP_PROXY": proxy.url, "http_proxy": proxy.url, "NO_PROXY": "", "no_proxy": ""}
    with _agent(net_bed, env=env) as daemon:
        mark = len(proxy.requests)
        der = await _cms(daemon, net_bed, "net", "T", net_bed.services.url("/tsa"))
    _openssl_verify(net_bed, der, tmp_path)
    carried = proxy.paths(mark)
    assert "POST /tsa" in carried and "POST /ocsp" in carried


def test_proxy_credentials_kept_apart() -> None:
    assert split_proxy_credentials("http://proxy.example:3128") == (
        "http://proxy.example:3128", None, "")
    assert split_proxy_credentials("http://g%C3%BCl:s%40cret@proxy.example:3128") == (
        "http://proxy.example:3128", "gül", "s@cret")
    settings = NetworkSettings(proxy="http://u:hunter2@proxy.example:3128")
    assert "hunter2" not in repr(settings)


# --- per-issuer addresses ------------------------------------------------------------------

@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
async def test_ocsp_by_issuer_wins_over_aia(by_issuer: Daemon, net_bed: FormatsBed,
                                            tmp_path: Path) -> None:
    requests = net_bed.services.requests
    before = len(requests)
    der = await _cms(by_issuer, net_bed, "net", "B")
    _openssl_verify(net_bed, der, tmp_path)
    assert "POST /ocsp-alt" in requests[before:]
    assert "POST /ocsp" not in requests[before:]  # the AIA's responder is not asked


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
async def test_ocsp_by_issuer_for_a_certificate_naming_no_service(
        by_issuer: Daemon, net_bed: FormatsBed, tmp_path: Path) -> None:
    requests = net_bed.services.requests
    before = len(requests)
    der = await _cms(by_issuer, net_bed, "no_revinfo", "B")  # enforce, and it passes
    _openssl_verify(net_bed, der, tmp_path)
    assert "POST /ocsp-alt" in requests[before:]

    # B-LT embeds that responder's answer for the signer too (the TSA per issuer wins
    # over the page's junk address).
    der = await _cms(by_issuer, net_bed, "no_revinfo", "LT",
                     net_bed.services.url("/tsa-garbage"))
    _openssl_verify(net_bed, der, tmp_path)
    assert net_bed.identities["no_revinfo"].cert.serial_number in _embedded_ocsp_serials(der)


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
async def test_revoked_by_the_issuer_responder(by_issuer: Daemon, net_bed: FormatsBed) -> None:
    before = len(net_bed.services.requests)
    error = await _refusal(by_issuer, net_bed, "net_revoked", "sign.cms", {
        "data": b64(DATA), "hashAlgorithm": "SHA-256", "level": "B"})
    assert error.reason == "CERTIFICATE_INVALID"  # type: ignore[attr-defined]
    assert error.data["detail"] == "REVOKED"  # type: ignore[attr-defined]
    assert "POST /ocsp-alt" in net_bed.services.requests[before:]


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
async def test_tsa_by_issuer_then_origin(by_issuer: Daemon, net_bed: FormatsBed,
                                         tmp_path: Path) -> None:
    services = net_bed.services
    before = len(services.requests)
    # Per issuer beats the configured default and the page's address (both junk here).
    der = await _cms(by_issuer, net_bed, "net", "T", services.url("/tsa-garbage"))
    _openssl_verify(net_bed, der, tmp_path)
    seen = services.requests[before:]
    assert "POST /tsa-alt" in seen and "POST /tsa-garbage" not in seen
    # Per origin beats per issuer.
    before = len(services.requests)
    der = await _cms(by_issuer, net_bed, "net", "T", services.url("/tsa-garbage"),
                     origin=OTHER_ORIGIN)
    assert _has_timestamp(der)
    seen = services.requests[before:]
    assert "POST /tsa" in seen and "POST /tsa-alt" not in seen


def test_tsa_precedence() -> None:
    issuer = "ab" * 32
    config = FormatsConfig(tsa_by_origin={ORIGIN: "http://origin/tsa"},
                           tsa_by_issuer={issuer: "http://issuer/tsa"},
                           tsa_url="http://default/tsa", allow_page_tsa=True)
    assert choose_tsa(config, ORIGIN, "http://page/tsa", issuer) == TsaChoice(
        "http://origin/tsa", from_page=False)
    assert choose_tsa(config, OTHER_ORIGIN, "http://page/tsa", issuer) == TsaChoice(
        "http://issuer/tsa", from_page=False)
    assert choose_tsa(config, OTHER_ORIGIN, "http://page/tsa", "cd" * 32) == TsaChoice(
        "http://default/tsa", from_page=False)
    assert choose_tsa(FormatsConfig(allow_page_tsa=True), ORIGIN, "http://page/tsa",
                      issuer) == TsaChoice("http://page/tsa", from_page=True)
    with pytest.raises(Unsupported):
        choose_tsa(FormatsConfig(allow_page_tsa=False), ORIGIN, "http://page/tsa", issuer)


def test_issuer_keys_validated_and_normalised(tmp_path: Path) -> None:
    colons = ":".join(["AB"] * 32)
    path = tmp_path / "agent.toml"
    path.write_text(f'[formats.ocsp_by_issuer]\n"{colons}" = "http://ocsp.example/"\n',
                    encoding="utf-8")
    assert load_config(path).formats.ocsp_by_issuer == {"ab" * 32: "http://ocsp.example/"}
    path.write_text('[formats.tsa_by_issuer]\n"CN=Sub CA" = "http://tsa.example/"\n',
                    encoding="utf-8")
    with pytest.raises(ConfigError, match="tsa_by_issuer"):
        load_config(path)
    path.write_text(f'[formats.ocsp_by_issuer]\n"{"ab" * 32}" = "ldap://ocsp"\n',
                    encoding="utf-8")
    with pytest.raises(ConfigError, match="ocsp_by_issuer"):
        load_config(path)
    path.write_text('[formats]\nhttp_proxy = "socks5://u:hunter2@proxy:1080"\n',
                    encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert "hunter2" not in str(refused.value)


# --- the signer-status modes ---------------------------------------------------------------

@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
async def test_warn_signs_when_status_unknown_and_logs(warn: Daemon, net_bed: FormatsBed,
                                                       tmp_path: Path) -> None:
    before = len(net_bed.services.requests)
    der = await _cms(warn, net_bed, "ocsp_down", "B")
    _openssl_verify(net_bed, der, tmp_path)
    assert "POST /ocsp-down" in net_bed.services.requests[before:]
    assert "WARNING agent.formats.status signer revocation status unknown" in warn.log_text()


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
async def test_warn_refuses_revoked(warn: Daemon, net_bed: FormatsBed) -> None:
    mark = warn.transcript_mark()
    error = await _refusal(warn, net_bed, "net_revoked", "sign.cms", {
        "data": b64(DATA), "hashAlgorithm": "SHA-256", "level": "B"})
    assert error.reason == "CERTIFICATE_INVALID"  # type: ignore[attr-defined]
    assert error.data["detail"] == "REVOKED"  # type: ignore[attr-defined]
    assert pin_dialogs(warn, mark) == []


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
async def test_warn_signs_without_revocation_source(warn: Daemon, net_bed: FormatsBed,
                                                    tmp_path: Path) -> None:
    der = await _cms(warn, net_bed, "no_revinfo", "B")
    _openssl_verify(net_bed, der, tmp_path)
    assert "names no OCSP or CRL service; signing anyway" in warn.log_text()


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
async def test_enforce_refuses_certificate_without_revocation_source(
        proxied: Daemon, net_bed: FormatsBed) -> None:
    mark = proxied.transcript_mark()
    error = await _refusal(proxied, net_bed, "no_revinfo", "sign.cms", {
        "data": b64(DATA), "hashAlgorithm": "SHA-256", "level": "B"})
    assert error.reason == "CERTIFICATE_INVALID"  # type: ignore[attr-defined]
    assert error.data["detail"] == "NO_REVOCATION_INFO"  # type: ignore[attr-defined]
    assert pin_dialogs(proxied, mark) == []


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
async def test_enforce_status_unknown_is_network(proxied: Daemon, net_bed: FormatsBed) -> None:
    mark = proxied.transcript_mark()
    error = await _refusal(proxied, net_bed, "ocsp_down", "sign.cms", {
        "data": b64(DATA), "hashAlgorithm": "SHA-256", "level": "B"})
    assert error.reason == "NETWORK"  # type: ignore[attr-defined]
    assert pin_dialogs(proxied, mark) == []


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
async def test_off_asks_no_service(net_bed: FormatsBed, tmp_path: Path) -> None:
    services = net_bed.services
    with _agent(net_bed, revocation="off") as daemon:
        before = len(services.requests)
        der = await _cms(daemon, net_bed, "net_revoked", "B")  # not checked at all
        assert services.requests[before:] == []
        _openssl_verify(net_bed, der, tmp_path)
        # XAdES asks its TSA before the dialog too: a junk TSA costs no PIN entry.
        mark = daemon.transcript_mark()
        error = await _refusal(daemon, net_bed, "net", "sign.xml", {
            "xml": b64(XML), "level": "B-T", "mode": "enveloped",
            "tsaUrl": services.url("/tsa-garbage")})
        assert error.reason == "NETWORK"  # type: ignore[attr-defined]
        assert pin_dialogs(daemon, mark) == []
