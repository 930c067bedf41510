"""sign.pdf through a running agent with SoftHSM keys; checked by poppler's pdfsig (with an
NSS database trusting only the test root) and by pyHanko's validator, per level; the
visible stamp also by rendering the page with poppler."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import pki_services
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from daemon import Daemon, b64, unb64
from PIL import Image, ImageChops
from pki_services import (
    ORIGIN,
    FormatsBed,
    Issued,
    build_formats_token,
    pin_dialogs,
    run_tool,
    select_handle,
    start_formats_daemon,
    trust_context,
)
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields
from pyhanko.sign.validation import async_validate_pdf_signature, async_validate_pdf_timestamp
from pyhanko.sign.validation.dss import DocumentSecurityStore
from testbed.pdf import classic_pdf

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon, pytest.mark.verifiers]

# Fixtures shared by the format tests.
formats_bed = pki_services.formats_bed
formats_daemon = pki_services.formats_daemon


def minimal_pdf(text: str = "Muqavile 117") -> bytes:
    """A one-page PDF written by hand, with a correct cross-reference table."""
    content = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    return classic_pdf(objects)


@pytest.fixture(scope="module")
def nss_db(formats_bed: FormatsBed, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An NSS database trusting the test root, for pdfsig's certificate check."""
    db = tmp_path_factory.mktemp("nss")
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True,
                   capture_output=True)
    subprocess.run(["certutil", "-A", "-d", f"sql:{db}", "-n", "imza-test-root", "-t",
                    "CT,C,C", "-i", str(formats_bed.anchors[0])], check=True,
                   capture_output=True)
    subprocess.run(["certutil", "-A", "-d", f"sql:{db}", "-n", "imza-test-intermediate",
                    "-t", ",,", "-i", str(formats_bed.anchors[1])], check=True,
                   capture_output=True)
    return db


def _pdfsig(pdf: bytes, tmp: Path, nss: Path) -> str:
    path = tmp / "signed.pdf"
    path.write_bytes(pdf)
    done = run_tool(["pdfsig", "-nssdir", f"sql:{nss}", str(path)])
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def _sign(daemon: Daemon, bed: FormatsBed, identity: str, params: dict) -> bytes:
    async with daemon.client(ORIGIN) as client:
        handle = await select_handle(client, bed.serial(identity))
        result = await client.call("sign.pdf", {"handle": handle, "pdf": b64(minimal_pdf()),
                                                **params}, timeout=60)
    return unb64(result["pdf"])


async def test_b_b_with_reason_location_and_field(formats_daemon: Daemon,
                                                  formats_bed: FormatsBed, tmp_path: Path,
                                                  nss_db: Path) -> None:
    mark = formats_daemon.transcript_mark()
    original = minimal_pdf()
    pdf = await _sign(formats_daemon, formats_bed, "rsa", {
        "level": "B-B", "reason": "Təsdiq edirəm", "location": "Bakı",
        "fieldName": "Imza1", "display": {"documentName": "muqavile-117.pdf"}})
    dialogs = pin_dialogs(formats_daemon, mark)
    assert len(dialogs) == 1 and dialogs[0]["document_name"] == "muqavile-117.pdf"
    assert pdf.startswith(original)  # an incremental update
    report = _pdfsig(pdf, tmp_path, nss_db)
    assert "Signature is Valid." in report and "Certificate is Trusted." in report, report
    assert "ETSI.CAdES.detached" in report and "Total document signed" in report, report
    reader = PdfFileReader(BytesIO(pdf))
    [sig] = reader.embedded_signatures
    assert sig.field_name == "Imza1"
    assert sig.sig_object["/Reason"] == "Təsdiq edirəm"
    assert sig.sig_object["/Location"] == "Bakı"
    status = await async_validate_pdf_signature(sig, trust_context(formats_bed))
    assert status.intact and status.valid and status.trusted
    assert status.timestamp_validity is None


async def test_b_t_ec(formats_daemon: Daemon, formats_bed: FormatsBed, tmp_path: Path,
                      nss_db: Path) -> None:
    pdf = await _sign(formats_daemon, formats_bed, "ec", {
        "level": "B-T", "tsaUrl": formats_bed.services.url("/tsa")})
    report = _pdfsig(pdf, tmp_path, nss_db)
    assert "Signature is Valid." in report, report
    [sig] = PdfFileReader(BytesIO(pdf)).embedded_signatures
    status = await async_validate_pdf_signature(sig, trust_context(formats_bed),
                                                ts_validation_context=trust_context(formats_bed))
    assert status.valid and status.trusted
    assert status.timestamp_validity is not None and status.timestamp_validity.trusted


