"""sign.batch through a running agent with SoftHSM keys: CMS, XML and PDF items signed with
one confirmation, one PIN and one token session, all or nothing; every item checked by a
verifier we did not write (OpenSSL, xmlsec1, pyHanko and poppler's pdfsig)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pki_services
import pytest
from daemon import Daemon, RpcError, b64, unb64
from lxml import etree
from pki_services import (
    ORIGIN,
    FormatsBed,
    pin_dialogs,
    run_tool,
    select_handle,
    start_formats_daemon,
    trust_context,
)
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from test_formats_pdf import minimal_pdf

from agent.methods.sign_batch import check_batch_limits
from agent.protocol.params_batch import SignBatchParams

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon, pytest.mark.verifiers]

formats_bed = pki_services.formats_bed

DATA = "Ödəniş tapşırığı № 118".encode()
INVOICE = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
           b'<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2">'
           b'<ID>EFT2026000000117</ID><PayableAmount currencyID="TRY">1250.00</PayableAmount>'
           b'</Invoice>')
DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
PIN_ANSWERS = {"consent": "always", "certificate": "first"}

@pytest.fixture(scope="module")
def batch_daemon(formats_bed: FormatsBed, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[Daemon]:
    home = tmp_path_factory.mktemp("batch-home")
    daemon = start_formats_daemon(formats_bed, home / "agent")
    try:
        yield daemon
    finally:
        code = daemon.stop()
    assert code == 0, "the daemon did not stop cleanly"


def _items() -> list[dict[str, object]]:
    return [
        {"kind": "cms", "name": "ödəniş-118.txt", "data": b64(DATA),
         "hashAlgorithm": "SHA-256", "level": "B"},
        {"kind": "xml", "name": "fatura-117.xml", "xml": b64(INVOICE), "level": "B-B",
         "mode": "enveloped"},
        {"kind": "pdf", "name": "müqavilə-117.pdf", "pdf": b64(minimal_pdf("Batch 117")),
         "level": "B-B", "reason": "Təsdiq"},
    ]


async def _batch(daemon: Daemon, bed: FormatsBed, items: list[dict[str, object]],
                 **extra: object) -> dict:
    async with daemon.client(ORIGIN) as client:
        handle = await select_handle(client, bed.serial("rsa"))
        return await client.call("sign.batch", {"handle": handle, "items": items, **extra},
                                 timeout=120)


def _openssl_cms(bed: FormatsBed, der: bytes, data: bytes, tmp: Path) -> None:
    (tmp / "sig.der").write_bytes(der)
    (tmp / "data.bin").write_bytes(data)
    done = run_tool(["openssl", "cms", "-verify", "-binary", "-inform", "DER",
                     "-in", str(tmp / "sig.der"), "-content", str(tmp / "data.bin"),
                     "-CAfile", str(bed.anchors[0]), "-certfile", str(bed.anchors[1]),
                     "-purpose", "any", "-out", str(tmp / "out.bin")])
    assert done.returncode == 0, done.stderr
    assert (tmp / "out.bin").read_bytes() == data


def _xmlsec(bed: FormatsBed, xml: bytes, tmp: Path) -> None:
    path = tmp / "signed.xml"
    path.write_bytes(xml)
    done = run_tool(["xmlsec1", "--verify", "--trusted-pem", str(bed.anchors[0]),
                     "--untrusted-pem", str(bed.anchors[1]),
                     "--id-attr:Id", f"{XADES}:SignedProperties",
                     "--id-attr:Id", f"{DS}:KeyInfo", str(path)], cwd=tmp)
    assert done.returncode == 0, done.stdout + done.stderr


def _pdfsig(pdf: bytes, tmp: Path) -> str:
    path = tmp / "signed.pdf"
    path.write_bytes(pdf)
    done = run_tool(["pdfsig", "-nocert", str(path)])
    assert done.returncode == 0, done.stderr
    return done.stdout


async def _check_all(bed: FormatsBed, result: dict, tmp: Path) -> None:
    names = [r["name"] for r in result["results"]]
    assert names == ["ödəniş-118.txt", "fatura-117.xml", "müqavilə-117.pdf"]
    cms_item, xml_item, pdf_item = result["results"]
    assert set(cms_item) == {"name", "cms"} and set(pdf_item) == {"name", "pdf"}
    _openssl_cms(bed, unb64(cms_item["cms"]), DATA, tmp)
    signed_xml = unb64(xml_item["xml"])
    assert signed_xml != INVOICE
    _xmlsec(bed, signed_xml, tmp)
    pdf = unb64(pdf_item["pdf"])
    assert "Signature is Valid" in _pdfsig(pdf, tmp)
    [signature] = PdfFileReader(BytesIO(pdf), strict=False).embedded_signatures
    status = await async_validate_pdf_signature(signature, trust_context(bed))
    assert status.intact and status.valid and status.trusted


async def test_three_kinds_one_dialog_listing_every_item(
        batch_daemon: Daemon, formats_bed: FormatsBed, tmp_path: Path) -> None:
    batch_daemon.set_answers({**PIN_ANSWERS, "pin": formats_bed.token.pin})
    mark = batch_daemon.transcript_mark()
    result = await _batch(batch_daemon, formats_bed, _items(),
                          display={"text": "Üç sənəd"})
    [dialog] = pin_dialogs(batch_daemon, mark)
    assert dialog["count"] == 3 and dialog["display_text"] == "Üç sənəd"
    assert [p["name"] for p in dialog["previews"]] == [
        "ödəniş-118.txt", "fatura-117.xml", "müqavilə-117.pdf"]
    assert [p["kind"] for p in dialog["previews"]] == ["text", "xml", "pdf"]
    # The XML item's text comes from the batch's document worker: the document indented,
    # as a single sign.xml shows it, with the daemon's own size and SHA-256 of the bytes.
    xml_preview = dialog["previews"][1]
    assert xml_preview["data_size"] == len(_indented(INVOICE))
    assert xml_preview["data_sha256"] == hashlib.sha256(_indented(INVOICE)).hexdigest()
    assert xml_preview["size"] == len(INVOICE)
    assert xml_preview["sha256"] == hashlib.sha256(INVOICE).hexdigest()
    assert ["reason", "Təsdiq"] in dialog["signed_fields"]
    await _check_all(formats_bed, result, tmp_path)


def _indented(document: bytes) -> bytes:
    """What a reader expects to see: lxml's own indentation of the parsed document."""
    tree = etree.fromstring(document, parser=etree.XMLParser(
        resolve_entities=False, no_network=True, remove_comments=True)).getroottree()
    etree.indent(tree, space="  ")
    return bytes(etree.tostring(tree, encoding="utf-8"))


