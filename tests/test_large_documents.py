"""Issue 17, bars 4 and 5: large documents.

sign.pdf and sign.cms take documents up to ``[server] max_document_bytes`` (100 MiB by
default) in one frame of up to ``max_document_frame_bytes``, from an origin holding a grant
only; every other method keeps ``max_frame_bytes``, and an origin without a grant
``max_frame_bytes_ungranted``. A page past a limit it can meet gets TOO_LARGE with the limit
in ``data.limit``, and its connection stays open.

In process (small limits, no daemon): the session's checks. Through a daemon with the
default limits: a 60 MB PDF and 60 MB of CMS content signed and verified, a 101 MiB
document and a 9 MiB agent.info answered TOO_LARGE on a connection that then still serves,
and a site without a grant still closed at 64 KiB. Time and memory are the bench's
(bench/large_documents.py), not asserted here.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Iterator
from io import BytesIO
from typing import Any

import pki_services
import pytest
from daemon import Daemon, b64, unb64
from pki_services import (
    ORIGIN,
    FormatsBed,
    large_documents_daemon,
    select_handle,
    trust_context,
)
from testbed.pdf import classic_pdf

from agent.config import ServerConfig
from agent.protocol import jsonrpc
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params import NoParams, SignPdfParams
from agent.protocol.results import AgentInfoResult, SignPdfResult
from agent.transport.document_frames import decoded_size, prepare_document
from agent.transport.heap import release_free_memory
from agent.transport.session import FrameSession, OversizedFrame, SessionLimits, peek_member

MIB = 1024 * 1024


def large_pdf(size: int, seed: bytes = b"imza") -> bytes:
    """A one-page PDF of about ``size`` bytes: the page's text and an image XObject of
    incompressible bytes, with a correct cross-reference table."""
    content = b"BT /F1 18 Tf 72 720 Td (Boyuk senedd) Tj ET"
    filler = _noise(max(0, size - 1024), seed)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> /XObject << /Im1 6 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /XObject /Subtype /Image /Width %d /Height 1 /ColorSpace /DeviceGray "
        b"/BitsPerComponent 8 /Length %d >>\nstream\n" % (len(filler), len(filler))
        + filler + b"\nendstream",
    ]
    return classic_pdf(objects)


def _noise(size: int, seed: bytes) -> bytes:
    """Deterministic incompressible bytes, quickly (SHAKE-256)."""
    return hashlib.shake_256(seed).digest(size) if size else b""


# --- the defaults, as values -----------------------------------------------------------------

def test_the_default_limits_take_a_100_mb_document_in_one_frame() -> None:
    s = ServerConfig()
    assert s.max_document_bytes == 100 * MIB
    # The document as base64, with the request around it, fits the document frame limit.
    envelope = len(json.dumps({"jsonrpc": "2.0", "id": 2**53 - 1, "method": "sign.pdf",
                               "params": {"handle": "h" * 64, "pdf": "", "level": "B-LTA",
                                          "reason": "r" * 512, "location": "l" * 512}}))
    assert s.max_document_frame_bytes >= 4 * -(-s.max_document_bytes // 3) + envelope
    # Every other method keeps its smaller limit; without a grant, 64 KiB.
    assert s.max_frame_bytes == 8 * MIB
    assert s.max_frame_bytes_ungranted == 64 * 1024
    # One maximal document per site always fits the pending budgets; two at once overall.
    assert s.max_pending_bytes >= 2 * s.max_document_frame_bytes


# --- in process: the session's checks ----------------------------------------------------------

class Page:
    """A FrameSession with agent.info and a sign.pdf that reports the document's size."""

    def __init__(self, limits: SessionLimits, origin: str = "https://portal.example") -> None:
        self.sent: list[dict[str, Any]] = []
        self.documents: list[bytes] = []
        dispatcher = Dispatcher()

        async def info(ctx: CallContext, params: NoParams) -> AgentInfoResult:
            return AgentInfoResult(name="imza-agent", version="0", protocol=1)

        async def sign_pdf(ctx: CallContext, params: SignPdfParams) -> SignPdfResult:
            self.documents.append(params.pdf)
            return SignPdfResult(pdf=params.pdf[:4])

        dispatcher.register("agent.info", NoParams, info)
        dispatcher.register("sign.pdf", SignPdfParams, sign_pdf)

        async def send(text: str) -> None:
            self.sent.append(json.loads(text))

        ctx = CallContext(origin=origin, transport="ws", connection_id="c", send=send)
        self.session = FrameSession(dispatcher, ctx, send, limits, (ConnectionError,))

    async def submit(self, frame: str) -> dict[str, Any]:
        before = len(self.sent)
        await self.session.submit(frame)
        for _ in range(200):
            if len(self.sent) > before:
                return self.sent[-1]
            await asyncio.sleep(0.01)
        raise AssertionError("no answer")


