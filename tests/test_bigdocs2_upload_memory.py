"""Through a real daemon: the upload path's answer is the update after the page's own
bytes, and the daemon gives back the memory of uploaded documents (issue 17 bar 5) —
the parts it keeps instead of a joined copy are let go once the answer is sent (a task
started during the request, such as the next spare worker's, must not keep them); the
base64 path still answers with the whole signed PDF, which pdfsig verifies."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pki_services
import pytest
from daemon import Daemon, b64, unb64
from pki_services import (
    ORIGIN,
    FormatsBed,
    large_documents_daemon,
    run_tool,
    select_handle,
)
from test_docpath_memory import GIVEN_BACK_WITHIN, _settled_rss, rss_bytes
from test_document_upload_daemon import UploadPage, reassembled
from test_large_documents import large_pdf

MIB = 1024 * 1024
DOCUMENT_BYTES = 30 * 1000 * 1000
DOCUMENTS = 3

formats_bed = pki_services.formats_bed

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon, pytest.mark.verifiers]


@pytest.fixture(scope="module")
def bigdocs_daemon(formats_bed: FormatsBed) -> Iterator[Daemon]:
    """Default [server] limits but the byte rate; revocation off (the document path is
    what is looked at)."""
    with large_documents_daemon(formats_bed, "imza-bigdocs2-", revocation="off") as daemon:
        yield daemon


async def _sign_uploaded(page: UploadPage, handle: str, pdf: bytes) -> bytes:
    upload_id = await page.upload(pdf)
    answer, data = await page.answer("sign.pdf", {"handle": handle, "level": "B-B",
                                                  "pdf": {"upload": upload_id}}, timeout=300)
    shape = answer["result"]["pdf"]
    assert shape["prefix"] == len(pdf) and data is not None
    assert shape["binary"] == len(data) < 64 * 1024  # the update alone
    return reassembled(pdf, shape, data)


async def test_the_daemon_gives_back_the_memory_of_uploaded_documents(
        bigdocs_daemon: Daemon, formats_bed: FormatsBed) -> None:
    assert bigdocs_daemon.process is not None
    pid = bigdocs_daemon.process.pid
    async with UploadPage(bigdocs_daemon, ORIGIN) as page:
        handle = await select_handle(page, formats_bed.serial("ec"))
        await _sign_uploaded(page, handle, large_pdf(2 * MIB))
    await asyncio.sleep(1.0)
    idle = rss_bytes(pid)
    async with UploadPage(bigdocs_daemon, ORIGIN) as page:
        handle = await select_handle(page, formats_bed.serial("ec"))
        for n in range(DOCUMENTS):
            pdf = large_pdf(DOCUMENT_BYTES, b"bigdocs2-%d" % n)
            signed = await _sign_uploaded(page, handle, pdf)
            assert signed.startswith(pdf) and signed.rstrip().endswith(b"%%EOF")
            del pdf, signed
    after = await _settled_rss(pid, idle + GIVEN_BACK_WITHIN)
    assert after - idle <= GIVEN_BACK_WITHIN, (
        f"daemon RSS {idle / MIB:.1f} MiB idle, {after / MIB:.1f} MiB after "
        f"{DOCUMENTS} uploaded documents of {DOCUMENT_BYTES / 1e6:.0f} MB")


async def test_the_base64_path_still_answers_with_the_whole_signed_pdf(
        bigdocs_daemon: Daemon, formats_bed: FormatsBed, tmp_path: Path) -> None:
    pdf = large_pdf(3 * MIB, b"bigdocs2-base64")
    async with bigdocs_daemon.client(ORIGIN) as client:
        handle = await select_handle(client, formats_bed.serial("ec"))
        result = await client.call("sign.pdf", {"handle": handle, "level": "B-B",
                                                "pdf": b64(pdf)}, timeout=300)
    signed = unb64(result["pdf"])
    assert signed.startswith(pdf) and len(signed) > len(pdf)
    (tmp_path / "signed.pdf").write_bytes(signed)
    done = run_tool(["pdfsig", "-nocert", str(tmp_path / "signed.pdf")])
    assert "Signature is Valid." in done.stdout, done.stdout + done.stderr
