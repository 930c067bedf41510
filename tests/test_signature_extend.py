"""signature.extend through a running agent (SoftHSM signer, loopback TSA/OCSP/CRL): a
PAdES signature raised B-B → B-T → B-LT → B-LTA → a renewed B-LTA, each revision checked
by poppler's pdfsig and pyHanko's validator (offline: fetching off, hard-fail, only what
the document carries); refusals
(no grant, the user cancels, a malformed or tampered signature) leave the daemon
serving."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pki_services
import pytest
from daemon import Daemon, b64, unb64
from pki_services import ORIGIN, FormatsBed, run_tool, select_handle, trust_context
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature, async_validate_pdf_timestamp
from pyhanko.sign.validation.dss import DocumentSecurityStore
from test_formats_pdf import minimal_pdf

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon, pytest.mark.verifiers]

formats_bed = pki_services.formats_bed
# preview_data: test_signature_extend_cms_xml reads the text the extend dialog shows.
ANSWERS = {"consent": "always", "certificate": "first", "extend": "confirm",
           "preview_data": True}


@pytest.fixture(scope="module")
def extend_daemon(formats_bed: FormatsBed) -> Iterator[Daemon]:
    with pki_services.daemon_in_temp_home(
            "imza-extend-home-",
            lambda home: pki_services.start_formats_daemon(formats_bed, home)) as daemon:
        daemon.set_answers({**ANSWERS, "pin": formats_bed.token.pin})
        yield daemon


@pytest.fixture(scope="module")
def nss_db(formats_bed: FormatsBed, tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("nss")
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True,
                   capture_output=True)
    for nick, trust, path in (("root", "CT,C,C", formats_bed.anchors[0]),
                              ("intermediate", ",,", formats_bed.anchors[1])):
        subprocess.run(["certutil", "-A", "-d", f"sql:{db}", "-n", f"imza-test-{nick}",
                        "-t", trust, "-i", str(path)], check=True, capture_output=True)
    return db


def pdfsig_checks(pdf: bytes, tmp: Path, nss: Path, count: int) -> None:
    """pdfsig lists ``count`` signatures, the signer's valid and trusted.  (poppler does
    not verify RFC 3161 document time-stamps: it lists them as of an unknown type;
    pyHanko checks those.)"""
    path = tmp / "extended.pdf"
    path.write_bytes(pdf)
    done = run_tool(["pdfsig", "-nssdir", f"sql:{nss}", str(path)])
    assert done.returncode == 0, done.stdout + done.stderr
    report = done.stdout
    assert report.count("Signature #") == count, report
    first = report.split("Signature #2")[0]
    assert "Signature is Valid." in first and "Certificate is Trusted." in first, report


async def sign_pdf(daemon: Daemon, bed: FormatsBed, level: str) -> bytes:
    async with daemon.client(ORIGIN) as client:
        handle = await select_handle(client, bed.serial("rsa"))
        params: dict[str, Any] = {"handle": handle, "pdf": b64(minimal_pdf()),
                                  "level": level}
        if level != "B-B":
            params["tsaUrl"] = bed.services.url("/tsa")
        result = await client.call("sign.pdf", params, timeout=60)
    return unb64(result["pdf"])


async def extend(daemon: Daemon, bed: FormatsBed, fmt: str, signature: bytes, level: str,
                 **extra: Any) -> bytes:
    async with daemon.client(ORIGIN) as client:
        result = await client.call("signature.extend", {
            "format": fmt, "signature": b64(signature), "level": level,
            "tsaUrl": bed.services.url("/tsa"), **extra}, timeout=90)
    return unb64(result["signature"])


def offline_context(bed: FormatsBed, pdf: bytes) -> Any:
    """What a relying party has years later: the trust root and the document's DSS."""
    dss = DocumentSecurityStore.read_dss(PdfFileReader(BytesIO(pdf)))
    ocsps = [o.get_object().data for o in dss.ocsps]
    crls = [c.get_object().data for c in dss.crls]
    assert ocsps or crls
    return trust_context(bed, allow_fetching=False, revocation_mode="hard-fail",
                         ocsps=ocsps, crls=crls)


def extend_dialogs(daemon: Daemon, since: int) -> list[dict[str, Any]]:
    return [d for d in daemon.transcript(since) if d.get("dialog") == "extend"]


