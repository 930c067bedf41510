"""Issue 17, bar 4: documents as binary WebSocket frames (``document.upload``), in process.

The frame session of one connection, with small limits and a dispatcher whose sign.pdf and
sign.cms report what they were given: an upload in one frame or several (text frames in
between), named by the signing call in place of the base64 document, answered with
``{"binary": N, "prefix": M}`` and the N bytes in one binary frame right after the text;
and every refusal: no grant, a size over ``max_document_bytes``, more than
``max_pending_uploads`` per connection, the site's and the overall budgets, an unknown, incomplete
or used id, a binary frame nobody announced or past its size, and uploads named on a
transport without binary frames. Through a real daemon and token:
tests/test_document_upload_daemon.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import pytest
from daemon import b64, unb64
from pydantic import ValidationError

from agent.config import ServerConfig
from agent.errors import Unsupported
from agent.methods.document_upload import document_upload
from agent.protocol import jsonrpc
from agent.protocol.catalog import METHODS
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params import SignPdfParams
from agent.protocol.params_cms import SignCmsParams
from agent.protocol.params_upload import DocumentUploadParams, DocumentUploadResult
from agent.protocol.params_verify import SignatureVerifyParams, SignatureVerifyResult
from agent.protocol.results import SignCmsResult, SignPdfResult
from agent.transport.session import FrameSession, SessionLimits, parse_and_validate
from agent.transport.uploads import UPLOAD_METHOD

KIB = 1024
TAIL = b"\n% an incremental update\n"


def noise(size: int, seed: bytes = b"doc") -> bytes:
    return hashlib.shake_256(seed).digest(size)


class Page:
    """One WebSocket connection's frame session; sign.pdf answers the document followed by
    TAIL (an incremental update), sign.cms a CMS that does not begin with the content."""

    def __init__(self, limits: SessionLimits, origin: str = "https://portal.example", *,
                 binary: bool = True) -> None:
        self.frames: list[dict[str, Any] | bytes] = []
        self.documents: list[bytes] = []
        dispatcher = Dispatcher()

        async def sign_pdf(ctx: CallContext, params: SignPdfParams) -> SignPdfResult:
            self.documents.append(params.pdf)
            return SignPdfResult(pdf=params.pdf + TAIL)

        async def sign_cms(ctx: CallContext, params: SignCmsParams) -> SignCmsResult:
            assert params.data is not None
            self.documents.append(params.data)
            return SignCmsResult(cms=b"CMS" + hashlib.sha256(params.data).digest())

        async def verify(ctx: CallContext, params: SignatureVerifyParams
                         ) -> SignatureVerifyResult:
            self.documents.append(params.signature)
            raise AssertionError("never reached in these tests")

        dispatcher.register("sign.pdf", SignPdfParams, sign_pdf)
        dispatcher.register("sign.cms", SignCmsParams, sign_cms)
        dispatcher.register("signature.verify", SignatureVerifyParams, verify)

        async def send(text: str) -> None:
            self.frames.append(json.loads(text))

        async def send_with_binary(text: str, data: memoryview) -> None:
            self.frames.append(json.loads(text))
            self.frames.append(bytes(data))

        ctx = CallContext(origin=origin, transport="ws", connection_id="c", send=send)
        self.session = FrameSession(dispatcher, ctx, send, limits, (ConnectionError,),
                                    send_with_binary=send_with_binary if binary else None)

    async def text(self, message: dict[str, Any]) -> None:
        await self.session.submit(json.dumps({"jsonrpc": "2.0", **message}))

    async def answer(self, msg_id: int) -> dict[str, Any]:
        for _ in range(300):
            for frame in self.frames:
                if isinstance(frame, dict) and frame.get("id") == msg_id:
                    return frame
            await asyncio.sleep(0.01)
        raise AssertionError(f"no answer to {msg_id}")

    async def upload(self, msg_id: int, size: int) -> dict[str, Any]:
        await self.text({"id": msg_id, "method": UPLOAD_METHOD, "params": {"size": size}})
        return await self.answer(msg_id)

    async def upload_id(self, msg_id: int, document: bytes, frames: int = 1) -> str:
        answer = await self.upload(msg_id, len(document))
        upload_id = answer["result"]["upload"]
        step = -(-len(document) // frames)
        for i in range(0, len(document), step):
            assert self.session.receive_binary(document[i:i + step]) is None
        return str(upload_id)

    def binary_after(self, answer: dict[str, Any]) -> bytes:
        """The binary frame sent right after ``answer``."""
        index = next(i for i, f in enumerate(self.frames) if f is answer)
        frame = self.frames[index + 1]
        assert isinstance(frame, bytes)
        return frame


def limits(granted: bool = True, **settings: Any) -> SessionLimits:
    values = {"max_frame_bytes": 64 * KIB, "max_frame_bytes_ungranted": 4 * KIB,
              "max_document_frame_bytes": 1024 * KIB, "max_document_bytes": 512 * KIB,
              "max_pending_bytes_per_site": 64 * KIB, "max_pending_bytes": 2048 * KIB,
              **settings}
    return SessionLimits.from_settings(ServerConfig(**values),
                                       lambda origin, ctx: granted, clock=lambda: 0.0)


def error_of(answer: dict[str, Any]) -> tuple[int, str | None, Any]:
    error = answer["error"]
    return error["code"], error["data"].get("reason"), error["data"].get("limit")


def sign_pdf(msg_id: int, pdf: Any) -> dict[str, Any]:
    return {"id": msg_id, "method": "sign.pdf",
            "params": {"handle": "h1", "level": "B-B", "pdf": pdf}}


# --- the wire models ---------------------------------------------------------------------------

def test_the_method_is_in_the_contract_with_its_models() -> None:
    spec = METHODS[UPLOAD_METHOD]
    assert spec.params is DocumentUploadParams and spec.result is DocumentUploadResult
    assert DocumentUploadParams.model_validate({"size": 5}).size == 5
    for bad in ({"size": 0}, {"size": "5"}, {"size": 1.5}, {}, {"size": 5, "more": 1}):
        with pytest.raises(ValidationError):
            DocumentUploadParams.model_validate(bad, by_alias=True, by_name=False)
    with pytest.raises(ValidationError):
        DocumentUploadResult(upload="u-short")


def test_max_pending_uploads_is_a_setting_of_two_by_default() -> None:
    assert ServerConfig().max_pending_uploads == 2
    assert ServerConfig(max_pending_uploads=5).max_pending_uploads == 5
    for bad in (0, 65):
        with pytest.raises(ValidationError):
            ServerConfig(max_pending_uploads=bad)
    assert SessionLimits.from_settings(ServerConfig(max_pending_uploads=3)) \
        .max_pending_uploads == 3


# --- uploads used by a signing call ------------------------------------------------------------

async def test_an_upload_in_one_frame_is_signed_and_only_the_new_bytes_come_back() -> None:
    page = Page(limits())
    document = noise(300 * KIB)
    upload_id = await page.upload_id(1, document)
    assert upload_id.startswith("u-") and len(upload_id) == 24
    await page.text(sign_pdf(2, {"upload": upload_id}))
    answer = await page.answer(2)
    assert page.documents == [document]
    assert answer["result"]["pdf"] == {"binary": len(TAIL), "prefix": len(document)}
    assert page.binary_after(answer) == TAIL
    # The page puts it together: the first `prefix` bytes of its document, then the frame.
    assert document[:answer["result"]["pdf"]["prefix"]] + TAIL == document + TAIL


async def test_an_upload_in_many_frames_with_text_frames_between() -> None:
    page = Page(limits())
    document = noise(200 * KIB, b"many")
    answer = await page.upload(1, len(document))
    upload_id = answer["result"]["upload"]
    for i in range(0, len(document), 7 * KIB):
        assert page.session.receive_binary(document[i:i + 7 * KIB]) is None
        if i == 14 * KIB:  # a request meanwhile is answered as usual
            await page.text(sign_pdf(2, {"upload": "u-" + "A" * 22}))
            assert error_of(await page.answer(2))[0] == jsonrpc.INVALID_PARAMS
    await page.text(sign_pdf(3, {"upload": upload_id}))
    answer = await page.answer(3)
    assert page.documents == [document]
    assert page.binary_after(answer) == TAIL


async def test_the_bytes_may_follow_the_request_before_its_answer_is_read() -> None:
    """document.upload is answered before the next frame is read: a page may send the
    bytes right behind it."""
    page = Page(limits())
    await page.text({"id": 1, "method": UPLOAD_METHOD, "params": {"size": 3}})
    assert page.session.receive_binary(b"abc") is None
    upload_id = (await page.answer(1))["result"]["upload"]
    await page.text(sign_pdf(2, {"upload": upload_id}))
    await page.answer(2)
    assert page.documents == [b"abc"]


async def test_sign_cms_with_an_upload_gets_the_whole_signature_as_binary() -> None:
    page = Page(limits())
    content = noise(100 * KIB, b"cms")
    upload_id = await page.upload_id(1, content, frames=3)
    await page.text({"id": 2, "method": "sign.cms", "params": {
        "handle": "h1", "hashAlgorithm": "SHA-256", "level": "B",
        "data": {"upload": upload_id}}})
    answer = await page.answer(2)
    expected = b"CMS" + hashlib.sha256(content).digest()
    assert answer["result"]["cms"] == {"binary": len(expected)}  # no prefix: not a prefix
    assert page.binary_after(answer) == expected


async def test_base64_requests_still_get_base64_answers_on_the_same_connection() -> None:
    page = Page(limits())
    await page.upload_id(1, b"held")
    await page.text(sign_pdf(2, b64(b"%PDF-small")))
    answer = await page.answer(2)
    assert unb64(answer["result"]["pdf"]) == b"%PDF-small" + TAIL
    assert all(isinstance(f, dict) for f in page.frames)  # no binary frame at all


# --- ids: unknown, incomplete, used twice -------------------------------------------------------

async def test_an_upload_is_used_once() -> None:
    page = Page(limits())
    upload_id = await page.upload_id(1, b"%PDF-once")
    await page.text(sign_pdf(2, {"upload": upload_id}))
    assert "result" in await page.answer(2)
    await page.text(sign_pdf(3, {"upload": upload_id}))
    code, _, _ = error_of(answer := await page.answer(3))
    assert code == jsonrpc.INVALID_PARAMS and "already used" in answer["error"]["message"]
    assert page.documents == [b"%PDF-once"]


async def test_unknown_incomplete_and_malformed_references_are_invalid_params() -> None:
    page = Page(limits())
    await page.text(sign_pdf(1, {"upload": "u-" + "B" * 22}))
    assert "unknown" in (await page.answer(1))["error"]["message"]
    answer = await page.upload(2, 10)
    upload_id = answer["result"]["upload"]
    assert page.session.receive_binary(b"12345") is None
    await page.text(sign_pdf(3, {"upload": upload_id}))
    assert "not complete" in (await page.answer(3))["error"]["message"]
    await page.text(sign_pdf(4, {"upload": upload_id, "size": 5}))
    assert error_of(await page.answer(4))[0] == jsonrpc.INVALID_PARAMS
    # A page's string is quoted back only when it is an id.
    await page.text(sign_pdf(6, {"upload": "x" * 5000}))
    answer = await page.answer(6)
    assert "not an upload id" in answer["error"]["message"]
    assert "xxx" not in json.dumps(answer)
    # The refusals took nothing: the upload completes and serves once.
    assert page.session.receive_binary(b"67890") is None
    await page.text(sign_pdf(5, {"upload": upload_id}))
    assert "result" in await page.answer(5)
    assert page.documents == [b"1234567890"]


async def test_one_upload_for_two_members_is_refused_and_not_taken() -> None:
    page = Page(limits())
    upload_id = await page.upload_id(1, b"signed file")
    await page.text({"id": 2, "method": "signature.verify", "params": {
        "signature": {"upload": upload_id}, "data": {"upload": upload_id}}})
    assert "used once" in (await page.answer(2))["error"]["message"]
    assert page.documents == []


async def test_an_upload_and_base64_together_count_against_max_document_bytes() -> None:
    page = Page(limits())
    upload_id = await page.upload_id(1, noise(400 * KIB, b"sig"))
    await page.text({"id": 2, "method": "signature.verify", "params": {
        "signature": {"upload": upload_id}, "data": b64(noise(200 * KIB, b"data"))}})
    assert error_of(await page.answer(2)) == (4012, "TOO_LARGE", 512 * KIB)
    assert page.documents == []


# --- what a page may make the daemon hold ------------------------------------------------------

async def test_without_a_grant_no_upload_is_opened_and_its_bytes_close_the_connection() -> None:
    page = Page(limits(granted=False))
    answer = await page.upload(1, 10)
    assert error_of(answer)[:2] == (4003, "PERMISSION_DENIED")
    assert page.session.uploads is not None and page.session.uploads.held == 0
    assert page.session.receive_binary(b"0123456789") == \
        "binary frame without an upload waiting for it"


async def test_a_size_over_max_document_bytes_is_too_large_with_the_limit() -> None:
    page = Page(limits())
    assert error_of(await page.upload(1, 512 * KIB + 1)) == (4012, "TOO_LARGE", 512 * KIB)
    assert error_of(await page.upload(2, 0))[0] == jsonrpc.INVALID_PARAMS
    assert "result" in await page.upload(3, 512 * KIB)  # exactly the limit


async def test_max_pending_uploads_per_connection_is_too_large_with_the_count() -> None:
    page = Page(limits(max_pending_uploads=2))
    first = await page.upload_id(1, b"one")
    await page.upload_id(2, b"two")
    assert error_of(await page.upload(3, 3)) == (4012, "TOO_LARGE", 2)
    # Used and answered, an upload no longer counts.
    await page.text(sign_pdf(4, {"upload": first}))
    await page.answer(4)
    assert "result" in await page.upload(5, 3)
    # Another connection has its own count (the site's budgets are shared).
    other = Page(limits(max_pending_uploads=2))
    assert "result" in await other.upload(1, 3)


async def test_a_sites_uploads_together_fit_one_document_and_the_overall_cap() -> None:
    shared = limits(max_pending_bytes=1000 * KIB)
    page = Page(shared)
    held = await page.upload_id(1, noise(400 * KIB))
    # The site's uploads on all its connections together: at most max_document_bytes
    # (512 KiB here), what one request may carry.
    other = Page(shared, origin="https://other.portal.example")  # the same site
    refused = await other.upload(1, 200 * KIB)
    assert error_of(refused)[:2] == (4013, "RATE_LIMITED")
    assert "this site" in refused["error"]["message"]
    assert "result" in await other.upload(2, 100 * KIB)
    # Overall, uploads count with the requests' frames in max_pending_bytes.
    stranger = Page(shared, origin="https://elsewhere.example")
    assert error_of(await stranger.upload(1, 510 * KIB))[:2] == (4013, "RATE_LIMITED")
    # The request that uses an upload is not held back by it.
    await page.text(sign_pdf(2, {"upload": held}))
    assert "result" in await page.answer(2)
    assert "result" in await stranger.upload(2, 490 * KIB)  # 400 KiB came back
    for each in (page, other, stranger):
        await each.session.close()
    assert shared.pending.total_bytes == 0 and shared.pending.total_requests == 0
    assert shared.site_uploads.held(page.session.site) == 0


async def test_a_binary_frame_nobody_announced_or_past_its_size_is_a_violation() -> None:
    page = Page(limits())
    assert page.session.receive_binary(b"x") == \
        "binary frame without an upload waiting for it"
    await page.upload(1, 4)
    assert page.session.receive_binary(b"12345") == \
        "binary frame past the announced upload size"


def test_upload_timeout_is_a_setting_of_two_minutes_by_default() -> None:
    assert ServerConfig().upload_timeout == 120
    for bad in (0, 0.5, 3601):
        with pytest.raises(ValidationError):
            ServerConfig(upload_timeout=bad)
    assert SessionLimits.from_settings(ServerConfig(upload_timeout=7)).upload_timeout == 7


async def test_an_upload_not_used_in_time_expires_and_gives_its_budgets_back() -> None:
    """``upload_timeout`` counts from the announcement: a complete upload not named by then
    is forgotten (a request naming it later is told so); an incomplete one is the
    connection's end (1008); one a request is using does not expire."""
    clock = [0.0]
    shared = limits(upload_timeout=30, max_pending_bytes=700 * KIB)
    shared.clock = lambda: clock[0]
    page = Page(shared)
    complete = await page.upload_id(1, noise(300 * KIB))
    assert page.session.upload_wait() == 30
    clock[0] = 29.5
    assert page.session.expire_uploads() is None and page.session.uploads is not None
    assert page.session.uploads.held == 1 and page.session.upload_wait() == 0.5
    # Another site cannot book 500 KiB while the upload holds 300 of the overall 700.
    stranger = Page(shared, origin="https://elsewhere.example")
    assert error_of(await stranger.upload(1, 500 * KIB))[:2] == (4013, "RATE_LIMITED")
    clock[0] = 30.0
    assert page.session.expire_uploads() is None  # complete: forgotten quietly
    assert page.session.uploads.held == 0
    assert shared.site_uploads.held(page.session.site) == 0
    assert "result" in await stranger.upload(2, 500 * KIB)  # the 300 KiB came back
    await page.text(sign_pdf(2, {"upload": complete}))
    answer = await page.answer(2)
    assert answer["error"]["code"] == jsonrpc.INVALID_PARAMS
    assert "expired" in answer["error"]["message"] and "30 s" in answer["error"]["message"]
    # Incomplete at its deadline: the connection is closed.
    await page.upload(3, 10)
    assert page.session.receive_binary(b"12345") is None
    clock[0] = 59.9
    assert page.session.expire_uploads() is None
    clock[0] = 60.0
    assert page.session.expire_uploads() == \
        "upload not completed within 30 s of its announcement"
    assert page.session.uploads.held == 0
    # Taken by a request (answered later, e.g. after the PIN dialog): never expires.
    used = await page.upload_id(4, b"%PDF-in use")
    assert page.session.uploads.take(used) == b"%PDF-in use"
    assert page.session.upload_wait() == 30  # nothing left that could expire
    clock[0] = 1000.0
    assert page.session.expire_uploads() is None and page.session.uploads.held == 1
    for each in (page, stranger):
        await each.session.close()
    assert shared.pending.total_bytes == 0


