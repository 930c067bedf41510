"""Document workers (agent/formats/isolation.py, worker.py) and the structural caps
(agent/formats/document_caps.py), with real worker processes under real limits.

The signer is a software key: what is under test is the process boundary, the limits and
the caps, not the token (test_hostile_documents.py goes through a real agent)."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import signal
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from test_hostile_documents import (
    classic_pdf,
    kids_fanout_pdf,
    minimal_pdf,
    namespace_xml,
    page_fanout_pdf,
    xref_size_pdf,
)

from agent.config import Config, DocumentsConfig
from agent.errors import AgentError, Busy, InternalError, TooLarge, Unsupported
from agent.formats.anchors import Anchors
from agent.formats.document_caps import (
    StructureCaps,
    check_pdf_bytes,
    check_xml_structure,
    declared_xref_entries,
)
from agent.formats.isolation import (
    DocumentWorkers,
    Worker,
    WorkerLimits,
    WorkerPreviews,
    checked_previews,
    error_from_worker,
    limits_from_config,
)
from agent.formats.job import FormatJob
from agent.formats.network import NetworkSettings
from agent.formats.preview import indented_xml
from agent.formats.worker_jobs import SIGN_GROUP

# Caps that let every document through, so the worker's own limits are what stops it.
NO_CAPS = StructureCaps(xref_entries_per_kib=10**9, xref_entries_slack=10**9,
                        pdf_objects=10**9)
XML = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
       b'<Qaime xmlns:x="urn:x"><x:Mebleg>1</x:Mebleg></Qaime>')


class SoftSigner:
    """A software EC key behind ``FormatJob.sign``; counts and can hold its calls."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Imza Worker Test")])
        start = datetime.now(UTC) - timedelta(minutes=5)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(7)
                     .not_valid_before(start).not_valid_after(start + timedelta(days=1))
                     .sign(self.key, hashes.SHA256()))
        self.calls = 0
        self.confirms = 0
        self.events: list[str] = []
        self.before_answer: Any = None  # an async callable run inside sign

    async def confirm(self) -> None:
        self.confirms += 1
        self.events.append("confirm")

    async def __call__(self, digest: bytes, digest_algorithm: str, *,
                       ecdsa_raw: bool = False) -> bytes:
        self.calls += 1
        self.events.append("sign")
        if self.before_answer is not None:
            await self.before_answer()
        assert digest_algorithm == "sha256"
        der = self.key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        if not ecdsa_raw:
            return der
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def job(self) -> FormatJob:
        return FormatJob(sign=self, certificate=self.cert, chain=[], anchors=Anchors(),
                         network=NetworkSettings(), tsa_url=None)


def pdf_args(pdf: bytes) -> dict[str, Any]:
    return {"pdf": pdf, "level": "B-B", "reason": None, "location": None,
            "field_name": None, "stamp": None}


async def _sign_pdf(pool: DocumentWorkers, signer: SoftSigner, pdf: bytes) -> bytes:
    return await pool.run("pdf", signer.job(), pdf_args(pdf))


async def _refusal(pool: DocumentWorkers, signer: SoftSigner, kind: str,
                   args: dict[str, Any]) -> AgentError:
    with pytest.raises(AgentError) as caught:
        await pool.run(kind, signer.job(), args)
    return caught.value


async def _assert_signed(original: bytes, signed: bytes, signer: SoftSigner) -> None:
    assert signed.startswith(original)  # an incremental update
    [sig] = PdfFileReader(BytesIO(signed)).embedded_signatures
    trust = ValidationContext(trust_roots=[asn1_x509.Certificate.load(
        signer.cert.public_bytes(Encoding.DER))])
    status = await async_validate_pdf_signature(sig, trust)
    assert status.intact and status.valid


# --- the caps, on their own ------------------------------------------------------------------