async def test_pdf_b_b_to_t_to_lt_to_lta_and_renewed(extend_daemon: Daemon,
                                                     formats_bed: FormatsBed, tmp_path: Path,
                                                     nss_db: Path) -> None:
    signed = await sign_pdf(extend_daemon, formats_bed, "B-B")
    mark = extend_daemon.transcript_mark()

    # B-T: a document time-stamp over the B-B signature.
    b_t = await extend(extend_daemon, formats_bed, "pdf", signed, "B-T",
                       display={"documentName": "müqavilə.pdf"})
    assert b_t.startswith(signed)  # an incremental update: the signature stays whole
    shown = extend_dialogs(extend_daemon, mark)
    assert [(d["level"], d["format"], d["document_name"]) for d in shown] == [
        ("B-T", "pdf", "müqavilə.pdf")]
    assert shown[0]["origin"] == ORIGIN and shown[0]["previews"][0]["kind"] == "pdf"
    assert shown[0]["signatures"] == 1
    assert not [d for d in extend_daemon.transcript(mark) if d.get("dialog") == "pin"]
    pdfsig_checks(b_t, tmp_path, nss_db, 2)
    sig, doc_ts = PdfFileReader(BytesIO(b_t)).embedded_signatures
    assert doc_ts.sig_object["/Type"] == "/DocTimeStamp"
    online = trust_context(formats_bed)
    status = await async_validate_pdf_signature(sig, online)
    assert status.intact and status.valid and status.trusted
    assert (await async_validate_pdf_timestamp(doc_ts, online)).trusted
    # Asked B-T again: every signature is time-stamped, the document comes back as it is.
    assert await extend(extend_daemon, formats_bed, "pdf", b_t, "B-T") == b_t

    # B-LT: the DSS alone lets both be validated offline.
    b_lt = await extend(extend_daemon, formats_bed, "pdf", b_t, "B-LT")
    assert b_lt.startswith(b_t)
    pdfsig_checks(b_lt, tmp_path, nss_db, 2)
    offline = offline_context(formats_bed, b_lt)
    sig, doc_ts = PdfFileReader(BytesIO(b_lt)).embedded_signatures
    status = await async_validate_pdf_signature(sig, offline)
    assert status.valid and status.trusted
    assert (await async_validate_pdf_timestamp(doc_ts, offline)).trusted

    # B-LTA, then renewed: each adds an archive time-stamp validated offline.
    previous, count = b_lt, 2
    for _round in range(2):
        lta = await extend(extend_daemon, formats_bed, "pdf", previous, "B-LTA")
        assert lta.startswith(previous)
        count += 1
        pdfsig_checks(lta, tmp_path, nss_db, count)
        signatures = PdfFileReader(BytesIO(lta)).embedded_signatures
        assert len(signatures) == count
        offline = offline_context(formats_bed, lta)
        status = await async_validate_pdf_signature(signatures[0], offline)
        assert status.valid and status.trusted
        for stamp in signatures[1:]:
            assert stamp.sig_object["/Type"] == "/DocTimeStamp"
            assert (await async_validate_pdf_timestamp(stamp, offline)).trusted
        previous = lta
    assert len(extend_dialogs(extend_daemon, mark)) == 5


async def test_a_site_without_grant_is_refused_before_any_work(
        extend_daemon: Daemon, formats_bed: FormatsBed) -> None:
    extend_daemon.set_answers({**ANSWERS, "consent": "deny"})
    mark = extend_daemon.transcript_mark()
    asked = len(formats_bed.services.requests)
    try:
        async with extend_daemon.client("https://stranger.example") as client:
            error = await client.error("signature.extend", {
                "format": "pdf", "signature": b64(minimal_pdf()), "level": "B-T",
                "tsaUrl": formats_bed.services.url("/tsa")})
    finally:
        extend_daemon.set_answers({**ANSWERS, "pin": formats_bed.token.pin})
    assert error.reason == "PERMISSION_DENIED"
    assert [d["dialog"] for d in extend_daemon.transcript(mark)] == ["consent"]
    assert formats_bed.services.requests[asked:] == []


async def test_the_user_cancels_and_nothing_is_asked_of_the_services(
        extend_daemon: Daemon, formats_bed: FormatsBed) -> None:
    signed = await sign_pdf(extend_daemon, formats_bed, "B-B")
    extend_daemon.set_answers({**ANSWERS, "extend": "cancel"})
    asked = len(formats_bed.services.requests)
    mark = extend_daemon.transcript_mark()
    try:
        async with extend_daemon.client(ORIGIN) as client:
            error = await client.error("signature.extend", {
                "format": "pdf", "signature": b64(signed), "level": "B-LTA",
                "tsaUrl": formats_bed.services.url("/tsa")})
    finally:
        extend_daemon.set_answers({**ANSWERS, "pin": formats_bed.token.pin})
    assert error.reason == "USER_CANCELLED"
    assert len(extend_dialogs(extend_daemon, mark)) == 1
    assert formats_bed.services.requests[asked:] == []


def tampered(pdf: bytes) -> bytes:
    """The signed PDF with one letter of its signed content changed."""
    at = pdf.index(b"Muqavile 117")
    return pdf[:at] + b"X" + pdf[at + 1:]


async def test_malformed_and_tampered_signatures_are_refused_and_the_daemon_serves(
        extend_daemon: Daemon, formats_bed: FormatsBed) -> None:
    signed = await sign_pdf(extend_daemon, formats_bed, "B-B")
    mark = extend_daemon.transcript_mark()
    asked = len(formats_bed.services.requests)
    cases = [("pdf", b"%PDF-1.7\n garbage \x00\xff" * 20, "could not"),
             ("pdf", minimal_pdf(), "no signature"),
             ("pdf", tampered(signed), "does not match"),
             ("cms", b"\x30\x03\x02\x01\x01 not a CMS", "CMS"),
             ("xml", b"<a>no signature</a>", "no signature")]
    async with extend_daemon.client(ORIGIN) as client:
        for fmt, document, words in cases:
            error = await client.error("signature.extend", {
                "format": fmt, "signature": b64(document),
                "level": "T" if fmt == "cms" else "B-T",
                "tsaUrl": formats_bed.services.url("/tsa")})
            assert error.reason == "UNSUPPORTED", (fmt, error)
            assert words in str(error.error.get("message")), error.error
        info = await client.call("agent.info")
    assert info["version"]
    # Refused before the user was asked, and before any service was.
    assert extend_dialogs(extend_daemon, mark) == []
    assert formats_bed.services.requests[asked:] == []
    # Still serving signatures, and still extending them.
    assert (await extend(extend_daemon, formats_bed, "pdf", signed, "B-T")).startswith(signed)
    verified = extend_daemon.journal_verify()  # extensions are journalled, chain intact
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.mark.parametrize(("fmt", "level"), [("pdf", "LT"), ("cms", "B-T"), ("xml", "T")])
async def test_a_level_of_another_format_is_invalid_params(
        extend_daemon: Daemon, fmt: str, level: str) -> None:
    async with extend_daemon.client(ORIGIN) as client:
        error = await client.error("signature.extend", {
            "format": fmt, "signature": b64(b"abcd"), "level": level})
    assert error.code == -32602
