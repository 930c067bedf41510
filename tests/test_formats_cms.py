"""sign.cms through a running agent with SoftHSM keys, against real loopback TSA/OCSP/CRL
services; every signature is checked by OpenSSL and by pyHanko's validator."""

from __future__ import annotations

from pathlib import Path

import pki_services
import pytest
from asn1crypto import cms, ocsp
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from daemon import Daemon, b64, unb64
from pki_services import (
    ORIGIN,
    FormatsBed,
    pin_dialogs,
    run_tool,
    select_handle,
    trust_context,
)
from pyhanko.sign.validation.generic_cms import async_validate_detached_cms

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon, pytest.mark.verifiers]

# Fixtures shared by the format tests.
formats_bed = pki_services.formats_bed
formats_daemon = pki_services.formats_daemon

DATA = "Ödəniş tapşırığı № 117: 1 250,00 AZN".encode()


def _openssl_verify(bed: FormatsBed, cms_der: bytes, data: bytes, tmp: Path) -> str:
    (tmp / "sig.der").write_bytes(cms_der)
    (tmp / "data.bin").write_bytes(data)
    done = run_tool(["openssl", "cms", "-verify", "-binary", "-inform", "DER",
                     "-in", str(tmp / "sig.der"), "-content", str(tmp / "data.bin"),
                     "-CAfile", str(bed.anchors[0]), "-certfile", str(bed.anchors[1]),
                     "-purpose", "any", "-out", str(tmp / "out.bin")])
    assert done.returncode == 0, done.stderr
    assert (tmp / "out.bin").read_bytes() == data
    return done.stderr


def _signer_info(cms_der: bytes) -> cms.SignerInfo:
    return cms.ContentInfo.load(cms_der)["content"]["signer_infos"][0]


def _timestamp_token(cms_der: bytes) -> cms.ContentInfo:
    attrs = _signer_info(cms_der)["unsigned_attrs"]
    [token] = [a["values"][0] for a in attrs if a["type"].native == "signature_time_stamp_token"]
    return token


async def _sign(daemon: Daemon, bed: FormatsBed, identity: str, params: dict) -> bytes:
    async with daemon.client(ORIGIN) as client:
        handle = await select_handle(client, bed.serial(identity))
        result = await client.call("sign.cms", {"handle": handle, **params})
    return unb64(result["cms"])


async def test_agent_info_advertises_formats(formats_daemon: Daemon) -> None:
    async with formats_daemon.client(ORIGIN) as client:
        await select_handle(client, "FMT-rsa")  # a grant, so info tells everything
        info = await client.call("agent.info")
    assert info["formats"]["cms"] == ["B", "T", "LT", "LTA"]
    assert set(info["formats"]["pdf"]) >= {"B-B", "B-T", "B-LT", "B-LTA"}
    assert set(info["formats"]["xml"]) >= {"B-B", "B-T"}
    assert info["formats"]["asic"] == ["B-B", "B-T", "B-LT", "B-LTA"]
    assert {"sign.cms", "sign.pdf", "sign.xml"} <= set(info["features"])


async def test_b_b_over_data_rsa_one_dialog(formats_daemon: Daemon, formats_bed: FormatsBed,
                                            tmp_path: Path) -> None:
    mark = formats_daemon.transcript_mark()
    der = await _sign(formats_daemon, formats_bed, "rsa", {
        "data": b64(DATA), "hashAlgorithm": "SHA-256", "level": "B",
        "display": {"text": "Ödəniş 117"}})
    dialogs = pin_dialogs(formats_daemon, mark)
    assert len(dialogs) == 1 and dialogs[0]["display_text"] == "Ödəniş 117"
    _openssl_verify(formats_bed, der, DATA, tmp_path)
    info = _signer_info(der)
    signed = {a["type"].native for a in info["signed_attrs"]}
    assert {"content_type", "message_digest", "signing_time",
            "signing_certificate_v2"} <= signed
    assert info["unsigned_attrs"].native is None
    content = cms.ContentInfo.load(der)["content"]
    assert content["encap_content_info"]["content"].native is None  # detached
    status = await async_validate_detached_cms(DATA, content,
                                               signer_validation_context=trust_context(formats_bed))
    assert status.intact and status.valid and status.trusted


async def test_b_b_over_hash_ec(formats_daemon: Daemon, formats_bed: FormatsBed,
                                tmp_path: Path) -> None:
    import hashlib

    der = await _sign(formats_daemon, formats_bed, "ec", {
        "hash": b64(hashlib.sha384(DATA).digest()), "hashAlgorithm": "SHA-384",
        "level": "B"})
    _openssl_verify(formats_bed, der, DATA, tmp_path)
    info = _signer_info(der)
    assert info["digest_algorithm"]["algorithm"].native == "sha384"
    assert info["signature_algorithm"]["algorithm"].native == "sha384_ecdsa"


async def test_b_t_timestamp_verifies_with_openssl_ts(formats_daemon: Daemon,
                                                      formats_bed: FormatsBed,
                                                      tmp_path: Path) -> None:
    der = await _sign(formats_daemon, formats_bed, "rsa", {
        "data": b64(DATA), "hashAlgorithm": "SHA-256", "level": "T",
        "tsaUrl": formats_bed.services.url("/tsa")})
    _openssl_verify(formats_bed, der, DATA, tmp_path)
    token = _timestamp_token(der)
    (tmp_path / "token.der").write_bytes(token.dump())
    (tmp_path / "sigvalue.bin").write_bytes(_signer_info(der)["signature"].native)
    chain = tmp_path / "untrusted.pem"
    tsa_pem = x509.load_der_x509_certificate(
        formats_bed.services.tsa.der).public_bytes(Encoding.PEM)  # type: ignore[union-attr]
    chain.write_bytes(formats_bed.anchors[1].read_bytes() + tsa_pem)
    done = run_tool(["openssl", "ts", "-verify", "-token_in", "-in", str(tmp_path / "token.der"),
                     "-data", str(tmp_path / "sigvalue.bin"), "-CAfile",
                     str(formats_bed.anchors[0]), "-untrusted", str(chain)])
    assert done.returncode == 0 and "Verification: OK" in done.stdout, done.stdout + done.stderr
    content = cms.ContentInfo.load(der)["content"]
    status = await async_validate_detached_cms(
        DATA, content, signer_validation_context=trust_context(formats_bed),
        ts_validation_context=trust_context(formats_bed))
    assert status.valid and status.trusted
    assert status.timestamp_validity is not None and status.timestamp_validity.trusted