async def test_invoices_past_one_signing_group_each_get_their_own_signature(
        batch_daemon: Daemon, formats_bed: FormatsBed, tmp_path: Path) -> None:
    """More XML items than the worker sends in one exchange (it builds the next ones
    while the token signs): one dialog with every item's text, and every signed invoice
    verifies with xmlsec1 as the invoice it was."""
    from agent.formats.worker_jobs import SIGN_GROUP

    invoices = [INVOICE.replace(b"EFT2026000000117", f"EFT2026{n:09d}".encode())
                for n in range(SIGN_GROUP + 3)]
    batch_daemon.set_answers({**PIN_ANSWERS, "pin": formats_bed.token.pin})
    mark = batch_daemon.transcript_mark()
    result = await _batch(batch_daemon, formats_bed, [
        {"kind": "xml", "name": f"fatura-{n}.xml", "xml": b64(invoice), "level": "B-B",
         "mode": "enveloped"} for n, invoice in enumerate(invoices)])
    [dialog] = pin_dialogs(batch_daemon, mark)
    assert dialog["count"] == len(invoices)
    assert [p["data_sha256"] for p in dialog["previews"]] == [
        hashlib.sha256(_indented(invoice)).hexdigest() for invoice in invoices]
    for n, (invoice, item) in enumerate(zip(invoices, result["results"], strict=True)):
        signed = unb64(item["xml"])
        assert f"EFT2026{n:09d}".encode() in signed and b"SignatureValue" in signed
        assert invoice.split(b"?>", 1)[1][:60] in signed
        _xmlsec(formats_bed, signed, tmp_path)


async def test_a_wrong_pin_then_the_right_one(batch_daemon: Daemon, formats_bed: FormatsBed,
                                              tmp_path: Path) -> None:
    batch_daemon.set_answers({**PIN_ANSWERS, "pin": ["0000", formats_bed.token.pin]})
    mark = batch_daemon.transcript_mark()
    result = await _batch(batch_daemon, formats_bed, _items())
    first, second = pin_dialogs(batch_daemon, mark)
    assert first["retry"] is None and second["retry"] is not None
    await _check_all(formats_bed, result, tmp_path)


