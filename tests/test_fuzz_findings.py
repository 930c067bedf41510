"""What the fuzzers found, each as the smallest input that shows it.

Malformed documents on which a format library raises something the builder does not
turn into an agent error: the document worker then answers INTERNAL ("the signature
could not be built"), where a document the agent cannot read is UNSUPPORTED
(docs/protocol.md).  No death and no hang: the worker catches everything; but the page
is told the agent broke, and the daemon logs a traceback per hostile document.  Found by
tests/fuzz/fuzz_pdf.py and tests/fuzz/fuzz_xml.py (``IMZA_FUZZ_SURVEY=FILE`` lists every
kind a run meets).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import make_bench
from fuzz.documents import ReachedTheKey, stopping_job
from fuzz.frames import minimal_pdf

from agent.errors import AgentError, TooLarge, Unsupported
from agent.formats.pades import Stamp, build_pades_here
from agent.formats.xades import build_xades_here
from agent.methods import register_all
from agent.protocol.dispatch import CallContext, Dispatcher


@pytest.fixture(autouse=True)
def _quiet_libraries() -> Iterator[None]:
    logging.disable(logging.CRITICAL)
    yield
    logging.disable(logging.NOTSET)


PDFS = {
    # an xref stream whose /Type is not /XRef: AssertionError in pyHanko's reader
    "xref-stream-type": minimal_pdf(2, xref_stream=True).replace(b"/XRef", b"/XRaf"),
    # /Root names an integer, not a catalog: AssertionError in ``writer.root``
    "root-not-a-dictionary": minimal_pdf(1).replace(
        b"<< /Type /Catalog /Pages 2 0 R >>", b"42".ljust(33)),
    # /Pages names an integer: AssertionError walking the page tree
    "pages-not-a-dictionary": minimal_pdf(1).replace(b"/Pages 2 0 R", b"/Pages 3    "),
    # /Kids is a number: TypeError while the signature field is placed
    "kids-not-an-array": minimal_pdf(1).replace(b"/Kids [3 0 R]", b"/Kids 3     "),
    # /Count is a name: TypeError comparing it with a page index
    "count-not-a-number": minimal_pdf(1).replace(b"/Count 1", b"/Count /A"),
    # pyHanko raises these while it prepares the signature (before the key is asked for,
    # so before the PIN):
    # a /Pages node without /Kids, or without /Count: KeyError
    "pages-without-kids": minimal_pdf(1).replace(b"/Kids [3 0 R]", b"/Kidz [3 0 R]"),
    "pages-without-count": minimal_pdf(1).replace(b"/Count 1", b"/Cound 1"),
    # an empty /Kids: PdfError("Page not found"), pyHanko's own, but not mapped either
    "no-pages": minimal_pdf(1).replace(b"/Kids [3 0 R]", b"/Kids []     "),
    # a number that is not one ("8.4."): decimal.InvalidOperation, an ArithmeticError
    "malformed-number": minimal_pdf(1).replace(b"842]", b"8.4.]"),
    # an xref stream with two /W widths instead of three: IndexError in the reader
    "xref-stream-short-w": minimal_pdf(1, xref_stream=True).replace(b"/W [1 2 1]",
                                                                    b"/W [1 2]  "),
}


@pytest.mark.parametrize("name", PDFS)
def test_malformed_pdf_is_refused_as_unsupported(name: str) -> None:
    job = stopping_job()
    with pytest.raises(AgentError) as refused:
        asyncio.run(build_pades_here(job, PDFS[name], "B-B", reason=None, location=None,
                                     field_name=None, stamp=None))
    assert isinstance(refused.value, Unsupported | TooLarge), repr(refused.value)


def test_malformed_pdf_with_a_stamp_is_refused_too() -> None:
    job = stopping_job()
    with pytest.raises((Unsupported, TooLarge)):
        asyncio.run(build_pades_here(job, PDFS["xref-stream-type"], "B-B", reason=None,
                                     location=None, field_name=None,
                                     stamp=Stamp(page=1, box=(1, 1, 20, 20))))


def test_well_formed_pdf_reaches_the_key() -> None:
    """The control: the same builder with an intact document gets as far as the key."""
    with pytest.raises(ReachedTheKey):
        asyncio.run(build_pades_here(stopping_job(), minimal_pdf(2), "B-B", reason=None,
                                     location=None, field_name=None, stamp=None))


@pytest.mark.parametrize("mode", ["enveloped", "detached"])
def test_relative_namespace_uri_is_refused_as_unsupported(mode: str) -> None:
    # lxml's exclusive canonicalisation refuses a relative namespace URI with C14NError.
    with pytest.raises(AgentError) as refused:
        asyncio.run(build_xades_here(stopping_job(), b'<r xmlns="a"/>', "B-B", mode))
    assert isinstance(refused.value, Unsupported), repr(refused.value)


def test_absolute_namespace_uri_reaches_the_key() -> None:
    with pytest.raises(ReachedTheKey):
        asyncio.run(build_xades_here(stopping_job(), b'<r xmlns="urn:x"/>', "B-B",
                                     "enveloped"))


@pytest.mark.parametrize("name", ["xref-stream-type", "pages-without-kids"])
async def test_the_page_is_told_unsupported_not_internal(name: str, tmp_path: Path) -> None:
    """The same through the dispatcher and a document worker, as a page sees it."""
    bench = make_bench(tmp_path)
    bench.issue("signer")
    bench.answers.set(consent="always", certificate="first", pin="1234")
    dispatcher = Dispatcher()
    register_all(dispatcher, bench.services)
    ctx = CallContext(origin="https://portal.example.az", transport="wss", connection_id="c")

    async def call(method: str, params: dict[str, Any]) -> dict[str, Any]:
        frame = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        reply = await dispatcher.handle_frame(ctx, frame)
        assert reply is not None
        answer: dict[str, Any] = json.loads(reply)
        return answer

    handle = (await call("certificates.select", {"purpose": "sign"}))["result"]["handle"]
    pdf = base64.b64encode(PDFS[name]).decode()
    answer = await call("sign.pdf", {"handle": handle, "pdf": pdf, "level": "B-B"})
    assert answer.get("error", {}).get("data", {}).get("reason") == "UNSUPPORTED", answer