def test_xref_claims_are_read_from_every_place_a_pdf_makes_them() -> None:
    assert declared_xref_entries(minimal_pdf()) == 6
    assert declared_xref_entries(xref_size_pdf()) == 5_000_000
    assert declared_xref_entries(xref_size_pdf(name=b"/S#69ze")) == 5_000_000
    index = xref_size_pdf(4).replace(b"/W[1 2 1]", b"/Index[0 2 7 4000000]/W[1 2 1]")
    assert declared_xref_entries(index) == 4_000_002
    table = minimal_pdf().replace(b"xref\n0 6\n", b"xref\n0 6000000\n")
    assert declared_xref_entries(table) == 6_000_000
    commented = xref_size_pdf().replace(b"/Size 5000000", b"/Size % a comment\n 5000000")
    assert declared_xref_entries(commented) == 5_000_000
    with pytest.raises(Unsupported):
        declared_xref_entries(xref_size_pdf().replace(b"/Size 5000000", b"/Size 9 0 R"))


def test_pdf_size_cap_is_relative_to_the_file() -> None:
    caps = StructureCaps(xref_entries_per_kib=512, xref_entries_slack=100)
    check_pdf_bytes(minimal_pdf(), caps)
    with pytest.raises(TooLarge):
        check_pdf_bytes(xref_size_pdf(1000), caps)
    check_pdf_bytes(xref_size_pdf(1000), StructureCaps(xref_entries_slack=1000))
    with pytest.raises(TooLarge):  # the absolute cap holds whatever the size
        check_pdf_bytes(xref_size_pdf(1000), StructureCaps(pdf_objects=999))


def test_pathological_comments_cost_linear_time() -> None:
    """The scan's regular expressions are possessive: a megabyte of comment and blanks
    after a name is read once, not once per split (quadratic)."""
    pdf = b"%PDF-1.7\n/Size %" + b" x" * 500_000 + b"\n" + b" " * 500_000
    assert declared_xref_entries(pdf) == 0


def test_xml_caps_count_declarations_and_elements() -> None:
    check_xml_structure(XML, StructureCaps())
    with pytest.raises(TooLarge):
        check_xml_structure(namespace_xml(), StructureCaps())
    check_xml_structure(namespace_xml(64), StructureCaps())
    with pytest.raises(TooLarge):
        check_xml_structure(namespace_xml(65), StructureCaps())
    many = b"<a>" + b"<b/>" * 1000 + b"</a>"
    check_xml_structure(many, StructureCaps(xml_elements=1001))
    with pytest.raises(TooLarge):
        check_xml_structure(many, StructureCaps(xml_elements=1000))
    with pytest.raises(Unsupported):
        check_xml_structure(b"<a><b></a>", StructureCaps())


def test_config_section_becomes_the_limits() -> None:
    config = Config.model_validate({"documents": {
        "worker_cpu_seconds": 7, "worker_memory_mb": 300, "max_form_fields": 12,
        "max_xml_namespace_declarations": 3}})
    limits = limits_from_config(config.documents)
    assert (limits.cpu_seconds, limits.memory_mb) == (7, 300)
    assert (limits.caps.form_fields, limits.caps.xml_namespace_declarations) == (12, 3)
    assert limits_from_config(DocumentsConfig()) == WorkerLimits()


def test_worker_errors_are_rebuilt_from_a_short_list() -> None:
    network = error_from_worker({"reason": "NETWORK", "message": "the TSA\x1b[2J failed",
                                 "data": {"service": "TSA", "bad key": 1, "obj": [1]}})
    assert network.reason == "NETWORK" and network.data == {"service": "TSA"}
    assert "\x1b" not in network.message
    # A worker cannot pose as the dialog or the token.
    for reason in ("PIN_LOCKED", "USER_CANCELLED", "INTERNAL", None):
        assert isinstance(error_from_worker({"reason": reason}), InternalError)


# --- real workers ----------------------------------------------------------------------------

