"""Issue 17, bar 4: documents as binary WebSocket frames, through a real daemon and a
SoftHSM token (in process: tests/test_document_upload.py).

A 25 MB PDF uploaded in 1 MiB frames and signed, its answer put together from the page's
own bytes and the binary frame, then checked by pdfsig and pyHanko; sign.cms of uploaded
content, checked by OpenSSL; the limits with the daemon's defaults; a binary frame
nobody announced, or past its size, closing that connection with 1008 while another page
is still served; an upload left unused past ``upload_timeout``; an origin without a
grant; an upload id used twice or on another connection; and the page SDK
(extension/sdk/imza.js, in Node) signing a PDF and CMS content that it uploads by
itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from io import BytesIO
from itertools import count
from pathlib import Path
from typing import Any

import pki_services
import pytest
from cms_checks import openssl_verify
from daemon import REPO, Daemon, b64
from pki_services import (
    ORIGIN,
    FormatsBed,
    large_documents_daemon,
    run_tool,
    select_handle,
    trust_context,
)
from test_large_documents import large_pdf
from websockets.asyncio.client import ClientConnection, connect

MIB = 1024 * 1024
FRAME = MIB  # bytes per binary frame, as a page might send them
STRANGER = "https://stranger.example"  # well-formed, never granted

formats_bed = pki_services.formats_bed


class RpcFailed(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error)
        self.error = error


class UploadPage:
    """A page on one WebSocket connection that speaks the upload contract: requests and
    their answers in order, and the binary frame that follows an answer naming one."""

    def __init__(self, daemon: Daemon, origin: str) -> None:
        self.daemon, self.origin = daemon, origin
        self.ws: ClientConnection | None = None
        self._ids = count(1)

    async def __aenter__(self) -> UploadPage:
        self.ws = await connect(self.daemon.url("ws"), origin=self.origin, max_size=None,
                                compression=None, open_timeout=10)  # type: ignore[arg-type]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.ws is not None
        await self.ws.close()

    async def answer(self, method: str, params: dict[str, Any],
                     timeout: float = 120) -> tuple[dict[str, Any], bytes | None]:
        """The answer, and the binary frame after it when its result announces one."""
        assert self.ws is not None
        msg_id = next(self._ids)
        await self.ws.send(json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": method,
                                       "params": params}))
        while True:
            frame = await self.ws.recv(decode=False)  # bytes either way
            message = json.loads(frame)
            if message.get("id") == msg_id:
                break
        shape = _binary_shape(message)
        if shape is None or shape["binary"] == 0:
            return message, None
        data = await self.ws.recv(decode=False)
        assert isinstance(data, bytes) and len(data) == shape["binary"]
        return message, data

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        message, _ = await self.answer(method, params or {})
        if "error" in message:
            raise RpcFailed(message["error"])
        return message["result"]

    async def error(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        message, _ = await self.answer(method, params)
        assert "error" in message, message
        return dict(message["error"])

    async def upload(self, document: bytes) -> str:
        result = await self.call("document.upload", {"size": len(document)})
        view = memoryview(document)
        for i in range(0, len(document), FRAME):
            await self.send_binary(view[i:i + FRAME])
        return str(result["upload"])

    async def send_binary(self, data: bytes | memoryview) -> None:
        assert self.ws is not None
        await self.ws.send(data)

    async def closed(self) -> tuple[int | None, str | None]:
        assert self.ws is not None
        await self.ws.wait_closed()
        return self.ws.close_code, self.ws.close_reason


def _binary_shape(message: dict[str, Any]) -> dict[str, int] | None:
    result = message.get("result")
    if isinstance(result, dict):
        for value in result.values():
            if isinstance(value, dict) and "binary" in value:
                return value
    return None


def reassembled(original: bytes, shape: dict[str, int], data: bytes | None) -> bytes:
    """What the SDK does: the first ``prefix`` bytes of the page's own document, then the
    binary frame."""
    return original[:shape.get("prefix", 0)] + (data or b"")


@pytest.fixture(scope="module")
def upload_daemon(formats_bed: FormatsBed) -> Iterator[Daemon]:
    """A formats daemon with the [server] defaults but the byte rate (several documents
    from one site in a row)."""
    with large_documents_daemon(formats_bed, "imza-upload-home-") as daemon:
        yield daemon


pytestmark = [pytest.mark.softhsm, pytest.mark.daemon, pytest.mark.verifiers]


async def test_a_25_mb_pdf_uploaded_is_signed_and_verified_by_pdfsig_and_pyhanko(
        upload_daemon: Daemon, formats_bed: FormatsBed, tmp_path: Path) -> None:
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import async_validate_pdf_signature

    original = large_pdf(25 * 1000 * 1000, b"upload")
    async with UploadPage(upload_daemon, ORIGIN) as page:
        handle = await select_handle(page, formats_bed.serial("ec"))  # and a grant
        assert "document.upload" in (await page.call("agent.info"))["features"]
        upload_id = await page.upload(original)
        answer, data = await page.answer("sign.pdf", {"handle": handle, "level": "B-B",
                                                      "pdf": {"upload": upload_id}})
        shape = answer["result"]["pdf"]
        # An incremental update: the page's bytes are not sent back.
        assert shape["prefix"] == len(original) and data is not None
        assert shape["binary"] == len(data) < 64 * 1024
        assert (await page.call("agent.info"))["protocol"] == 1  # the connection goes on
    signed = reassembled(original, shape, data)
    [embedded] = PdfFileReader(BytesIO(signed)).embedded_signatures
    status = await async_validate_pdf_signature(embedded, trust_context(formats_bed))
    assert status.intact and status.valid and status.trusted
    (tmp_path / "signed.pdf").write_bytes(signed)
    done = run_tool(["pdfsig", "-nocert", str(tmp_path / "signed.pdf")])
    assert "Signature is Valid." in done.stdout, done.stdout + done.stderr


async def test_sign_cms_of_uploaded_content_is_checked_by_openssl(
        upload_daemon: Daemon, formats_bed: FormatsBed, tmp_path: Path) -> None:
    content = hashlib.shake_256(b"cms upload").digest(3 * MIB + 17)
    async with UploadPage(upload_daemon, ORIGIN) as page:
        handle = await select_handle(page, formats_bed.serial("ec"))
        upload_id = await page.upload(content)
        answer, data = await page.answer("sign.cms", {
            "handle": handle, "hashAlgorithm": "SHA-256", "level": "B",
            "data": {"upload": upload_id}})
    assert answer["result"]["cms"] == {"binary": len(data or b"")}
    assert data is not None
    openssl_verify(formats_bed, data, content, tmp_path)


async def test_the_limits_with_the_defaults(upload_daemon: Daemon) -> None:
    async with UploadPage(upload_daemon, ORIGIN) as page:
        await page.call("certificates.select", {"purpose": "sign"})  # and a grant
        over = await page.error("document.upload", {"size": 100 * MIB + 1})
        assert (over["data"]["reason"], over["data"]["limit"]) == ("TOO_LARGE", 100 * MIB)
        first = await page.upload(b"%PDF-one")
        await page.upload(b"%PDF-two")
        third = await page.error("document.upload", {"size": 8})
        assert (third["data"]["reason"], third["data"]["limit"]) == ("TOO_LARGE", 2)
        # A used upload frees its place once answered (here: refused, the handle is bad).
        refused = await page.error("sign.pdf", {"handle": "h-none", "level": "B-B",
                                                "pdf": {"upload": first}})
        assert refused["data"]["reason"] == "INVALID_HANDLE"
        assert "upload" in await page.call("document.upload", {"size": 8})


async def test_a_binary_frame_nobody_announced_closes_only_that_connection(
        upload_daemon: Daemon, formats_bed: FormatsBed) -> None:
    async with UploadPage(upload_daemon, ORIGIN) as bystander, \
            UploadPage(upload_daemon, ORIGIN) as rogue:
        await rogue.send_binary(b"\x00" * 1000)
        code, reason = await rogue.closed()
        assert code == 1008 and reason == "binary frame without an upload waiting for it"
        # The other page goes on, with an upload of its own.
        handle = await select_handle(bystander, formats_bed.serial("ec"))
        document = large_pdf(64 * 1024, b"bystander")
        upload_id = await bystander.upload(document)
        answer, data = await bystander.answer("sign.pdf", {
            "handle": handle, "level": "B-B", "pdf": {"upload": upload_id}})
        assert reassembled(document, answer["result"]["pdf"], data).startswith(document)
    async with UploadPage(upload_daemon, ORIGIN) as rogue:
        await rogue.call("document.upload", {"size": 10})
        await rogue.send_binary(b"0123456789A")  # one byte past the announced size
        code, reason = await rogue.closed()
        assert code == 1008 and reason == "binary frame past the announced upload size"
    async with UploadPage(upload_daemon, ORIGIN) as page:
        assert (await page.call("agent.info"))["protocol"] == 1


async def test_an_upload_left_unused_expires_on_the_daemons_timer(
        formats_bed: FormatsBed) -> None:
    """``[server] upload_timeout``: a page that announces an upload, sends part of it and
    goes quiet has its connection closed by the daemon's own timer (no frame of the page's
    needed); a complete upload not used in time is gone, and the page is told why."""
    config = {"server": {"upload_timeout": 1}}
    with pki_services.bed_daemon(formats_bed, "imza-upload-expiry-", revocation="enforce",
                                 config=config) as daemon:
        async with UploadPage(daemon, ORIGIN) as stalled, UploadPage(daemon, ORIGIN) as slow:
            await stalled.call("certificates.select", {"purpose": "sign"})  # and a grant
            await stalled.call("document.upload", {"size": 10})
            await stalled.send_binary(b"01234")
            code, reason = await stalled.closed()
            assert (code, reason) == (1008, "upload not completed within 1 s of its "
                                            "announcement")
            handle = await select_handle(slow, formats_bed.serial("ec"))
            upload_id = await slow.upload(large_pdf(16 * 1024, b"late"))
            await asyncio.sleep(1.5)
            late = await slow.error("sign.pdf", {"handle": handle, "level": "B-B",
                                                 "pdf": {"upload": upload_id}})
            assert late["data"]["reason"] == "INVALID_PARAMS"
            assert "expired" in late["message"], late
            # The connection goes on, and a fresh upload used at once is signed.
            document = large_pdf(16 * 1024, b"on time")
            fresh = await slow.upload(document)
            answer, data = await slow.answer("sign.pdf", {
                "handle": handle, "level": "B-B", "pdf": {"upload": fresh}})
            assert reassembled(document, answer["result"]["pdf"], data).startswith(document)


async def test_an_origin_without_a_grant_cannot_upload(upload_daemon: Daemon) -> None:
    async with UploadPage(upload_daemon, STRANGER) as page:
        error = await page.error("document.upload", {"size": 10})
        assert error["data"]["reason"] == "PERMISSION_DENIED"
        await page.send_binary(b"0123456789")  # nothing is waiting for them
        code, _ = await page.closed()
        assert code == 1008


async def test_an_upload_id_is_used_once_and_on_its_connection_only(
        upload_daemon: Daemon, formats_bed: FormatsBed) -> None:
    document = large_pdf(32 * 1024, b"twice")
    async with UploadPage(upload_daemon, ORIGIN) as page, \
            UploadPage(upload_daemon, ORIGIN) as other:
        handle = await select_handle(page, formats_bed.serial("ec"))
        upload_id = await page.upload(document)
        elsewhere = await other.error("sign.pdf", {"handle": handle, "level": "B-B",
                                                   "pdf": {"upload": upload_id}})
        assert elsewhere["data"]["reason"] == "INVALID_PARAMS"
        assert "unknown on this connection" in elsewhere["message"]
        params = {"handle": handle, "level": "B-B", "pdf": {"upload": upload_id}}
        assert "pdf" in await page.call("sign.pdf", params)
        again = await page.error("sign.pdf", params)
        assert again["data"]["reason"] == "INVALID_PARAMS"
        assert "already used" in again["message"]
        # The same connection still takes base64.
        signed = await page.call("sign.pdf", {"handle": handle, "level": "B-B",
                                              "pdf": b64(document)})
        assert isinstance(signed["pdf"], str)


async def test_the_page_sdk_uploads_by_itself_and_hands_back_whole_documents(
        upload_daemon: Daemon, formats_bed: FormatsBed, tmp_path: Path) -> None:
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import async_validate_pdf_signature

    node = shutil.which("node")
    ws_module = REPO / "tests" / "e2e" / "node_modules" / "ws" / "wrapper.mjs"
    assert node is not None, "node is needed to run the page SDK: apt-get install nodejs"
    assert ws_module.is_file(), "ws is required: (cd tests/e2e && npm ci)"
    original = large_pdf(6 * 1000 * 1000, b"sdk")  # over the SDK's 1 MiB threshold
    content = hashlib.shake_256(b"sdk cms").digest(2 * MIB)
    (tmp_path / "in.pdf").write_bytes(original)
    (tmp_path / "content.bin").write_bytes(content)
    plan = {"url": upload_daemon.url("ws"), "origin": ORIGIN,
            "serial": formats_bed.serial("ec"), "pdf": str(tmp_path / "in.pdf"),
            "content": str(tmp_path / "content.bin"), "out": str(tmp_path)}
    done = subprocess.run(
        [node, str(REPO / "tests" / "test_document_upload_sdk.mjs"),
         (REPO / "extension" / "sdk" / "imza.js").as_uri(), ws_module.as_uri(),
         json.dumps(plan)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "error" not in result, result
    # Both documents went up as binary frames, and something came back as one.
    assert result["sent"]["binaryBytes"] == len(original) + len(content), result
    assert result["received"]["binary"] == 2, result
    signed = (tmp_path / "signed.pdf").read_bytes()
    assert signed.startswith(original) and len(signed) > len(original)
    [embedded] = PdfFileReader(BytesIO(signed)).embedded_signatures
    status = await async_validate_pdf_signature(embedded, trust_context(formats_bed))
    assert status.intact and status.valid and status.trusted
    openssl_verify(formats_bed, (tmp_path / "signature.der").read_bytes(), content, tmp_path)
