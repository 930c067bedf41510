"""A PAdES result kept as (the document, the update) from pyHanko to the transport:
the worker writes the update after the document it read (``UpdateStream``), the daemon
does not join the two for a request that uploaded its document, and the binary answer
takes the update as it is; everyone else still gets the whole signed PDF."""

from __future__ import annotations

import contextvars
import gc
import os
import tracemalloc
from typing import Any

import pytest
from test_document_worker import SoftSigner, _assert_signed, pdf_args
from test_large_documents import large_pdf

from agent.document_tail import Appended, allow_appended, joined, may_append
from agent.formats import worker_wire
from agent.formats.isolation import DocumentWorkers, WorkerLimits
from agent.formats.update_stream import UpdateStream
from agent.formats.worker_payload import OUT_OF_BAND_BYTES, appended_prefix, joined_result
from agent.protocol import jsonrpc
from agent.protocol.results import SignPdfResult
from agent.transport.uploads import BinaryAnswer

MIB = 1024 * 1024


# --- the stream pyHanko writes its update into --------------------------------------------------

def test_the_stream_reads_the_document_then_what_was_written_after_it() -> None:
    document = os.urandom(10_000)
    stream = UpdateStream(document)
    assert stream.seek(0, os.SEEK_END) == len(document)
    assert stream.write(b"UPDATE") == 6
    stream.seek(len(document) + 2)
    stream.write(b"xx")  # pyHanko fills the signature in place, inside its update
    stream.seek(len(document) - 4)
    assert stream.read(10) == document[-4:] + b"UPxxTE"
    buffer = bytearray(20)
    stream.seek(len(document) - 10)
    assert stream.readinto(buffer) == 16
    assert bytes(buffer[:16]) == document[-10:] + b"UPxxTE"
    stream.seek(0)
    assert stream.read() == document + b"UPxxTE"
    with allow_appended(document):
        parts = stream.appended()
    assert isinstance(parts, Appended) and parts.document is document
    assert parts == b"UPxxTE" and parts.whole() == document + b"UPxxTE"
    # Without the caller's leave, the whole document.
    whole = stream.appended()
    assert type(whole) is bytes and whole == document + b"UPxxTE"


def test_the_stream_refuses_to_rewrite_the_document() -> None:
    stream = UpdateStream(b"%PDF-1.7 original")
    stream.seek(3)
    with pytest.raises(OSError):
        stream.write(b"x")


def test_appended_stays_itself_through_a_result_model() -> None:
    document = os.urandom(1000)
    parts = Appended(b"tail", document)
    result = SignPdfResult(pdf=parts)
    assert result.pdf is parts  # bytes(value) in the binary field keeps the object
    assert joined(parts) == document + b"tail" and joined(b"plain") == b"plain"
    assert parts.total == len(document) + 4


def test_leave_to_append_is_for_that_very_object_and_that_block() -> None:
    document = os.urandom(100)
    equal = bytes(bytearray(document))
    with allow_appended(document):
        assert may_append(document) and not may_append(equal)
        inherited = contextvars.copy_context()  # what a task started here keeps
        assert inherited.run(may_append, document)
    assert not may_append(document)
    # The block is over: a context copied inside it (a spare worker's start task lives
    # on after the request) no longer allows, nor holds, the document.
    assert not inherited.run(may_append, document)
    holders = [r for r in gc.get_referrers(document) if isinstance(r, tuple)]
    assert holders == []


# --- the daemon's side of the worker's answer ---------------------------------------------------

def test_the_daemon_keeps_the_parts_only_where_allowed_and_still_checks_the_claim() -> None:
    pdf = os.urandom(OUT_OF_BAND_BYTES)
    answer = {"type": "done", "bytes": 3, "prefix": {"argument": "pdf", "bytes": len(pdf)}}
    with allow_appended(pdf):
        parts = joined_result(answer, {"pdf": pdf}, b"abc")
        assert isinstance(parts, Appended) and parts.document is pdf and parts == b"abc"
        with pytest.raises(worker_wire.FrameError):  # the claim is checked all the same
            joined_result({"type": "done", "prefix": {"argument": "pdf",
                                                      "bytes": len(pdf) - 1}},
                          {"pdf": pdf}, b"abc")
    whole = joined_result(answer, {"pdf": pdf}, b"abc")
    assert type(whole) is bytes and whole == pdf + b"abc"
    # Another document of the same bytes is not the one allowed: joined.
    with allow_appended(bytes(bytearray(pdf))):
        assert type(joined_result(answer, {"pdf": pdf}, b"abc")) is bytes