async def test_documents_are_signed_in_a_worker_and_a_warm_one_waits() -> None:
    pool = DocumentWorkers(WorkerLimits())
    signer = SoftSigner()
    try:
        await _assert_signed(minimal_pdf(), await _sign_pdf(pool, signer, minimal_pdf()),
                             signer)
        assert pool.started == 2  # the worker that signed and a warm spare
        await _assert_signed(minimal_pdf(), await _sign_pdf(pool, signer, minimal_pdf()),
                             signer)
        assert pool.started == 3  # the spare signed; a new spare replaced it
        xml = await pool.run("xml", signer.job(), {"document": XML, "level": "B-B",
                                                   "mode": "enveloped"})
        assert b"SignatureValue" in xml
        cms = await pool.run("cms", signer.job(), {"data_digest": bytes(32),
                                                   "digest_algorithm": "sha256",
                                                   "level": "B"})
        assert cms[:1] == b"\x30"
        assert signer.calls == 4  # one signature per document
    finally:
        await pool.close()


def _batch_items(signer: SoftSigner) -> list[tuple[str, FormatJob, dict[str, Any]]]:
    return [("pdf", signer.job(), pdf_args(minimal_pdf())),
            ("xml", signer.job(), {"document": XML, "level": "B-B", "mode": "enveloped"}),
            ("cms", signer.job(), {"data_digest": bytes(32), "digest_algorithm": "sha256",
                                   "level": "B"})]


async def test_a_batch_is_built_in_one_worker_confirmed_once_before_any_signature() -> None:
    pool = DocumentWorkers(WorkerLimits(warm_workers=0))
    signer = SoftSigner()
    try:
        pdf, xml, cms = await pool.run_batch(_batch_items(signer))
        assert pool.started == 1
        assert signer.events == ["confirm", "sign", "sign", "sign"]
        await _assert_signed(minimal_pdf(), pdf, signer)
        assert b"SignatureValue" in xml and xml.startswith(b"<")
        assert cms[:1] == b"\x30"
    finally:
        await pool.close()


async def test_a_batch_with_a_bad_item_asks_for_nothing() -> None:
    pool = DocumentWorkers(WorkerLimits(warm_workers=0))
    signer = SoftSigner()
    items = _batch_items(signer)
    items.insert(1, ("pdf", signer.job(), pdf_args(xref_size_pdf())))
    try:
        with pytest.raises(TooLarge) as caught:
            await pool.run_batch(items)
        assert caught.value.data["item"] == 1
        assert signer.events == []  # no dialog, no signature
    finally:
        await pool.close()


def _invoice(number: int) -> bytes:
    return (b'<?xml version="1.0" encoding="UTF-8"?>\n<!-- not signed -->'
            b'<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2">'
            + f"<ID>EFT{number:06d}</ID><Line>{number}</Line>".encode() + b"</Invoice>")


async def test_a_batch_worker_makes_the_previews_it_was_asked_for_before_the_dialog() -> None:
    """The previews come from the parse of the worker that signs the batch — one worker
    started for the batch, no preview process — and reach the daemon before it confirms."""
    pool = DocumentWorkers(WorkerLimits(warm_workers=0))
    signer = SoftSigner()
    documents = [_invoice(n) for n in range(3)]
    items = [("xml", signer.job(), {"document": d, "level": "B-B", "mode": "enveloped"})
             for d in documents]
    # Item 1: a limit its text does not fit; item 2: not asked for at all.
    tight = len(documents[1]) // 4
    previews = WorkerPreviews({0: (documents[0], True, 4096), 1: (documents[1], True, tight)})
    seen_at_confirm: list[bool] = []
    confirm = signer.confirm

    async def confirming() -> None:
        seen_at_confirm.append(previews.texts.done())
        await confirm()

    signer.confirm = confirming  # type: ignore[method-assign]
    try:
        signed = await pool.run_batch(items, previews)
        assert pool.started == 1  # the batch's worker, and nothing else
        assert seen_at_confirm == [True]
        texts = previews.texts.result()
        assert texts == {0: indented_xml(documents[0], 4096, StructureCaps(), enveloped=True)}
        assert b"EFT000000" in texts[0] and b"not signed" not in texts[0]
        assert all(b"SignatureValue" in document for document in signed)
    finally:
        await pool.close()