async def test_on_a_transport_without_binary_frames_uploads_are_refused() -> None:
    page = Page(limits(), binary=False)
    await page.text(sign_pdf(1, {"upload": "u-" + "C" * 22}))
    answer = await page.answer(1)
    assert answer["error"]["code"] == jsonrpc.INVALID_PARAMS
    assert "WebSocket" in answer["error"]["message"]
    assert page.session.receive_binary(b"x") is not None


async def test_the_method_itself_answers_only_where_the_transport_did_not() -> None:
    """The extension's transport carries text only: document.upload reaches the method,
    which says to send base64 there."""
    for transport, hint in (("extension", "base64"), ("wss", '"method" before "params"')):
        ctx = CallContext(origin="https://portal.example", transport=transport,  # type: ignore[arg-type]
                          connection_id="c")
        with pytest.raises(Unsupported) as refused:
            await document_upload(ctx, DocumentUploadParams(size=10))
        assert hint in refused.value.message


def test_a_costly_frame_naming_an_upload_is_validated_without_its_bytes() -> None:
    """Frames parsed in the worker are validated there; an upload's reference stands for
    the bytes the worker does not have."""
    frame = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "sign.pdf", "params": {
        "handle": "h1", "level": "B-B", "pdf": {"upload": "u-" + "D" * 22}}})
    message = parse_and_validate(frame)
    assert isinstance(message, jsonrpc.Request)
    assert message.params["pdf"] == {"upload": "u-" + "D" * 22}  # kept for the session
    bad = frame.replace('"B-B"', '"B-X"')
    assert isinstance(parse_and_validate(bad), jsonrpc.ErrorReply)