def _limits(granted: bool, **settings: Any) -> SessionLimits:
    values = {"max_frame_bytes": 64 * 1024, "max_frame_bytes_ungranted": 4096,
              "max_document_frame_bytes": 1 * MIB, "max_document_bytes": 512 * 1024,
              **settings}
    return SessionLimits.from_settings(ServerConfig(**values),
                                       lambda origin, ctx: granted, clock=lambda: 0.0)


def _pdf_frame(msg_id: int, document: bytes | str, **params: Any) -> str:
    text = document if isinstance(document, str) else b64(document)
    return json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": "sign.pdf",
                       "params": {"handle": "h1", "level": "B-B", "pdf": text, **params}})


def _info_frame(msg_id: int, pad: int) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": "agent.info",
                       "params": {"pad": "x" * pad}})


def _too_large(answer: dict[str, Any]) -> tuple[int, str, int]:
    error = answer["error"]
    return error["code"], error["data"]["reason"], error["data"]["limit"]


async def test_a_document_frame_past_max_frame_bytes_is_read_and_decoded_once() -> None:
    page = Page(_limits(granted=True))
    assert page.session.frame_limit == 1 * MIB  # the document methods' limit
    document = _noise(400 * 1024, b"doc")
    answer = await page.submit(_pdf_frame(1, document))
    assert answer["id"] == 1 and unb64(answer["result"]["pdf"]) == document[:4]
    assert page.documents == [document]


async def test_a_document_over_max_document_bytes_is_too_large_and_the_page_stays() -> None:
    page = Page(_limits(granted=True))
    answer = await page.submit(_pdf_frame(2, _noise(512 * 1024 + 1, b"big")))
    assert answer["id"] == 2 and _too_large(answer) == (4012, "TOO_LARGE", 512 * 1024)
    assert page.documents == []  # never reached the method
    # Exactly at the limit: accepted; and the same connection goes on.
    answer = await page.submit(_pdf_frame(3, _noise(512 * 1024, b"edge")))
    assert "result" in answer and len(page.documents) == 1


async def test_another_method_past_max_frame_bytes_is_too_large_unparsed() -> None:
    page = Page(_limits(granted=True))
    answer = await page.submit(_info_frame(4, 70 * 1024))
    assert answer["id"] == 4 and _too_large(answer) == (4012, "TOO_LARGE", 64 * 1024)
    # A frame that hides its method behind the document is not taken for a document.
    hidden = json.dumps({"params": {"pdf": "A" * (70 * 1024)}, "jsonrpc": "2.0", "id": 5,
                         "method": "sign.pdf"})
    assert _too_large(await page.submit(hidden))[2] == 64 * 1024
    assert page.documents == []
    plain = json.dumps({"jsonrpc": "2.0", "id": 6, "method": "agent.info"})
    assert (await page.submit(plain))["result"]["protocol"] == 1


async def test_without_a_grant_a_document_frame_is_not_read() -> None:
    page = Page(_limits(granted=False))
    assert page.session.frame_limit == 4096
    with pytest.raises(OversizedFrame):
        await page.session.submit(_pdf_frame(7, _noise(8 * 1024, b"x")))
    assert page.documents == [] and page.sent == []


async def test_malformed_base64_is_still_reported_by_the_params_model() -> None:
    page = Page(_limits(granted=True))
    answer = await page.submit(_pdf_frame(8, "QUJD\nRA=="))
    assert answer["error"]["code"] == jsonrpc.INVALID_PARAMS
    assert page.documents == []


def test_the_decoded_size_comes_from_the_base64_length() -> None:
    for n in range(0, 70):
        assert decoded_size(base64.b64encode(b"\x00" * n).decode()) == n


def test_prepare_document_leaves_other_methods_and_members_alone() -> None:
    request = jsonrpc.Request(1, "sign.hash", {"hash": b64(b"x" * 32)})
    assert prepare_document(request, 1) is None
    assert request.params == {"hash": b64(b"x" * 32)}
    cms = jsonrpc.Request(2, "sign.cms", {"data": b64(b"content"), "hash": None})
    assert prepare_document(cms, 100) is None
    assert cms.params == {"data": b"content", "hash": None}


