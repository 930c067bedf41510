"""sign.pdf through a running agent with SoftHSM keys; checked by poppler's pdfsig (with an
NSS database trusting only the test root) and by pyHanko's validator, per level."""

from __future__ import annotations

import subprocess
from io import BytesIO
from pathlib import Path

import pki_services
import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from daemon import Daemon, b64, unb64
from pki_services import (
    ORIGIN,
    FormatsBed,
    pin_dialogs,
    run_tool,
    select_handle,
)
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature, async_validate_pdf_timestamp
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko_certvalidator import ValidationContext

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
    out = BytesIO()
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
              % (len(objects) + 1, xref))
    return out.getvalue()


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


def _context(bed: FormatsBed, **kwargs: object) -> ValidationContext:
    root, inter = (x509.load_pem_x509_certificate(p.read_bytes()) for p in bed.anchors)
    return ValidationContext(
        trust_roots=[asn1_x509.Certificate.load(root.public_bytes(Encoding.DER))],
        other_certs=[asn1_x509.Certificate.load(inter.public_bytes(Encoding.DER))],
        **kwargs)  # type: ignore[arg-type]


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
    status = await async_validate_pdf_signature(sig, _context(formats_bed))
    assert status.intact and status.valid and status.trusted
    assert status.timestamp_validity is None


async def test_b_t_ec(formats_daemon: Daemon, formats_bed: FormatsBed, tmp_path: Path,
                      nss_db: Path) -> None:
    pdf = await _sign(formats_daemon, formats_bed, "ec", {
        "level": "B-T", "tsaUrl": formats_bed.services.url("/tsa")})
    report = _pdfsig(pdf, tmp_path, nss_db)
    assert "Signature is Valid." in report, report
    [sig] = PdfFileReader(BytesIO(pdf)).embedded_signatures
    status = await async_validate_pdf_signature(sig, _context(formats_bed),
                                                ts_validation_context=_context(formats_bed))
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
        offline = _context(formats_bed, allow_fetching=False, revocation_mode="hard-fail",
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
