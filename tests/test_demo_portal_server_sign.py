"""The demo portal's third way to sign a PDF, where the document never goes to the browser
(the server prepares with the portal kit, the agent signs only the hash with `sign.hash`,
the server finishes), and its server-side check of EVERY signed PDF, over HTTP against real
agents: the demo identity, SoftHSM token A (a CA the portal does not trust), and the format
tests' token with loopback TSA/OCSP/CRL services for B-T and B-LT. The files are checked
again with pdfsig and pyHanko, which we did not write."""

from __future__ import annotations

import base64
import hashlib
import ssl
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pki_services
import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from daemon import Daemon, b64, unb64
from pki_services import ORIGIN, FormatsBed, run_tool
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from test_demo_portal import DEMO_ANSWERS, GOV, Browser
from testbed.softhsm import ALIYEV, SoftHsmBed

from agent.demo_portal.server import PortalServer, sample_pdf

formats_bed = pki_services.formats_bed
formats_daemon = pki_services.formats_daemon


@pytest.fixture(scope="module")
def agent() -> Iterator[Daemon]:
    with tempfile.TemporaryDirectory(prefix="imza-portal-pdf-") as tmp:
        daemon = Daemon(home=Path(tmp) / "home", modules=[], env={},
                        answers=DEMO_ANSWERS).start()
        try:
            yield daemon
        finally:
            daemon.stop()


@pytest.fixture
def portal(agent: Daemon) -> Iterator[PortalServer]:
    server = PortalServer(anchors=[agent.home / "demo" / "demo-root-ca.pem"],
                          origin=GOV).start()
    try:
        yield server
    finally:
        server.stop()


def _get(browser: Browser, path: str, *, cookie: bool = True) -> tuple[int, bytes]:
    request = urllib.request.Request(browser.base + path,
                                     headers={"Cookie": browser.cookie} if cookie else {})
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the portal's throwaway certificate
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def _sign_on_server(agent: Daemon, browser: Browser, origin: str = GOV,
                          select: dict[str, Any] | None = None, *,
                          other_hash: bool = False) -> tuple[dict[str, Any], dict[str, Any],
                                                             tuple[int, dict[str, Any]]]:
    """What the page does: select → the server prepares → sign.hash → the server finishes."""
    async with agent.client(origin) as page:
        chosen = await page.call("certificates.select", select or {"purpose": "sign"})
        status, doc = browser.post("/api/pdf/prepare", {
            "certificate": chosen["certificate"], "chain": chosen["chain"],
            "algorithms": chosen["algorithms"]})
        assert status == 200, doc
        digest = (b64(hashlib.sha256(b"another document").digest()) if other_hash
                  else doc["hash"])
        signed = await page.call("sign.hash", {
            "handle": chosen["handle"], "hash": digest, "hashAlgorithm": doc["hashAlgorithm"],
            "scheme": doc["scheme"], "display": {"documentName": doc["documentName"]}},
            timeout=60)
    finished = browser.post("/api/pdf/finish", {
        "documentId": doc["documentId"], "signature": signed["signature"],
        "certificate": signed["certificate"], "scheme": signed["scheme"],
        "hashAlgorithm": signed["hashAlgorithm"]})
    return doc, signed, finished


def _context(anchor: Path) -> ValidationContext:
    root = x509.load_pem_x509_certificate(anchor.read_bytes())
    return ValidationContext(trust_roots=[asn1_x509.Certificate.load(
        root.public_bytes(Encoding.DER))], allow_fetching=False)


def _pdfsig(pdf: bytes, tmp: Path) -> str:
    (tmp / "signed.pdf").write_bytes(pdf)
    done = run_tool(["pdfsig", str(tmp / "signed.pdf")])
    return done.stdout + done.stderr


@pytest.mark.daemon
@pytest.mark.verifiers
async def test_the_third_way_keeps_the_document_on_the_server(
        agent: Daemon, portal: PortalServer, tmp_path: Path) -> None:
    browser = Browser(portal)
    mark = agent.transcript_mark()
    doc, signed, (status, result) = await _sign_on_server(agent, browser)
    # the page got a hash to sign, never the document
    assert set(doc) == {"documentId", "documentName", "level", "hash", "hashAlgorithm",
                        "scheme"}
    assert len(base64.b64decode(doc["hash"])) == 32 and doc["level"] == "B-B"
    pins = [d for d in agent.transcript(mark) if d.get("dialog") == "pin"]
    assert len(pins) == 1 and pins[0]["document_name"] == "arayis.pdf"
    assert status == 200, result
    verification = result["verification"]
    assert verification["ok"] and verification["sameDocument"], verification
    [report] = verification["signatures"]
    assert report["intact"] and report["valid"] and report["trusted"]
    assert report["level"] == "B-B" and "DEMO" in report["signer"]
    assert portal.portal.pdfs == [{"way": "server", "level": "B-B",
                                   "sha256": verification["sha256"], "ok": True}]
    # the signed file: from the server, for this session only
    status, pdf = _get(browser, result["download"])
    assert status == 200 and pdf.startswith(sample_pdf())
    assert hashlib.sha256(pdf).hexdigest() == verification["sha256"]
    assert _get(browser, result["download"], cookie=False)[0] == 404
    assert _get(Browser(portal), result["download"], cookie=False)[0] == 404
    # checked again by tools we did not write
    assert "Signature is Valid." in _pdfsig(pdf, tmp_path)
    [sig] = PdfFileReader(BytesIO(pdf)).embedded_signatures
    status_ = await async_validate_pdf_signature(
        sig, _context(agent.home / "demo" / "demo-root-ca.pem"))
    assert status_.intact and status_.valid and status_.trusted
    assert base64.b64decode(signed["certificate"]) == sig.signer_cert.dump()
    # finishing the same prepared signature again: it was single use
    again = browser.post("/api/pdf/finish", {"documentId": doc["documentId"],
                                             "signature": signed["signature"]})
    assert again[0] == 400 and "already used" in again[1]["error"]