async def test_a_preview_of_other_bytes_than_the_item_signs_is_not_asked_for() -> None:
    pool = DocumentWorkers(WorkerLimits(warm_workers=0))
    signer = SoftSigner()
    items = [("xml", signer.job(), {"document": _invoice(1), "level": "B-B",
                                    "mode": "enveloped"})]
    previews = WorkerPreviews({0: (_invoice(2), True, 4096)})
    try:
        await pool.run_batch(items, previews)
        assert previews.texts.result() == {}  # no text: size and SHA-256 only
    finally:
        await pool.close()


def test_the_daemon_takes_only_the_previews_it_asked_for() -> None:
    def answer(*entries: object) -> dict[str, Any]:
        return {"type": "confirm", "previews": list(entries)}

    asked = {0: 10, 2: 10}
    good = {"item": 0, "text": base64.b64encode("<a>ə</a>".encode()).decode()}
    assert checked_previews(answer(good), asked) == {0: "<a>ə</a>".encode()}
    assert checked_previews({"type": "confirm"}, asked) == {}
    for bad in (
            answer({"item": 1, "text": good["text"]}),            # not asked for
            answer(good, good),                                    # twice
            answer({"item": 0, "text": base64.b64encode(b"x" * 11).decode()}),  # too long
            answer({"item": 0, "text": base64.b64encode(b"\xff\xfe").decode()}),  # not UTF-8
            answer({"item": 0, "text": "not base64!"}),
            answer({"item": True, "text": good["text"]}),
            answer("0"),
            {"type": "confirm", "previews": {"0": good["text"]}}):
        with pytest.raises(InternalError):
            checked_previews(bad, asked)


async def test_a_batch_larger_than_a_group_is_signed_in_overlapping_exchanges() -> None:
    """The worker sends a group of digests and builds the next items while the daemon
    signs; every document gets its own signature back (each verifies)."""
    from signxml import XMLVerifier

    pool = DocumentWorkers(WorkerLimits(warm_workers=0))
    signer = SoftSigner()
    exchanges: list[int] = []

    async def sign_many(requests: list[tuple[bytes, str, bool]]) -> list[bytes]:
        exchanges.append(len(requests))
        await asyncio.sleep(0.01)  # the token's time: the worker keeps building meanwhile
        return [await signer(digest, algorithm, ecdsa_raw=raw)
                for digest, algorithm, raw in requests]

    signer.sign_many = sign_many  # type: ignore[attr-defined]
    count = 2 * SIGN_GROUP + 3
    documents = [_invoice(n) for n in range(count)]
    items = [("xml", signer.job(), {"document": d, "level": "B-B", "mode": "enveloped"})
             for d in documents]
    try:
        signed = await pool.run_batch(items)
        assert signer.events[0] == "confirm" and signer.events.count("confirm") == 1
        assert sum(exchanges) == count and len(exchanges) >= 3
        assert max(exchanges) <= SIGN_GROUP
        pem = signer.cert.public_bytes(Encoding.PEM)
        for number, document in enumerate(signed):
            data, *_ = XMLVerifier().verify(document, x509_cert=pem,
                                            expect_config=_xades_config())
            assert f"EFT{number:06d}".encode() in data.signed_data
    finally:
        await pool.close()


def _xades_config() -> Any:
    from signxml.verifier import SignatureConfiguration

    # One data reference plus SignedProperties and KeyInfo (XAdES B-B).
    return SignatureConfiguration(expect_references=3)


