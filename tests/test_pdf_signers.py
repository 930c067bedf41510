"""Two people sign one PDF: the second ``sign.pdf`` is an incremental update of the first
signer's output, and both signatures stay valid.  Checked by poppler's pdfsig and by
pyHanko's validator (coverage and the modification analysis of the first signature)."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pki_services
import pytest
from daemon import Daemon, b64, unb64
from pki_services import ORIGIN, FormatsBed, pin_dialogs, select_handle, trust_context
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from test_formats_pdf import _pdfsig, minimal_pdf, nss_db

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon, pytest.mark.verifiers]

formats_bed = pki_services.formats_bed
formats_daemon = pki_services.formats_daemon
__all__ = ["nss_db"]  # a fixture, used by name


async def _sign(daemon: Daemon, bed: FormatsBed, identity: str, pdf: bytes,
                params: dict[str, object]) -> bytes:
    async with daemon.client(ORIGIN) as client:
        handle = await select_handle(client, bed.serial(identity))
        result = await client.call("sign.pdf", {"handle": handle, "pdf": b64(pdf), **params},
                                   timeout=60)
    return unb64(result["pdf"])


async def test_a_second_signer_keeps_the_first_signature_valid(
        formats_daemon: Daemon, formats_bed: FormatsBed, tmp_path: Path,
        nss_db: Path) -> None:
    original = minimal_pdf("Muqavile 118")
    mark = formats_daemon.transcript_mark()
    first = await _sign(formats_daemon, formats_bed, "rsa", original,
                        {"level": "B-B", "fieldName": "Satici"})
    second = await _sign(formats_daemon, formats_bed, "ec", first,
                         {"level": "B-T", "fieldName": "Alici",
                          "tsaUrl": formats_bed.services.url("/tsa")})
    assert len(pin_dialogs(formats_daemon, mark)) == 2  # one dialog per signer
    assert second.startswith(first) and first.startswith(original)  # incremental updates

    report = _pdfsig(second, tmp_path, nss_db)
    assert report.count("Signature is Valid.") == 2, report
    assert report.count("Certificate is Trusted.") == 2, report
    # Only the last signature covers the whole file; the first covers its own revision.
    assert report.count("Total document signed") == 1, report

    signatures = PdfFileReader(BytesIO(second)).embedded_signatures
    assert [s.field_name for s in signatures] == ["Satici", "Alici"]
    context = trust_context(formats_bed)
    older = await async_validate_pdf_signature(signatures[0], context)
    newer = await async_validate_pdf_signature(signatures[1], context,
                                               ts_validation_context=context)
    for status in (older, newer):
        assert status.intact and status.valid and status.trusted, status.pretty_print_details()
    assert older.coverage is SignatureCoverageLevel.ENTIRE_REVISION
    assert newer.coverage is SignatureCoverageLevel.ENTIRE_FILE
    # What came after the first signature is one more signature, nothing else.
    assert older.modification_level is not None
    assert older.modification_level <= ModificationLevel.FORM_FILLING
    signers = {s.signer_cert.serial_number for s in signatures}
    assert signers == {formats_bed.identities["rsa"].cert.serial_number,
                       formats_bed.identities["ec"].cert.serial_number}