async def test_b_lt_and_b_lta(formats_daemon: Daemon, formats_bed: FormatsBed,
                              tmp_path: Path, nss_db: Path) -> None:
    for level in ("B-LT", "B-LTA"):
        pdf = await _sign(formats_daemon, formats_bed, "rsa", {
            "level": level, "tsaUrl": formats_bed.services.url("/tsa")})
        report = _pdfsig(pdf, tmp_path, nss_db)
        assert "Signature is Valid." in report, report
        reader = PdfFileReader(BytesIO(pdf))
        dss = DocumentSecurityStore.read_dss(reader)
        ocsps = [o.get_object().data for o in dss.ocsps]
        crls = [c.get_object().data for c in dss.crls]
        assert ocsps, level
        # Validation with fetching off and hard-fail succeeds on the DSS contents alone.
        offline = trust_context(formats_bed, allow_fetching=False, revocation_mode="hard-fail",
                           ocsps=ocsps, crls=crls)
        signatures = reader.embedded_signatures
        status = await async_validate_pdf_signature(signatures[0], offline,
                                                    ts_validation_context=offline)
        assert status.valid and status.trusted and status.timestamp_validity is not None
        if level == "B-LTA":
            assert len(signatures) == 2 and signatures[1].sig_object["/Type"] == "/DocTimeStamp"
            ts_status = await async_validate_pdf_timestamp(signatures[1], offline)
            assert ts_status.valid and ts_status.trusted
        else:
            assert len(signatures) == 1


async def test_not_a_pdf_is_refused_without_dialog(formats_daemon: Daemon,
                                                   formats_bed: FormatsBed) -> None:
    mark = formats_daemon.transcript_mark()
    async with formats_daemon.client(ORIGIN) as client:
        handle = await select_handle(client, formats_bed.serial("rsa"))
        error = await client.error("sign.pdf", {"handle": handle, "level": "B-B",
                                                "pdf": b64(b"<html>not a pdf</html>")})
    assert error.reason == "UNSUPPORTED"
    assert pin_dialogs(formats_daemon, mark) == []


async def test_garbage_tsa_is_network(formats_daemon: Daemon, formats_bed: FormatsBed) -> None:
    mark = formats_daemon.transcript_mark()
    async with formats_daemon.client(ORIGIN) as client:
        handle = await select_handle(client, formats_bed.serial("rsa"))
        error = await client.error("sign.pdf", {
            "handle": handle, "level": "B-T", "pdf": b64(minimal_pdf()),
            "tsaUrl": formats_bed.services.url("/tsa-garbage")})
    assert error.reason == "NETWORK"
    assert pin_dialogs(formats_daemon, mark) == []


async def test_b_lt_validation_data_is_gathered_before_the_pin(formats_daemon: Daemon,
                                                               formats_bed: FormatsBed) -> None:
    """The TSA answers, but its own certificate's status cannot be had: B-LT cannot be
    honest, and the user must learn it before typing a PIN, not after."""
    mark = formats_daemon.transcript_mark()
    async with formats_daemon.client(ORIGIN) as client:
        handle = await select_handle(client, formats_bed.serial("rsa"))
        error = await client.error("sign.pdf", {
            "handle": handle, "level": "B-LT", "pdf": b64(minimal_pdf()),
            "tsaUrl": formats_bed.services.url("/tsa-unverifiable")})
        assert (error.reason, error.data.get("service")) == ("NETWORK", "REVOCATION")
        assert pin_dialogs(formats_daemon, mark) == []
        # The same request with a TSA whose status is known signs (one dialog).
        signed = await client.call("sign.pdf", {
            "handle": handle, "level": "B-LT", "pdf": b64(minimal_pdf()),
            "tsaUrl": formats_bed.services.url("/tsa")})
    assert signed["pdf"] and len(pin_dialogs(formats_daemon, mark)) == 1


# --- the visible stamp ----------------------------------------------------------------------

STAMP_HOLDER = "Əliyev Şəbnəm İlqar qızı Жанна"
STAMP_SERIAL = "FMT-stamp"
STAMP_BOX = (300.0, 100.0, 550.5, 180.0)
RENDER_DPI = 50


@pytest.fixture(scope="module")
def stamp_daemon(formats_bed: FormatsBed) -> Iterator[Daemon]:
    """An agent whose token holds a signer named in Azerbaijani and Cyrillic letters,
    issued by the formats PKI (the shared formats token's names are ASCII)."""
    directory = Path(tempfile.mkdtemp(prefix="imza-stamp-"))
    ca = formats_bed.services.pki.intermediate
    key = rsa.generate_private_key(65537, 2048)
    start = datetime.now(UTC) - timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, "AZ"),
            x509.NameAttribute(NameOID.COMMON_NAME, STAMP_HOLDER),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, STAMP_SERIAL)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=True, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca.key, hashes.SHA256()))  # type: ignore[arg-type]
    token = build_formats_token(directory / "softhsm", [Issued("stamp", cert, key,
                                                               STAMP_SERIAL)], label="Stamp")
    daemon = start_formats_daemon(formats_bed, directory / "agent", env=token.env,
                                  revocation="off")
    try:
        yield daemon
    finally:
        code = daemon.stop()
        shutil.rmtree(directory, ignore_errors=True)
    assert code == 0, "the daemon did not stop cleanly"