async def test_a_batch_item_previewed_is_counted_against_the_caps_in_its_one_parse() -> None:
    """The worker parses an item it previews once, counting it as it goes: an item over
    the caps is refused (TOO_LARGE, by its index) before any dialog, and no text of it
    travels; the items before it were fine."""
    caps = StructureCaps(xml_namespace_declarations=8)
    pool = DocumentWorkers(WorkerLimits(warm_workers=0, caps=caps))
    signer = SoftSigner()
    documents = [_invoice(0), namespace_xml(9), _invoice(2)]
    items = [("xml", signer.job(), {"document": d, "level": "B-B", "mode": "enveloped"})
             for d in documents]
    previews = WorkerPreviews({i: (d, True, 1 << 20) for i, d in enumerate(documents)})
    try:
        with pytest.raises(TooLarge) as caught:
            await pool.run_batch(items, previews)
        assert caught.value.data["item"] == 1
        assert signer.events == [] and not previews.texts.done()
        # Within the caps, the same items' texts come from that parse: comments out.
        fine = [items[0], items[2]]
        shown = WorkerPreviews({0: (documents[0], True, 1 << 20),
                                1: (documents[2], True, 1 << 20)})
        assert len(await pool.run_batch(fine, shown)) == 2
        assert shown.texts.result() == {
            0: indented_xml(documents[0], 1 << 20, caps, enveloped=True),
            1: indented_xml(documents[2], 1 << 20, caps, enveloped=True)}
        assert all(b"not signed" not in text for text in shown.texts.result().values())
    finally:
        await pool.close()


async def test_hostile_documents_are_refused_by_the_caps_in_the_worker() -> None:
    pool = DocumentWorkers(WorkerLimits(warm_workers=0))
    signer = SoftSigner()
    try:
        assert isinstance(await _refusal(pool, signer, "pdf", pdf_args(xref_size_pdf())),
                          TooLarge)
        fanout = await _refusal(pool, signer, "pdf", pdf_args(kids_fanout_pdf()))
        assert isinstance(fanout, Unsupported) and "form-field" in fanout.message
        pages = await _refusal(pool, signer, "pdf", pdf_args(page_fanout_pdf()))
        assert isinstance(pages, Unsupported) and "page tree" in pages.message
        wide = WorkerLimits(warm_workers=0, caps=StructureCaps(page_tree_nodes=100))
        pool.configure(wide)
        distinct = classic_pdf([  # 200 kids, all different
            b"<</Type/Catalog/Pages 2 0 R>>",
            b"<</Type/Pages/Kids[" + b"".join(b"%d 0 R " % n for n in range(10, 210))
            + b"]/Count 200>>"])
        assert isinstance(await _refusal(pool, signer, "pdf", pdf_args(distinct)), TooLarge)
        xml = await _refusal(pool, signer, "xml", {"document": namespace_xml(),
                                                   "level": "B-B", "mode": "enveloped"})
        assert isinstance(xml, TooLarge)
        assert signer.calls == 0  # nothing reached the key
    finally:
        await pool.close()


async def test_memory_limit_ends_the_request_and_the_next_document_signs() -> None:
    pool = DocumentWorkers(WorkerLimits(memory_mb=256, warm_workers=0, caps=NO_CAPS))
    signer = SoftSigner()
    try:
        error = await _refusal(pool, signer, "pdf", pdf_args(xref_size_pdf()))
        assert isinstance(error, TooLarge), error
        await _assert_signed(minimal_pdf(), await _sign_pdf(pool, signer, minimal_pdf()),
                             signer)
    finally:
        await pool.close()


async def test_cpu_limit_ends_the_request_while_the_event_loop_runs() -> None:
    pool = DocumentWorkers(WorkerLimits(cpu_seconds=2, memory_mb=4096, warm_workers=0,
                                        caps=NO_CAPS))
    signer = SoftSigner()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    running = asyncio.create_task(ticker())
    try:
        error = await _refusal(pool, signer, "pdf", pdf_args(xref_size_pdf()))
        assert isinstance(error, TooLarge), error
        assert ticks > 0  # the loop kept running while the worker burnt its CPU
        await _assert_signed(minimal_pdf(), await _sign_pdf(pool, signer, minimal_pdf()),
                             signer)
    finally:
        running.cancel()
        await pool.close()


async def test_wall_clock_timeout_kills_a_worker_but_not_while_the_user_decides() -> None:
    pool = DocumentWorkers(WorkerLimits(prepare_timeout=5, cpu_seconds=600, memory_mb=4096,
                                        warm_workers=0, caps=NO_CAPS))
    signer = SoftSigner()
    try:
        slow = await _refusal(pool, signer, "pdf", pdf_args(xref_size_pdf()))
        assert isinstance(slow, TooLarge) and "too long" in slow.message
        signer.before_answer = lambda: asyncio.sleep(7)  # the user reads for longer
        await _assert_signed(minimal_pdf(), await _sign_pdf(pool, signer, minimal_pdf()),
                             signer)
    finally:
        await pool.close()


