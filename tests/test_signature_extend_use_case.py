"""signature.extend's use case in-process (tests/fakes.py, the scripted UI, a real document
worker): permission before anything, the document read before the dialog, one dialog
with what the page sent, the dialog's answer, and what the journal keeps."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pki_services
import pytest
from fakes import Page, make_bench, watch_dialogs
from pki_services import FormatsBed
from test_cli_extend import pyhanko_signed_pdf

from agent.app.dialogs import PreviewKind
from agent.config import FormatsConfig
from agent.methods import signature_extend

formats_bed = pki_services.formats_bed

PDF_WITHOUT_SIGNATURE = (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
                         b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
                         b"trailer << /Root 1 0 R >>\n%%EOF\n")


def page_with_extend(tmp_path: Path, **bench_options: object) -> Page:
    page = Page(make_bench(tmp_path, **bench_options))  # type: ignore[arg-type]
    if "signature.extend" not in page.dispatcher.methods:  # until register_all lists it
        signature_extend.register(page.dispatcher, page.bench.services)
    return page


def params(document: bytes, fmt: str = "pdf", level: str = "B-T") -> dict[str, object]:
    import base64

    return {"format": fmt, "signature": base64.b64encode(document).decode(), "level": level,
            "display": {"documentName": "ərizə     №117.pdf"}}


async def test_nobody_to_ask_is_permission_denied_and_nothing_is_read(tmp_path: Path) -> None:
    page = page_with_extend(tmp_path, interactive=False)
    answer = await page.call("signature.extend", params(b"not even a PDF"))
    assert answer["error"]["data"]["reason"] == "PERMISSION_DENIED"
    assert page.bench.answers.shown() == []
    assert page.bench.journal.lines == []
    assert sum(page.bench.core.unjournaled.values()) == 1


async def test_a_document_without_signature_is_refused_before_the_dialog(
        tmp_path: Path) -> None:
    page = page_with_extend(tmp_path)
    page.bench.answers.set(consent="once", extend="confirm")
    watching = watch_dialogs(page.bench)
    answer = await page.call("signature.extend", params(PDF_WITHOUT_SIGNATURE))
    assert answer["error"]["data"]["reason"] == "UNSUPPORTED"
    assert watching.extend_requests == []
    assert [d["dialog"] for d in page.bench.answers.shown()] == ["consent"]


@pytest.mark.parametrize("fmt", ["cms", "xml"])
async def test_other_formats_are_read_before_the_dialog_too(tmp_path: Path, fmt: str) -> None:
    page = page_with_extend(tmp_path)
    page.bench.answers.set(consent="once", extend="confirm")
    level = "T" if fmt == "cms" else "B-T"
    answer = await page.call("signature.extend", params(b"<a/>" if fmt == "xml" else b"0\x00",
                                                        fmt, level))
    assert answer["error"]["data"]["reason"] == "UNSUPPORTED"
    assert [d["dialog"] for d in page.bench.answers.shown()] == ["consent"]


@pytest.mark.softhsm
@pytest.mark.verifiers
def test_one_dialog_shows_what_the_page_sent_and_a_cancel_is_journalled(
        tmp_path: Path, formats_bed: FormatsBed) -> None:
    import asyncio

    signed = pyhanko_signed_pdf(formats_bed)  # pyHanko's own event loop: outside ours
    asyncio.run(_cancelled(tmp_path, signed))


async def _cancelled(tmp_path: Path, signed: bytes) -> None:
    page = page_with_extend(tmp_path)
    # A TSA of the administrator's, never reached: the user says no first.
    page.bench.services.formats_config = FormatsConfig(tsa_url="http://127.0.0.1:9/tsa")
    page.bench.answers.set(consent="once", extend="cancel")
    watching = watch_dialogs(page.bench)
    answer = await page.call("signature.extend", params(signed, level="B-LTA"))
    assert answer["error"]["data"]["reason"] == "USER_CANCELLED"
    [request] = watching.extend_requests
    assert (request.origin, request.format, request.level, request.signatures) == (
        page.ctx.origin, "pdf", "B-LTA", 1)
    assert request.document_name == "ərizə №117.pdf"  # one line, spaces collapsed
    [preview] = request.previews
    assert preview.kind is PreviewKind.PDF and preview.data == signed
    assert preview.name == "ərizə №117.pdf"
    [line] = page.bench.journal.lines
    assert (line["method"], line["result"], line["certificate_sha256"]) == (
        "signature.extend", "USER_CANCELLED", None)
    assert line["digest_hex"] == hashlib.sha256(signed).hexdigest()