def test_the_worker_names_the_argument_an_appended_result_follows() -> None:
    pdf = os.urandom(OUT_OF_BAND_BYTES)
    parts = Appended(b"update", pdf)
    assert appended_prefix(parts, {"level": "B-B", "pdf": pdf}) == ("pdf", len(pdf))
    assert appended_prefix(parts, {"pdf": bytes(bytearray(pdf))}) is None


# --- the transport's answer ---------------------------------------------------------------------

def test_the_binary_answer_sends_the_update_without_joining_or_comparing() -> None:
    uploaded = os.urandom(20 * MIB)
    parts = Appended(b"%update%", uploaded)
    answer = BinaryAnswer("sign.pdf", uploaded)
    result = SignPdfResult(pdf=parts)
    tracemalloc.start()
    try:
        frame = answer.frame(7, result)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MIB  # neither a joined copy nor a 20 MiB comparison's slices
    assert jsonrpc_result(frame)["pdf"] == {"binary": 8, "prefix": len(uploaded)}
    # The update alone: the frame to send does not keep the upload alive.
    assert answer.tail is not None and type(answer.tail.obj) is bytes
    assert bytes(answer.tail) == b"%update%"


def test_the_binary_answer_of_a_whole_result_still_finds_the_prefix() -> None:
    uploaded = os.urandom(MIB)
    answer = BinaryAnswer("sign.pdf", uploaded)
    frame = answer.frame(8, SignPdfResult(pdf=uploaded + b"%update%"))
    assert jsonrpc_result(frame)["pdf"] == {"binary": 8, "prefix": len(uploaded)}
    assert answer.tail is not None and bytes(answer.tail) == b"%update%"


def test_the_base64_answer_is_the_whole_signed_pdf() -> None:
    # A request that sent base64 never allows the parts: its result is the joined bytes,
    # and the answer carries all of it.
    pdf = os.urandom(OUT_OF_BAND_BYTES)
    answer = {"type": "done", "bytes": 3, "prefix": {"argument": "pdf", "bytes": len(pdf)}}
    signed = joined_result(answer, {"pdf": pdf}, b"abc")
    frame = jsonrpc.result_frame(9, SignPdfResult(pdf=signed))
    import base64

    assert base64.b64decode(jsonrpc_result(frame)["pdf"]) == pdf + b"abc"


def jsonrpc_result(frame: str) -> Any:
    import json

    return json.loads(frame)["result"]


# --- a real worker, pyHanko in place ------------------------------------------------------------

async def test_a_real_worker_returns_the_update_after_the_very_upload() -> None:
    pool = DocumentWorkers(WorkerLimits())
    signer = SoftSigner()
    pdf = large_pdf(3 * MIB)
    try:
        with allow_appended(pdf):
            parts = await pool.run("pdf", signer.job(), pdf_args(pdf))
        assert isinstance(parts, Appended) and parts.document is pdf  # never joined here
        assert len(parts) < 64 * 1024
        await _assert_signed(pdf, parts.whole(), signer)
        # The same document without the leave: the whole signed PDF, as before.
        whole = await pool.run("pdf", signer.job(), pdf_args(pdf))
        assert type(whole) is bytes
        await _assert_signed(pdf, whole, signer)
    finally:
        await pool.close()


async def test_pyhanko_signs_in_place_in_this_process() -> None:
    from agent.formats.pades import build_pades_here

    signer = SoftSigner()
    pdf = large_pdf(MIB)
    with allow_appended(pdf):
        parts = await build_pades_here(signer.job(), pdf, "B-B", reason="r", location=None,
                                       field_name=None)
    assert isinstance(parts, Appended) and parts.document is pdf
    await _assert_signed(pdf, parts.whole(), signer)
    whole = await build_pades_here(signer.job(), pdf, "B-B", reason=None, location=None,
                                   field_name=None)
    assert type(whole) is bytes
    await _assert_signed(pdf, whole, signer)