def test_the_method_is_read_from_the_frame_start_only() -> None:
    assert peek_member('{"jsonrpc":"2.0","id":1,"method":"sign.pdf","params":{}}',
                       "method") == "sign.pdf"
    assert peek_member('{"jsonrpc":"2.0","params":{"pdf":"' + "A" * 600 + '"},'
                       '"method":"sign.pdf"}', "method") is None


def test_free_memory_can_be_returned_here() -> None:
    """glibc's malloc_trim is found on this (Linux, glibc) machine: after a large frame
    the daemon hands its free pages back (bench/large_documents.py measures it)."""
    assert release_free_memory() is True


# --- through a daemon, with the default limits --------------------------------------------------

formats_bed = pki_services.formats_bed


@pytest.fixture(scope="module")
def large_daemon(formats_bed: FormatsBed) -> Iterator[Daemon]:
    """A formats daemon (tests/pki_services.py) with the [server] limits at their defaults
    but the byte rate: the tests send several large documents from one site in a row."""
    with large_documents_daemon(formats_bed, "imza-large-home-") as daemon:
        yield daemon


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
async def test_a_60_mb_pdf_is_signed_through_the_daemon(large_daemon: Daemon,
                                                        formats_bed: FormatsBed) -> None:
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import async_validate_pdf_signature

    original = large_pdf(60 * 1000 * 1000)
    async with large_daemon.client(ORIGIN) as client:
        handle = await select_handle(client, formats_bed.serial("ec"))
        result = await client.call("sign.pdf", {"handle": handle, "level": "B-B",
                                                "pdf": b64(original)}, timeout=300)
        signed = unb64(result["pdf"])
        # The same connection goes on.
        assert (await client.call("agent.info"))["protocol"] == 1
    assert signed[:len(original)] == original  # an incremental update
    [embedded] = PdfFileReader(BytesIO(signed)).embedded_signatures
    status = await async_validate_pdf_signature(embedded, trust_context(formats_bed))
    assert status.intact and status.valid and status.trusted


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
async def test_60_mb_of_cms_content_is_signed_through_the_daemon(
        large_daemon: Daemon, formats_bed: FormatsBed) -> None:
    from asn1crypto import cms

    content = _noise(60 * 1000 * 1000, b"cms")
    async with large_daemon.client(ORIGIN) as client:
        handle = await select_handle(client, formats_bed.serial("ec"))
        result = await client.call("sign.cms", {
            "handle": handle, "data": b64(content), "hashAlgorithm": "SHA-256",
            "level": "B"}, timeout=300)
    info = cms.ContentInfo.load(unb64(result["cms"]))
    [signer] = info["content"]["signer_infos"]
    digests = [a["values"][0].native for a in signer["signed_attrs"]
               if a["type"].native == "message_digest"]
    assert digests == [hashlib.sha256(content).digest()]


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
async def test_past_the_default_limits_too_large_names_the_limit_and_the_page_stays(
        large_daemon: Daemon, formats_bed: FormatsBed) -> None:
    over = 100 * MIB + 3  # the default max_document_bytes, and a little
    async with large_daemon.client(ORIGIN) as client:
        handle = await select_handle(client, formats_bed.serial("ec"))
        error = await client.error("sign.pdf", {"handle": handle, "level": "B-B",
                                                "pdf": "A" * (4 * -(-over // 3))},
                                   timeout=120)
        assert (error.reason, error.data["limit"]) == ("TOO_LARGE", 100 * MIB)
        error = await client.error("agent.info", {"pad": "x" * (9 * MIB)}, timeout=60)
        assert (error.reason, error.data["limit"]) == ("TOO_LARGE", 8 * MIB)
        assert (await client.call("agent.info"))["protocol"] == 1


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
async def test_a_site_without_a_grant_is_still_closed_at_64_kib(large_daemon: Daemon) -> None:
    async with large_daemon.client("https://stranger.example") as page:
        await page.send_raw(_pdf_frame(1, b"A" * 60_000))  # about 80 KB as base64
        code, _ = await page.closed()
    assert code == 1009


def test_the_generated_pdf_is_one_page_of_the_asked_size() -> None:
    from pyhanko.pdf_utils.reader import PdfFileReader

    pdf = large_pdf(2 * MIB)
    assert abs(len(pdf) - 2 * MIB) < 4096
    assert int(PdfFileReader(BytesIO(pdf)).root["/Pages"]["/Count"]) == 1