async def _current_pid(pool: DocumentWorkers) -> int:
    while not pool.current:
        await asyncio.sleep(0.02)
    return next(iter(pool.current)).pid


async def test_worker_killed_mid_request_is_a_typed_error_and_the_next_one_works() -> None:
    pool = DocumentWorkers(WorkerLimits(cpu_seconds=600, memory_mb=4096, warm_workers=0,
                                        caps=NO_CAPS))
    signer = SoftSigner()
    try:
        # Killed while preparing (the size-bomb parse takes many seconds unlimited).
        request = asyncio.create_task(_sign_pdf(pool, signer, xref_size_pdf()))
        pid = await _current_pid(pool)
        await asyncio.sleep(0.5)
        os.kill(pid, signal.SIGTERM)
        with pytest.raises(InternalError):
            await request
        # Killed while the user is in the dialog: the signature has nowhere to go.
        async def kill_worker() -> None:
            os.kill(next(iter(pool.current)).pid, signal.SIGTERM)

        signer.before_answer = kill_worker
        with pytest.raises(InternalError):
            await _sign_pdf(pool, signer, minimal_pdf())
        signer.before_answer = None
        await _assert_signed(minimal_pdf(), await _sign_pdf(pool, signer, minimal_pdf()),
                             signer)
    finally:
        await pool.close()


async def test_one_worker_per_document_and_busy_past_max_workers() -> None:
    pool = DocumentWorkers(WorkerLimits(max_workers=1, warm_workers=0))
    signer = SoftSigner()
    release = asyncio.Event()
    signer.before_answer = release.wait
    try:
        first = asyncio.create_task(_sign_pdf(pool, signer, minimal_pdf()))
        while signer.calls == 0:  # the first document is waiting for "the user"
            await asyncio.sleep(0.02)
        with pytest.raises(Busy):
            await _sign_pdf(pool, signer, minimal_pdf())
        release.set()
        await _assert_signed(minimal_pdf(), await first, signer)
        await _assert_signed(minimal_pdf(), await _sign_pdf(pool, signer, minimal_pdf()),
                             signer)
        assert pool.started == 2  # never reused
    finally:
        await pool.close()


@pytest.mark.linux
async def test_worker_sets_its_limits_before_reading_a_document() -> None:
    limits = WorkerLimits(cpu_seconds=17, memory_mb=300)
    worker = await Worker.start(limits)
    try:
        assert worker.limited
        table = Path(f"/proc/{worker.pid}/limits").read_text(encoding="ascii")
        cpu = next(line for line in table.splitlines() if line.startswith("Max cpu time"))
        memory = next(line for line in table.splitlines()
                      if line.startswith("Max address space"))
        assert cpu.split()[3:5] == ["17", "19"], cpu  # soft, then hard: SIGKILL
        assert memory.split()[3:5] == [str(300 << 20)] * 2, memory
    finally:
        worker.retire()
        await worker.proc.wait()


async def test_unexpected_failures_are_internal_and_logged_in_the_daemon(
        caplog: pytest.LogCaptureFixture) -> None:
    pool = DocumentWorkers(WorkerLimits(warm_workers=0))
    signer = SoftSigner()
    caplog.set_level(logging.INFO)
    try:
        # CAdES-T without a TSA is a programming error (the use case always gives one).
        error = await _refusal(pool, signer, "cms", {"data_digest": bytes(32),
                                                     "digest_algorithm": "sha256",
                                                     "level": "T"})
        assert type(error) is InternalError
    finally:
        await pool.close()
    [record] = [r for r in caplog.records if r.name == "agent.formats.worker"]
    assert record.levelno == logging.ERROR
    assert "cms failed inside the format library" in record.getMessage()
    assert "\n    | Traceback" in record.getMessage()  # continuation lines marked