async def _sign_stamped(daemon: Daemon, pdf: bytes, params: dict) -> bytes:
    async with daemon.client(ORIGIN) as client:
        handle = await select_handle(client, STAMP_SERIAL)
        result = await client.call("sign.pdf", {"handle": handle, "pdf": b64(pdf),
                                                "level": "B-B", **params}, timeout=60)
    return unb64(result["pdf"])


def _render(pdf: bytes, directory: Path, name: str) -> Image.Image:
    source = directory / f"{name}.pdf"
    source.write_bytes(pdf)
    done = run_tool(["pdftoppm", "-r", str(RENDER_DPI), "-png", "-f", "1", "-l", "1",
                     "-singlefile", str(source), str(directory / name)])
    assert done.returncode == 0, done.stderr
    return Image.open(directory / f"{name}.png").convert("RGB")


def _pixel_box(box: tuple[float, ...], page_height: float, grow: int) -> tuple[int, ...]:
    """A PDF box (origin bottom left, points) as image pixels (origin top left)."""
    scale = RENDER_DPI / 72
    x1, y1, x2, y2 = box
    return (int(x1 * scale) - grow, int((page_height - y2) * scale) - grow,
            int(x2 * scale) + 1 + grow, int((page_height - y1) * scale) + 1 + grow)


def _fonts(xobject: Any) -> Iterator[Any]:
    """The fonts an appearance stream and the forms it draws use."""
    resources = xobject.get("/Resources")
    if resources is None:
        return
    resources = resources.get_object()
    for font in resources.get("/Font", {}).values():
        yield font.get_object()
    for inner in resources.get("/XObject", {}).values():
        yield from _fonts(inner.get_object())


async def test_visible_stamp_is_drawn_in_its_box(stamp_daemon: Daemon, formats_bed: FormatsBed,
                                                 tmp_path: Path, nss_db: Path) -> None:
    original = minimal_pdf()
    pdf = await _sign_stamped(stamp_daemon, original, {
        "fieldName": "Imza1", "reason": "Təsdiq edirəm",
        "stamp": {"page": 1, "box": list(STAMP_BOX), "text": "Müqavilə № 117 — şərtlərlə"}})
    assert pdf.startswith(original)
    report = _pdfsig(pdf, tmp_path, nss_db)
    assert "Signature is Valid." in report and "Certificate is Trusted." in report, report

    reader = PdfFileReader(BytesIO(pdf))
    [sig] = reader.embedded_signatures
    assert sig.field_name == "Imza1"
    status = await async_validate_pdf_signature(sig, trust_context(formats_bed))
    assert status.intact and status.valid and status.trusted
    field = sig.sig_field
    widget = field["/Kids"][0].get_object() if "/Kids" in field else field
    rect = [float(v) for v in widget["/Rect"]]
    assert rect == pytest.approx(list(STAMP_BOX))
    assert widget["/P"].get_object() == reader.root["/Pages"]["/Kids"][0].get_object()
    fonts = list(_fonts(widget["/AP"]["/N"].get_object()))
    assert fonts, "the stamp has no font"
    for font in fonts:
        # An embedded font (not a base-14 one) whose widths are in PDF's 1/1000 em: in
        # the font's own units (2048 for DejaVu) the letters are drawn far apart.
        [cid_font] = [f.get_object() for f in font["/DescendantFonts"]]
        assert "/FontFile2" in cid_font["/FontDescriptor"] or \
            "/FontFile3" in cid_font["/FontDescriptor"]
        widths = [w for item in cid_font["/W"] if isinstance(item, list) for w in item]
        assert widths and max(widths) <= 1100, widths

    # Poppler draws the widget: the holder's name, the time and the text, on page 1.
    signed_path = tmp_path / "stamped.pdf"
    signed_path.write_bytes(pdf)
    text = run_tool(["pdftotext", "-f", "1", "-l", "1", "-enc", "UTF-8", str(signed_path),
                     "-"])
    assert text.returncode == 0, text.stderr
    assert STAMP_HOLDER in text.stdout, text.stdout
    assert "Müqavilə № 117 — şərtlərlə" in text.stdout, text.stdout
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}", text.stdout), text.stdout

    # Something was drawn inside the box, and nothing anywhere else.
    before = _render(original, tmp_path, "unsigned")
    after = _render(pdf, tmp_path, "signed")
    assert before.size == after.size
    changed = ImageChops.difference(before, after).convert("L").point(lambda v: 255 if v else 0)
    inside = _pixel_box(STAMP_BOX, 842, grow=0)
    inside_changed = changed.crop(inside).histogram()[255]
    area = (inside[2] - inside[0]) * (inside[3] - inside[1])
    assert inside_changed > area // 20, (inside_changed, area)
    changed.paste(0, _pixel_box(STAMP_BOX, 842, grow=2))
    assert changed.getbbox() is None, f"pixels changed outside the stamp: {changed.getbbox()}"