@pytest.mark.daemon
async def test_a_signature_over_another_hash_is_not_finished(agent: Daemon,
                                                              portal: PortalServer) -> None:
    browser = Browser(portal)
    _, _, (status, answer) = await _sign_on_server(agent, browser, other_hash=True)
    assert status == 400 and answer["code"] == "SIGNATURE_MISMATCH", answer
    assert portal.portal.pdfs == []


@pytest.mark.daemon
def test_prepare_refuses_what_is_not_a_certificate(portal: PortalServer) -> None:
    status, answer = Browser(portal).post("/api/pdf/prepare", {"certificate": "bm9wZQ=="})
    assert status == 400 and answer["code"] == "INVALID_CERTIFICATE", answer


@pytest.mark.daemon
@pytest.mark.verifiers
async def test_a_pdf_signed_in_the_browser_is_verified_on_the_server(
        agent: Daemon, portal: PortalServer) -> None:
    """The page's sign.pdf result goes to the server, which says what it found."""
    async with agent.client(GOV) as page:
        chosen = await page.call("certificates.select", {"purpose": "sign"})
        signed = unb64((await page.call("sign.pdf", {
            "handle": chosen["handle"], "pdf": b64(sample_pdf()), "level": "B-B"},
            timeout=60))["pdf"])
        other = unb64((await page.call("sign.pdf", {
            "handle": chosen["handle"], "pdf": b64(sample_pdf().replace(b"DEMO", b"DEMX")),
            "level": "B-B"}, timeout=60))["pdf"])
    browser = Browser(portal)
    status, answer = browser.post("/api/pdf/verify", {"pdf": b64(signed)})
    assert status == 200 and answer["verification"]["ok"], answer
    [report] = answer["verification"]["signatures"]
    assert report["trusted"] and report["intact"] and report["level"] == "B-B"
    # one byte of the page changed after signing
    at = signed.index(b"DEMO)")
    tampered = signed[:at] + b"X" + signed[at + 1:]
    status, answer = browser.post("/api/pdf/verify", {"pdf": b64(tampered)})
    assert status == 200 and not answer["verification"]["ok"]
    assert not answer["verification"]["signatures"][0]["intact"]
    # validly signed, but not the document this portal handed out
    status, answer = browser.post("/api/pdf/verify", {"pdf": b64(other)})
    assert status == 200 and not answer["verification"]["sameDocument"]
    assert not answer["verification"]["ok"]
    # no signature at all
    status, answer = browser.post("/api/pdf/verify", {"pdf": b64(sample_pdf())})
    assert status == 200 and answer["verification"]["signatures"] == []
    assert not answer["verification"]["ok"]
    assert [r["ok"] for r in portal.portal.pdfs] == [True, False, False, False]


@pytest.mark.softhsm
@pytest.mark.daemon
async def test_an_untrusted_signer_is_reported_untrusted(agent: Daemon, softhsm: SoftHsmBed,
                                                         portal: PortalServer) -> None:
    with tempfile.TemporaryDirectory(prefix="imza-portal-hsm-") as tmp:
        hsm = Daemon(home=Path(tmp) / "home", modules=[softhsm.module], env=softhsm.env,
                     answers={"certificate": {"holder": ALIYEV[0]}, "pin": "1234"}).start()
        try:
            browser = Browser(portal)
            _, _, (status, result) = await _sign_on_server(hsm, browser)
        finally:
            hsm.stop()
    assert status == 200, result
    [report] = result["verification"]["signatures"]
    assert report["intact"] and report["valid"] and not report["trusted"]
    assert not result["verification"]["ok"]


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
@pytest.mark.parametrize("level", ["B-T", "B-LT"])
async def test_b_t_and_b_lt_on_the_server(formats_daemon: Daemon, formats_bed: FormatsBed,
                                          tmp_path: Path, level: str) -> None:
    server = PortalServer(anchors=formats_bed.anchors[:1], origin=ORIGIN,
                          tsa_url=formats_bed.services.url("/tsa"), pdf_level=level).start()
    try:
        browser = Browser(server, origin=ORIGIN)
        doc, _, (status, result) = await _sign_on_server(
            formats_daemon, browser, ORIGIN,
            {"purpose": "sign", "filter": {"subjectSerialNumber": formats_bed.serial("rsa")}})
        assert status == 200, result
        got, pdf = _get(browser, result["download"])
    finally:
        server.stop()
    assert doc["level"] == level and result["verification"]["ok"], result
    [report] = result["verification"]["signatures"]
    assert report["level"] == level and report["timestamp"] is not None
    assert report["revocation_checked"] is (level == "B-LT")
    assert got == 200 and "Signature is Valid." in _pdfsig(pdf, tmp_path)
