"""Long-term verification (EN 319 102-1 §5.6, past signature validation): a B-LTA
signature whose signature time-stamp's TSA certificate, or whose signer's certificate,
has expired since is judged at the time its (still valid) archive time-stamp proves it
existed — CAdES, XAdES and PAdES, made by a running agent with SoftHSM keys against the
loopback TSA/OCSP/CRL.  The signature time-stamps come from a TSA of this module's own
whose certificate lives ~40 s; the archive time-stamps from the bed's long-lived TSA
(``signature.extend``).  A revoked signer still fails, a changed copy fails, and the
same signature without its archive time-stamp (B-LT) stays INDETERMINATE: the archive
time-stamp is what moves the validation time."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path
from typing import Any

import pki_services
import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from daemon import Daemon, b64, unb64
from lxml import etree
from pki_services import (
    DIRECT_ENV,
    ORIGIN,
    FormatsBed,
    Issued,
    PkiServices,
    build_formats_token,
    run_tool,
    select_handle,
    start_formats_daemon,
)
from pyhanko.pdf_utils.reader import PdfFileReader
from test_formats_pdf import minimal_pdf

from agent.config import FormatsConfig
from agent.protocol.params_verify import SignatureVerifyResult
from agent.verify.service import verify_signature

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon, pytest.mark.verifiers]

formats_bed = pki_services.formats_bed

LIFETIME_SECONDS = 40  # the short-lived certificates' life: sign and extend early, verify after
DATA = "Arxiv sənədi № 7: 12 000,00 AZN".encode()
XML = ('<?xml version="1.0" encoding="UTF-8"?>\n'
       '<Arxiv nömrə="7"><Məbləğ valyuta="AZN">12000.00</Məbləğ></Arxiv>').encode()
DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
ANSWERS = {"consent": "always", "certificate": "first", "extend": "confirm"}


def _short_lived(services: PkiServices, name: str, *, tsa: bool = False) -> Issued:
    """``services.issue``'s certificate (its extensions, the bed's OCSP/CRL addresses)
    valid only until LIFETIME_SECONDS from now."""
    base = services.issue(name, eku_tsa=tsa)
    start = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(base.cert.subject)
               .issuer_name(base.cert.issuer).public_key(base.key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(start - dt.timedelta(minutes=1))
               .not_valid_after(start + dt.timedelta(seconds=LIFETIME_SECONDS)))
    for ext in base.cert.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    cert = builder.sign(services.pki.intermediate.key, hashes.SHA256())
    return Issued(name, cert, base.key, base.serial_number)


class ShortLivedTsa:
    """An RFC 3161 service on loopback signing with a short-lived TSA certificate (the
    bed's TSA engine, ``PkiServices.timestamp``, given this module's certificate)."""

    def __init__(self, services: PkiServices, tsa: Issued) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                answer = services.timestamp(body, owner.tsa)
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.tsa = tsa
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/tsa"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Made:
    bed: FormatsBed
    signed: dict[str, bytes]
    expires: dt.datetime  # when the short-lived TSA and signer certificates expire


async def _sign(daemon: Daemon, bed: FormatsBed, identity: str, method: str,
                params: dict[str, Any], member: str) -> bytes:
    async with daemon.client(ORIGIN) as client:
        handle = await select_handle(client, bed.serial(identity))
        result = await client.call(method, {"handle": handle, **params}, timeout=60)
    return unb64(result[member])


async def _extend(daemon: Daemon, bed: FormatsBed, fmt: str, signature: bytes, level: str,
                  data: bytes | None = None) -> bytes:
    async with daemon.client(ORIGIN) as client:
        result = await client.call("signature.extend", {
            "format": fmt, "signature": b64(signature), "level": level,
            "tsaUrl": bed.services.url("/tsa"),
            **({"data": b64(data)} if data is not None else {})}, timeout=90)
    return unb64(result["signature"])


async def _make_all(daemon: Daemon, bed: FormatsBed, short_tsa: str) -> dict[str, bytes]:
    tsa = bed.services.url("/tsa")
    cms = {"data": b64(DATA), "hashAlgorithm": "SHA-256"}
    out: dict[str, bytes] = {}
    # Signature time-stamps by the short-lived TSA; archive time-stamps by the bed's.
    cms_lt = await _sign(daemon, bed, "p_good", "sign.cms",
                         {**cms, "level": "LT", "tsaUrl": short_tsa}, "cms")
    out["cms_lt"] = cms_lt
    out["cms_lta"] = await _extend(daemon, bed, "cms", cms_lt, "LTA", DATA)
    # Both short-lived: the signer's certificate and its time-stamp's TSA certificate.
    both = await _sign(daemon, bed, "p_expiring", "sign.cms",
                       {**cms, "level": "LT", "tsaUrl": short_tsa}, "cms")
    out["cms_both_expired_lta"] = await _extend(daemon, bed, "cms", both, "LTA", DATA)
    revoked = await _sign(daemon, bed, "p_revoke", "sign.cms",
                          {**cms, "level": "LT", "tsaUrl": short_tsa}, "cms")
    out["cms_revoked_lta"] = await _extend(daemon, bed, "cms", revoked, "LTA", DATA)
    xml_lt = await _sign(daemon, bed, "p_good", "sign.xml",
                         {"xml": b64(XML), "level": "B-LT", "mode": "enveloped",
                          "tsaUrl": short_tsa}, "xml")
    out["xml_lt"] = xml_lt
    out["xml_lta"] = await _extend(daemon, bed, "xml", xml_lt, "B-LTA")
    pdf_lt = await _sign(daemon, bed, "p_good", "sign.pdf",
                         {"pdf": b64(minimal_pdf("Arxiv 7")), "level": "B-LT",
                          "tsaUrl": short_tsa}, "pdf")
    out["pdf_lt"] = pdf_lt
    out["pdf_lta"] = await _extend(daemon, bed, "pdf", pdf_lt, "B-LTA")
    # The signer's own certificate short-lived; everything else the bed's.
    out["pdf_expired_signer_lta"] = await _sign(
        daemon, bed, "p_expiring", "sign.pdf",
        {"pdf": b64(minimal_pdf("Arxiv 8")), "level": "B-LTA", "tsaUrl": tsa}, "pdf")
    out["pdf_revoked_lta"] = await _sign(
        daemon, bed, "p_revoke", "sign.pdf",
        {"pdf": b64(minimal_pdf("Arxiv 9")), "level": "B-LTA", "tsaUrl": tsa}, "pdf")
    return out


@pytest.fixture(scope="module")
def made(formats_bed: FormatsBed) -> Iterator[Made]:
    services = formats_bed.services
    identities = {"p_good": services.issue("p_good"),
                  "p_revoke": services.issue("p_revoke"),
                  "p_expiring": _short_lived(services, "p_expiring")}
    tsa = ShortLivedTsa(services, _short_lived(services, "p-tsa-short", tsa=True))
    directory = Path(tempfile.mkdtemp(prefix="imza-verify-poe-"))
    token = build_formats_token(directory / "softhsm", list(identities.values()),
                                label="Arxiv")
    bed = FormatsBed(services, identities, token, formats_bed.anchors, directory)
    daemon = start_formats_daemon(bed, directory / "home")
    daemon.set_answers({**ANSWERS, "pin": token.pin})
    try:
        signed = asyncio.run(_make_all(daemon, bed, tsa.url))
        # Revoked after it signed (the bed dates the revocation an hour back).
        services.revoked.add(identities["p_revoke"].cert.serial_number)
        expires = min(identities["p_expiring"].cert.not_valid_after_utc,
                      tsa.tsa.cert.not_valid_after_utc)
        yield Made(bed, signed, expires)
    finally:
        tsa.close()
        code = daemon.stop()
        shutil.rmtree(directory, ignore_errors=True)
    assert code == 0, "the daemon did not stop cleanly"


@pytest.fixture(scope="module")
def expired(made: Made) -> Made:
    """The same, once the short-lived certificates have expired."""
    pki_services.wait_until_expired(made.expires)
    return made


@pytest.fixture(autouse=True)
def _direct(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in DIRECT_ENV.items():
        monkeypatch.setenv(name, value)


async def _verify(bed: FormatsBed, signature: bytes, data: bytes | None = None
                  ) -> SignatureVerifyResult:
    config = FormatsConfig(trust_anchors=bed.anchors,
                           network_timeout=pki_services.NETWORK_TIMEOUT,
                           page_tsa_private_addresses=True)
    return await verify_signature(config, signature, data, None)


def _one(result: SignatureVerifyResult) -> Any:
    assert len(result.signatures) == 1
    return result.signatures[0]


def _verdict(report: Any) -> tuple[str, str | None]:
    return report.indication.value, report.sub_indication


def _iso(text: str | None) -> dt.datetime:
    assert text is not None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))



# --- independent readings: openssl on the signature time-stamp ------------------------------

def _cms_stamp(signer_info: cms.SignerInfo) -> tuple[cms.ContentInfo, bytes]:
    """A CMS signer's signature time-stamp token and the imprint it must carry (the
    digest of the signature value, RFC 3161 / EN 319 122-1 §5.3)."""
    [token] = [a["values"][0] for a in signer_info["unsigned_attrs"]
               if a["type"].native == "signature_time_stamp_token"]
    info = token["content"]["encap_content_info"]["content"].parsed
    md = info["message_imprint"]["hash_algorithm"]["algorithm"].native
    return token, hashlib.new(md, signer_info["signature"].native).digest()


def _xades_stamp(xml: bytes) -> tuple[cms.ContentInfo, bytes]:
    """The XAdES SignatureTimeStamp token and its imprint (the exclusively canonicalised
    ds:SignatureValue, EN 319 132-1 §5.3), computed here with lxml."""
    root = etree.fromstring(xml)
    node = next(root.iter(f"{{{XADES}}}EncapsulatedTimeStamp"))
    token = cms.ContentInfo.load(base64.b64decode("".join((node.text or "").split())))
    value = next(root.iter(f"{{{DS}}}SignatureValue"))
    c14n = etree.tostring(value, method="c14n", exclusive=True, with_comments=False)
    info = token["content"]["encap_content_info"]["content"].parsed
    md = info["message_imprint"]["hash_algorithm"]["algorithm"].native
    return token, hashlib.new(md, c14n).digest()


def _openssl_ts(bed: FormatsBed, token: cms.ContentInfo, imprint: bytes, tmp: Path,
                at: dt.datetime | None = None) -> Any:
    """``openssl ts -verify`` of the token, now or at ``at``."""
    (tmp / "ts.der").write_bytes(token.dump())
    pems = [bed.anchors[1].read_bytes()]
    for choice in token["content"]["certificates"]:
        pems.append(b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(
            choice.chosen.dump()) + b"-----END CERTIFICATE-----\n")
    (tmp / "ts-untrusted.pem").write_bytes(b"".join(pems))
    extra = ["-attime", str(int(at.timestamp()))] if at is not None else []
    return run_tool(["openssl", "ts", "-verify", "-token_in", "-in", str(tmp / "ts.der"),
                     "-digest", imprint.hex(), "-CAfile", str(bed.anchors[0]),
                     "-untrusted", str(tmp / "ts-untrusted.pem"), *extra])


def _assert_stamp_expired_now_good_then(bed: FormatsBed, token: cms.ContentInfo,
                                        imprint: bytes, tmp: Path, then: dt.datetime) -> None:
    now = _openssl_ts(bed, token, imprint, tmp)
    assert now.returncode != 0 and "expired" in (now.stdout + now.stderr).lower(), now.stdout
    past = _openssl_ts(bed, token, imprint, tmp, then)
    assert past.returncode == 0 and "Verification: OK" in past.stdout, \
        past.stdout + past.stderr


def _past_pass(report: Any, expires: dt.datetime) -> dt.datetime:
    """A TOTAL-PASSED judged in the past: at the signature time-stamp's time, before the
    short-lived certificates expired, proven by an archive time-stamp (the message says
    which); returns the archive time-stamp's time the message names."""
    assert _verdict(report) == ("TOTAL-PASSED", None), report.message
    best = _iso(report.best_signature_time)
    assert best == _iso(report.timestamp_time) and best < expires
    assert "archive time-stamp" in (report.message or "")
    archived = dt.datetime.strptime(
        (report.message or "").rsplit("archive time-stamp of ", 1)[1],
        "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=dt.UTC)
    assert best <= archived + dt.timedelta(seconds=1) and archived < expires
    assert report.revocation is not None and report.revocation.status == "good"
    return archived


# --- CAdES -----------------------------------------------------------------------------------

async def test_cades_b_lta_passes_at_its_archive_time_stamp_when_the_tsa_expired(
        expired: Made, tmp_path: Path) -> None:
    bed, signed = expired.bed, expired.signed
    [report] = (await _verify(bed, signed["cms_lta"], DATA)).signatures
    assert report.level == "CAdES-B-LTA"
    archived = _past_pass(report, expired.expires)
    # openssl: the signature time-stamp's TSA certificate has expired; at the archive
    # time-stamp's time it verifies.
    token, imprint = _cms_stamp(cms.ContentInfo.load(signed["cms_lta"])["content"][
        "signer_infos"][0])
    _assert_stamp_expired_now_good_then(bed, token, imprint, tmp_path, archived)
    # The same signature before it was archived: nothing moves the validation time.
    [lt] = (await _verify(bed, signed["cms_lt"], DATA)).signatures
    assert lt.level == "CAdES-B-LT"
    assert _verdict(lt) == ("INDETERMINATE", "OUT_OF_BOUNDS_NO_POE")


async def test_cades_b_lta_of_an_expired_signer_with_an_expired_tsa_passes(
        expired: Made, tmp_path: Path) -> None:
    """Signer and signature time-stamp both expired since: judged at the signature
    time-stamp's time, which only the archive time-stamp proves; openssl says the
    signer's certificate has expired now and was good then."""
    bed = expired.bed
    [report] = (await _verify(bed, expired.signed["cms_both_expired_lta"], DATA)).signatures
    _past_pass(report, expired.expires)
    _openssl_expired_now_good_then(bed, report, tmp_path, _iso(report.timestamp_time))


async def test_cades_b_lta_of_a_revoked_signer_fails_in_the_past_too(expired: Made) -> None:
    """Its TSA expired, so it is judged at the archive time-stamp — and its signer was
    revoked (an hour before it signed): TOTAL-FAILED REVOKED."""
    [report] = (await _verify(expired.bed, expired.signed["cms_revoked_lta"],
                              DATA)).signatures
    assert report.level == "CAdES-B-LTA"
    assert _verdict(report) == ("TOTAL-FAILED", "REVOKED"), report.message
    assert report.revocation is not None and report.revocation.status == "revoked"


def test_the_command_line_tells_the_time_it_judged_at(expired: Made) -> None:
    """``imza-agent verify``'s text names the time the verdict was reached at."""
    from agent.commands.verify_command import render

    result = asyncio.run(_verify(expired.bed, expired.signed["cms_lta"], DATA))
    [report] = result.signatures
    text = render(result)
    assert f"Validated as of: {report.best_signature_time}" in text
    assert report.best_signature_time == report.timestamp_time


async def test_cades_b_lta_tampered_copies_fail(expired: Made) -> None:
    bed, der = expired.bed, expired.signed["cms_lta"]
    [changed] = (await _verify(bed, der, DATA + b" ")).signatures
    assert _verdict(changed) == ("TOTAL-FAILED", "HASH_FAILURE")
    # Revocation data the archive time-stamp protects, removed: the signature itself
    # holds (its time-stamp is only INDETERMINATE), the archive does not.
    info = cms.ContentInfo.load(der)
    entries = list(info["content"]["crls"])
    assert entries, "the B-LTA signature carries no revocation data"
    info["content"]["crls"] = entries[:-1]
    [broken] = (await _verify(bed, info.dump(force=True), DATA)).signatures
    assert _verdict(broken) == ("TOTAL-FAILED", "HASH_FAILURE"), broken.message
    assert "archive time-stamp" in (broken.message or "")


# --- XAdES -----------------------------------------------------------------------------------

async def test_xades_b_lta_passes_at_its_archive_time_stamp_when_the_tsa_expired(
        expired: Made, tmp_path: Path) -> None:
    bed, signed = expired.bed, expired.signed
    [report] = (await _verify(bed, signed["xml_lta"])).signatures
    assert report.level == "XAdES-B-LTA"
    archived = _past_pass(report, expired.expires)
    token, imprint = _xades_stamp(signed["xml_lta"])
    _assert_stamp_expired_now_good_then(bed, token, imprint, tmp_path, archived)
    [lt] = (await _verify(bed, signed["xml_lt"])).signatures
    assert lt.level == "XAdES-B-LT"
    assert _verdict(lt) == ("INDETERMINATE", "OUT_OF_BOUNDS_NO_POE")


async def test_xades_b_lta_tampered_copies_fail(expired: Made) -> None:
    bed, xml = expired.bed, expired.signed["xml_lta"]
    root = etree.fromstring(xml)
    amount = next(e for e in root.iter() if e.tag == "Məbləğ")
    amount.text = "12000.01"
    changed = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    [report] = (await _verify(bed, changed)).signatures
    assert _verdict(report) == ("TOTAL-FAILED", "HASH_FAILURE"), report.message
    # A property the archive time-stamp covers, changed (the signature time-stamp's Id,
    # which nothing references): only the archive time-stamp can tell.
    root = etree.fromstring(xml)
    stamp = next(root.iter(f"{{{XADES}}}SignatureTimeStamp"))
    stamp.set("Id", f"{stamp.get('Id', 'ts')}-renamed")
    broken = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    [report] = (await _verify(bed, broken)).signatures
    assert _verdict(report) == ("TOTAL-FAILED", "HASH_FAILURE"), report.message
    assert "archive time-stamp" in (report.message or "")


# --- PAdES -----------------------------------------------------------------------------------

def _pdf_signer_info(pdf: bytes) -> cms.SignerInfo:
    [sig] = PdfFileReader(BytesIO(pdf)).embedded_regular_signatures
    info: cms.SignerInfo = sig.signer_info
    return info


async def test_pades_b_lta_passes_at_its_document_time_stamp_when_the_tsa_expired(
        expired: Made, tmp_path: Path) -> None:
    bed, signed = expired.bed, expired.signed
    [report] = (await _verify(bed, signed["pdf_lta"])).signatures
    assert report.level == "PAdES-B-LTA"
    archived = _past_pass(report, expired.expires)
    token, imprint = _cms_stamp(_pdf_signer_info(signed["pdf_lta"]))
    _assert_stamp_expired_now_good_then(bed, token, imprint, tmp_path, archived)
    [lt] = (await _verify(bed, signed["pdf_lt"])).signatures
    assert lt.level == "PAdES-B-LT"
    assert _verdict(lt) == ("INDETERMINATE", "OUT_OF_BOUNDS_NO_POE")


def _signer_pem(report: Any, tmp: Path) -> Path:
    """The certificate the report names as the signer's, for openssl."""
    der = report.signer.certificate
    path = tmp / "signer.pem"
    path.write_bytes(x509.load_der_x509_certificate(der).public_bytes(
        serialization.Encoding.PEM))
    return path


def _openssl_expired_now_good_then(bed: FormatsBed, report: Any, tmp: Path,
                                   then: dt.datetime) -> None:
    """openssl, on the signer's certificate the report names (the short-lived one): it
    has expired now, and at ``then`` (the time-stamp's time) its path is good."""
    pem = _signer_pem(report, tmp)
    assert x509.load_pem_x509_certificate(pem.read_bytes()) == \
        bed.identities["p_expiring"].cert
    chain = ["-CAfile", str(bed.anchors[0]), "-untrusted", str(bed.anchors[1])]
    now = run_tool(["openssl", "verify", *chain, str(pem)])
    assert now.returncode != 0 and "expired" in (now.stdout + now.stderr).lower()
    good = run_tool(["openssl", "verify", *chain, "-attime", str(int(then.timestamp())),
                     str(pem)])
    assert good.returncode == 0, good.stdout + good.stderr


async def test_pades_b_lta_of_an_expired_signer_passes_at_its_time_stamp(
        expired: Made, tmp_path: Path) -> None:
    bed, pdf = expired.bed, expired.signed["pdf_expired_signer_lta"]
    [report] = (await _verify(bed, pdf)).signatures
    assert report.level == "PAdES-B-LTA"
    assert _verdict(report) == ("TOTAL-PASSED", None), report.message
    stamped = _iso(report.timestamp_time)
    assert _iso(report.best_signature_time) == stamped < expired.expires
    assert report.revocation is not None and report.revocation.status == "good"
    _openssl_expired_now_good_then(bed, report, tmp_path, stamped)
    # A copy whose signed bytes were changed fails.
    marker = b"Arxiv 8"
    assert pdf.count(marker) == 1
    [changed] = (await _verify(bed, pdf.replace(marker, b"Arxiv 0"))).signatures
    assert _verdict(changed) == ("TOTAL-FAILED", "HASH_FAILURE"), changed.message


async def test_pades_b_lta_of_a_revoked_signer_fails(expired: Made) -> None:
    """Revoked (an hour before it signed, by the bed's CRL and OCSP): TOTAL-FAILED
    REVOKED, not the INDETERMINATE pyHanko's LTA process turned it into."""
    [report] = (await _verify(expired.bed, expired.signed["pdf_revoked_lta"])).signatures
    assert report.level == "PAdES-B-LTA"
    assert _verdict(report) == ("TOTAL-FAILED", "REVOKED"), report.message
    assert report.revocation is not None and report.revocation.status == "revoked"