async def test_stamp_on_last_page_counted_from_the_end(stamp_daemon: Daemon) -> None:
    pdf = await _sign_stamped(stamp_daemon, minimal_pdf(), {
        "stamp": {"page": -1, "box": [36, 36, 236, 96]}})
    reader = PdfFileReader(BytesIO(pdf))
    [sig] = reader.embedded_signatures
    assert sig.field_name == "Signature1"
    field = sig.sig_field
    widget = field["/Kids"][0].get_object() if "/Kids" in field else field
    assert [float(v) for v in widget["/Rect"]] == [36, 36, 236, 96]


async def test_existing_visible_field_gets_the_unicode_appearance(stamp_daemon: Daemon,
                                                                  tmp_path: Path) -> None:
    writer = IncrementalPdfFileWriter(BytesIO(minimal_pdf()))
    fields.append_signature_field(writer, fields.SigFieldSpec("Imza2", box=(50, 50, 250, 110)))
    prepared = BytesIO()
    writer.write(prepared)
    pdf = await _sign_stamped(stamp_daemon, prepared.getvalue(), {"fieldName": "Imza2"})
    [sig] = PdfFileReader(BytesIO(pdf)).embedded_signatures
    assert sig.field_name == "Imza2"
    path = tmp_path / "filled.pdf"
    path.write_bytes(pdf)
    text = run_tool(["pdftotext", "-f", "1", "-l", "1", "-enc", "UTF-8", str(path), "-"])
    assert STAMP_HOLDER in text.stdout, text.stdout + text.stderr


async def test_stamp_refusals_come_before_the_dialog(stamp_daemon: Daemon) -> None:
    signed = await _sign_stamped(stamp_daemon, minimal_pdf(), {"fieldName": "Imza1"})
    mark = stamp_daemon.transcript_mark()
    async with stamp_daemon.client(ORIGIN) as client:
        handle = await select_handle(client, STAMP_SERIAL)
        beyond = await client.error("sign.pdf", {
            "handle": handle, "level": "B-B", "pdf": b64(minimal_pdf()),
            "stamp": {"page": 2, "box": [10, 10, 100, 50]}})
        existing = await client.error("sign.pdf", {
            "handle": handle, "level": "B-B", "pdf": b64(signed), "fieldName": "Imza1",
            "stamp": {"box": [10, 10, 100, 50]}})
    assert beyond.reason == "UNSUPPORTED" and "1 page" in beyond.error["message"]
    assert existing.reason == "UNSUPPORTED" and "Imza1" in existing.error["message"]
    assert pin_dialogs(stamp_daemon, mark) == []


@pytest.mark.parametrize(("stamp", "field"), [
    ({"box": [100, 10, 50, 50]}, "stamp.box"),  # x1 > x2
    ({"box": [10, 50, 100, 50]}, "stamp.box"),  # y1 == y2
    ({"box": [10, 10, 100]}, "stamp.box[3]"),
    ({"box": [10, 10, 100, 50, 60]}, "stamp.box"),
    ({"box": [-1, 10, 100, 50]}, "stamp.box[0]"),
    ({"box": [10, 10, 14401, 50]}, "stamp.box[2]"),
    ({"box": ["10", 10, 100, 50]}, "stamp.box[0]"),
    ({"box": [True, 10, 100, 50]}, "stamp.box[0]"),
    ({"page": 0, "box": [10, 10, 100, 50]}, "stamp.page"),
    ({"page": 1.5, "box": [10, 10, 100, 50]}, "stamp.page"),
    ({"page": 1}, "stamp.box"),
    ({"box": [10, 10, 100, 50], "text": "two\nlines"}, "stamp.text"),
    ({"box": [10, 10, 100, 50], "text": "x" * 257}, "stamp.text"),
    ({"box": [10, 10, 100, 50], "text": "\u202eevil"}, "stamp.text"),
    ({"box": [10, 10, 100, 50], "font": "Courier"}, "stamp.font"),
])
async def test_bad_stamp_params_are_invalid(formats_daemon: Daemon, stamp: dict,
                                            field: str) -> None:
    async with formats_daemon.client(ORIGIN) as client:
        error = await client.error("sign.pdf", {"handle": "h", "level": "B-B",
                                                "pdf": b64(minimal_pdf()), "stamp": stamp})
    assert error.code == -32602, error
    assert [p["field"] for p in error.error["data"]["fields"]] == [field], error.error
