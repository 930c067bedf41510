"""A document worker's job with its documents as raw frames, and its answer as only the
bytes the document did not have (agent/formats/worker_payload.py), on their own and with
a real worker process signing a PDF larger than what goes in the pickle."""

from __future__ import annotations

import os
import pickle
import threading
from io import BytesIO
from typing import Any

import pytest
from test_document_worker import SoftSigner, _assert_signed, pdf_args
from test_large_documents import large_pdf

from agent.formats import isolation, worker_payload, worker_wire
from agent.formats.isolation import SPARE_AFTER_BYTES, DocumentWorkers, WorkerLimits
from agent.formats.worker_payload import (
    OUT_OF_BAND_BYTES,
    encode_job,
    joined_result,
    out_of_band,
    read_job,
    result_prefix,
)

MIB = 1024 * 1024


def _through_a_pipe(message: dict[str, Any]) -> dict[str, Any] | None:
    """``message`` as the daemon writes it and the worker reads it, over a real pipe."""
    head, documents = encode_job(message)
    read_fd, write_fd = os.pipe()

    def write() -> None:
        with os.fdopen(write_fd, "wb") as out:
            out.write(head)
            for document in documents:
                for piece in worker_payload.document_frames(document):
                    out.write(piece)

    writer = threading.Thread(target=write)
    writer.start()
    with os.fdopen(read_fd, "rb") as stream:
        job = read_job(stream)
    writer.join()
    return job


def test_large_arguments_travel_out_of_the_pickle_and_arrive_as_bytes() -> None:
    pdf = os.urandom(3 * MIB + 5)
    small = os.urandom(OUT_OF_BAND_BYTES - 1)
    message = {"op": "build", "kind": "pdf", "args": out_of_band({"pdf": pdf, "tiny": small,
                                                                   "level": "B-B"})}
    head, documents = encode_job(message)
    assert [d.nbytes for d in documents] == [len(pdf)]  # the small one stays in the pickle
    assert len(head) < len(small) + 1024  # the pickle does not hold the document
    job = _through_a_pipe(message)
    assert job is not None
    assert type(job["args"]["pdf"]) is bytes and job["args"]["pdf"] == pdf
    assert job["args"]["tiny"] == small and job["args"]["level"] == "B-B"


def test_a_plain_pickled_request_is_still_read() -> None:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, worker_wire.encode_request({"op": "build", "args": {"x": 1}}))
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as stream:
        assert read_job(stream) == {"op": "build", "args": {"x": 1}}


def test_a_cut_document_frame_is_a_frame_error() -> None:
    head, [document] = encode_job({"args": out_of_band({"pdf": bytes(OUT_OF_BAND_BYTES)})})
    frames = worker_payload.document_frames(document)
    stream = BytesIO(head + bytes(frames[0]) + bytes(frames[1])[:100])
    with pytest.raises(worker_wire.FrameError):
        read_job(stream)


def test_the_prefix_is_the_argument_the_result_begins_with() -> None:
    pdf = os.urandom(OUT_OF_BAND_BYTES)
    update = b"\n%update\n"
    assert result_prefix(pdf + update, {"pdf": pdf, "level": "B-B"}) == ("pdf", len(pdf))
    assert result_prefix(b"x" + pdf, {"pdf": pdf}) is None
    small = pdf[:100]  # too small to be worth it
    assert result_prefix(small + update, {"pdf": small}) is None


def test_the_daemon_joins_only_a_prefix_that_is_its_own_document() -> None:
    pdf = os.urandom(OUT_OF_BAND_BYTES)
    answer = {"type": "done", "bytes": 3, "prefix": {"argument": "pdf", "bytes": len(pdf)}}
    assert joined_result(answer, {"pdf": pdf}, b"abc") == pdf + b"abc"
    assert joined_result({"type": "done", "bytes": 3}, {"pdf": pdf}, b"abc") == b"abc"
    for prefix in ({"argument": "pdf", "bytes": len(pdf) - 1},  # another length
                   {"argument": "level", "bytes": 5},  # not a document
                   {"argument": "nothing", "bytes": 0}, "pdf"):
        with pytest.raises(worker_wire.FrameError):
            joined_result({"type": "done", "prefix": prefix}, {"pdf": pdf, "level": "B-B"},
                          b"abc")


async def test_a_large_pdf_goes_out_of_band_and_only_its_update_comes_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pool = DocumentWorkers(WorkerLimits())
    signer = SoftSigner()
    events: list[str] = []
    answers: list[tuple[dict[str, Any], int]] = []
    joined = worker_payload.joined_result
    send_job = isolation.Worker.send_job
    refill = pool._refill

    def spy(answer: dict[str, Any], args: Any, tail: bytes) -> bytes:
        answers.append((answer, len(tail)))
        return joined(answer, args, tail)

    async def sent(worker: isolation.Worker, message: dict[str, Any]) -> None:
        await send_job(worker, message)
        events.append("sent")

    def refilled(limits: WorkerLimits) -> None:
        events.append("spare")
        refill(limits)

    async def confirm() -> None:
        events.append("confirm")

    monkeypatch.setattr(isolation.worker_payload, "joined_result", spy)
    monkeypatch.setattr(isolation.Worker, "send_job", sent)
    monkeypatch.setattr(pool, "_refill", refilled)
    monkeypatch.setattr(signer, "confirm", confirm)
    pdf = large_pdf(SPARE_AFTER_BYTES + MIB)
    try:
        signed = await pool.run("pdf", signer.job(), pdf_args(pdf))
        await _assert_signed(pdf, signed, signer)
        [(answer, tail)] = answers
        assert answer["prefix"] == {"argument": "pdf", "bytes": len(pdf)}
        assert tail == len(signed) - len(pdf) < 256 * 1024  # the update alone
        # The spare starts while the user decides, not beside the document's transfer.
        assert events[:3] == ["sent", "spare", "confirm"]
        assert len(pool._spares) == 1
    finally:
        await pool.close()


def test_out_of_band_values_are_pickle_buffers_of_the_very_bytes() -> None:
    pdf = bytes(OUT_OF_BAND_BYTES)
    marked = out_of_band({"pdf": pdf})["pdf"]
    assert isinstance(marked, pickle.PickleBuffer) and marked.raw().obj is pdf