async def test_cancel_signs_nothing(batch_daemon: Daemon, formats_bed: FormatsBed) -> None:
    batch_daemon.set_answers({**PIN_ANSWERS, "pin": "cancel"})
    mark = batch_daemon.transcript_mark()
    with pytest.raises(RpcError) as caught:
        await _batch(batch_daemon, formats_bed, _items())
    assert caught.value.reason == "USER_CANCELLED"
    assert len(pin_dialogs(batch_daemon, mark)) == 1
    batch_daemon.set_answers({**PIN_ANSWERS, "pin": formats_bed.token.pin})


async def test_a_malformed_item_fails_the_batch_before_the_dialog(
        batch_daemon: Daemon, formats_bed: FormatsBed) -> None:
    batch_daemon.set_answers({**PIN_ANSWERS, "pin": formats_bed.token.pin})
    items = [*_items(), {"kind": "xml", "name": "broken.xml", "xml": b64(b"<a><b></a>"),
                         "level": "B-B", "mode": "enveloped"}]
    mark = batch_daemon.transcript_mark()
    with pytest.raises(RpcError) as caught:
        await _batch(batch_daemon, formats_bed, items)
    assert caught.value.reason == "UNSUPPORTED" and caught.value.data["item"] == 3
    assert pin_dialogs(batch_daemon, mark) == []


async def test_limits_are_met_before_any_dialog(batch_daemon: Daemon,
                                                formats_bed: FormatsBed) -> None:
    batch_daemon.set_answers({**PIN_ANSWERS, "pin": formats_bed.token.pin})
    item = {"kind": "cms", "name": "h", "hash": b64(bytes(32)), "hashAlgorithm": "SHA-256",
            "level": "B"}
    mark = batch_daemon.transcript_mark()
    async with batch_daemon.client(ORIGIN) as client:
        handle = await select_handle(client, formats_bed.serial("rsa"))
        too_many = await client.error("sign.batch", {"handle": handle, "items": [item] * 101})
        empty = await client.error("sign.batch", {"handle": handle, "items": []})
        own_handle = await client.error("sign.batch", {
            "handle": handle, "items": [{**item, "handle": handle}]})
        unknown_kind = await client.error("sign.batch", {
            "handle": handle, "items": [{**item, "kind": "docx"}]})
    assert too_many.reason == "TOO_LARGE" and too_many.data["limit"] == 100
    assert empty.code == own_handle.code == unknown_kind.code == -32602
    assert pin_dialogs(batch_daemon, mark) == []


def test_the_documents_together_are_bounded() -> None:
    params = SignBatchParams.model_validate({"handle": "h", "items": [
        {"kind": "cms", "name": "a", "data": b64(bytes(600)), "hashAlgorithm": "SHA-256",
         "level": "B"},
        {"kind": "xml", "name": "b", "xml": b64(INVOICE), "level": "B-B",
         "mode": "detached"}]})
    total = 600 + len(INVOICE)
    check_batch_limits(params.items, max_items=2, max_bytes=total)
    with pytest.raises(Exception) as caught:
        check_batch_limits(params.items, max_items=2, max_bytes=total - 1)
    assert getattr(caught.value, "reason", None) == "TOO_LARGE"
    assert caught.value.data == {"limit": total - 1}  # type: ignore[attr-defined]
    with pytest.raises(Exception) as caught:
        check_batch_limits(params.items, max_items=1, max_bytes=total)
    assert caught.value.data == {"limit": 1}  # type: ignore[attr-defined]


async def test_an_ungranted_origin_is_refused(batch_daemon: Daemon,
                                              formats_bed: FormatsBed) -> None:
    batch_daemon.set_answers({"consent": "deny", "certificate": "first",
                              "pin": formats_bed.token.pin})
    mark = batch_daemon.transcript_mark()
    try:
        async with batch_daemon.client("https://stranger.example") as client:
            refused = await client.error("sign.batch", {"handle": "h-unknown",
                                                        "items": _items()[:1]})
    finally:
        batch_daemon.set_answers({**PIN_ANSWERS, "pin": formats_bed.token.pin})
    assert refused.reason == "PERMISSION_DENIED"
    assert pin_dialogs(batch_daemon, mark) == []