async def test_b_lt_embeds_validation_data(formats_daemon: Daemon, formats_bed: FormatsBed,
                                           tmp_path: Path) -> None:
    der = await _sign(formats_daemon, formats_bed, "ec", {
        "data": b64(DATA), "hashAlgorithm": "SHA-256", "level": "LT",
        "tsaUrl": formats_bed.services.url("/tsa")})
    _openssl_verify(formats_bed, der, DATA, tmp_path)
    content = cms.ContentInfo.load(der)["content"]
    certs = {c.chosen.subject.human_friendly for c in content["certificates"]}
    assert any("Intermediate" in s for s in certs) and any("Formatlar tsa" in s for s in certs)
    responses = [c.chosen["other_rev_info"] for c in content["crls"] if c.name == "other"]
    assert content["version"].native == "v5"
    statuses = {}
    for response in responses:
        assert isinstance(response, ocsp.OCSPResponse)
        single = response.basic_ocsp_response["tbs_response_data"]["responses"][0]
        statuses[single["cert_id"]["serial_number"].native] = single["cert_status"].name
    signer = formats_bed.identities["ec"].cert.serial_number
    tsa = formats_bed.services.tsa.cert.serial_number  # type: ignore[union-attr]
    assert statuses[signer] == "good" and statuses[tsa] == "good"
    # With fetching off, hard-fail revocation checking passes on the embedded data alone.
    offline = trust_context(formats_bed, allow_fetching=False, revocation_mode="hard-fail",
                     ocsps=responses,
                     crls=[c.chosen for c in content["crls"] if c.name == "crl"])
    status = await async_validate_detached_cms(DATA, content,
                                               signer_validation_context=offline,
                                               ts_validation_context=offline)
    assert status.valid and status.trusted, status.pretty_print_details()


async def test_revoked_signer_refused_before_any_dialog(formats_daemon: Daemon,
                                                        formats_bed: FormatsBed) -> None:
    mark = formats_daemon.transcript_mark()
    async with formats_daemon.client(ORIGIN) as client:
        handle = await select_handle(client, formats_bed.serial("revoked"))
        error = await client.error("sign.cms", {"handle": handle, "data": b64(DATA),
                                                "hashAlgorithm": "SHA-256", "level": "B"})
    assert error.reason == "CERTIFICATE_INVALID" and error.data["detail"] == "REVOKED"
    assert pin_dialogs(formats_daemon, mark) == []


async def test_crl_only_signer_checked_through_crl(formats_daemon: Daemon,
                                                   formats_bed: FormatsBed,
                                                   tmp_path: Path) -> None:
    before = len(formats_bed.services.requests)
    der = await _sign(formats_daemon, formats_bed, "crl_only", {
        "data": b64(DATA), "hashAlgorithm": "SHA-256", "level": "B"})
    _openssl_verify(formats_bed, der, DATA, tmp_path)
    assert "GET /crl" in formats_bed.services.requests[before:]


async def test_broken_tsa_is_network_and_asks_nothing(formats_daemon: Daemon,
                                                      formats_bed: FormatsBed) -> None:
    for path in ("/tsa-garbage", "/tsa-slow", "/no-such-tsa"):
        mark = formats_daemon.transcript_mark()
        async with formats_daemon.client(ORIGIN) as client:
            handle = await select_handle(client, formats_bed.serial("rsa"))
            error = await client.error("sign.cms", {
                "handle": handle, "data": b64(DATA), "hashAlgorithm": "SHA-256",
                "level": "T", "tsaUrl": formats_bed.services.url(path)})
        assert error.reason == "NETWORK", path
        assert pin_dialogs(formats_daemon, mark) == [], path


async def test_tsa_refusing_connections_is_network(formats_daemon: Daemon,
                                                   formats_bed: FormatsBed) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with formats_daemon.client(ORIGIN) as client:
        handle = await select_handle(client, formats_bed.serial("rsa"))
        error = await client.error("sign.cms", {
            "handle": handle, "data": b64(DATA), "hashAlgorithm": "SHA-256",
            "level": "LT", "tsaUrl": f"http://127.0.0.1:{port}/tsr"})
    assert error.reason == "NETWORK"


async def test_timestamp_level_without_any_tsa_is_unsupported(formats_daemon: Daemon,
                                                              formats_bed: FormatsBed) -> None:
    """No tsaUrl from the page and none configured for the origin or issuer: nothing to
    time-stamp with, said before any dialog."""
    mark = formats_daemon.transcript_mark()
    async with formats_daemon.client(ORIGIN) as client:
        handle = await select_handle(client, formats_bed.serial("rsa"))
        error = await client.error("sign.cms", {
            "handle": handle, "data": b64(DATA), "hashAlgorithm": "SHA-256", "level": "T"})
    assert (error.code, error.reason) == (4010, "UNSUPPORTED")
    assert pin_dialogs(formats_daemon, mark) == []
