"""Issue 13 §2, what you see is what you sign: the core gives the PIN dialog a preview of
what every signing method signs, and the scripted UI records it as the UI process would
receive it.  Through a real agent on SoftHSM keys: the kind, the size and SHA-256 of what
the page sent, the data (the PDF, the text, the indented XML), ``[ui] preview_bytes``, a
batch's count.  Plus the content sniffing and the XML preview process on their own."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pki_services
import pytest
from daemon import Daemon, b64, copy_softhsm, unb64
from lxml import etree
from pki_services import ORIGIN, FormatsBed, bed_daemon, select_handle
from testbed import SoftHsmBed

from agent.app.dialogs import CertificateChoice, PinRequest, Preview, PreviewKind
from agent.errors import PinStatus, UserCancelled
from agent.formats.document_caps import StructureCaps
from agent.formats.isolation import WorkerLimits
from agent.formats.preview import SNIFF_PREFIX, indented_xml, indented_xml_isolated, sniff
from agent.ui.scripted import ScriptedUI

formats_bed = pki_services.formats_bed

CAP = 20_000  # [ui] preview_bytes of the agent under test
SIGNER = "rsa"
XML = ('<?xml version="1.0" encoding="UTF-8"?>\n<!-- not signed: C14N drops comments -->'
       '<Qaimə nömrə="117"><Satıcı><Ad>Bakı MMC</Ad></Satıcı>'
       '<Məbləğ valyuta="AZN">1250.00</Məbləğ></Qaimə>').encode()
TEXT = "Müqavilə № 117\nСумма: 1250 AZN\n\tİmza: Əliyev\n".encode()


def minimal_pdf() -> bytes:
    from test_formats_pdf import minimal_pdf as one_page

    return one_page()


def expected_xml(document: bytes) -> bytes:
    """The indented text a reader of the document expects, made here with lxml's own
    indentation over the parsed document without its comments."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True)
    tree = etree.fromstring(document, parser=parser).getroottree()
    etree.indent(tree, space="  ")
    return etree.tostring(tree, encoding="utf-8")


# --- the agent under test ------------------------------------------------------------------

@pytest.fixture(scope="module")
def agent(formats_bed: FormatsBed) -> Iterator[Daemon]:
    with bed_daemon(formats_bed, "imza-previews-", revocation="off",
                    config={"ui": {"preview_bytes": CAP,
                                   "max_filtered_selects_per_site": 10000}},
                    answers={"preview_data": True}) as daemon:  # the tests read the texts
        yield daemon


async def signed_previews(daemon: Daemon, bed: FormatsBed, method: str,
                          params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The method's result and the one PIN dialog it showed."""
    mark = daemon.transcript_mark()
    async with daemon.client(ORIGIN) as client:
        handle = await select_handle(client, bed.serial(SIGNER))
        result = await client.call(method, {"handle": handle, **params}, timeout=60)
    [dialog] = [d for d in daemon.transcript(mark) if d["dialog"] == "pin"]
    return result, dialog


def check_identity(preview: dict[str, Any], sent: bytes) -> None:
    assert preview["size"] == len(sent)
    assert preview["sha256"] == hashlib.sha256(sent).hexdigest()



@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
async def test_sign_pdf_shows_the_pdf_as_sent(agent: Daemon, formats_bed: FormatsBed) -> None:
    pdf = minimal_pdf()
    result, dialog = await signed_previews(agent, formats_bed, "sign.pdf", {
        "pdf": b64(pdf), "level": "B-B", "display": {"documentName": "müqavilə.pdf"},
        "stamp": {"page": 1, "box": [50, 50, 250, 120], "text": "Təsdiq"}})
    [preview] = dialog["previews"]
    assert preview["kind"] == "pdf" and preview["name"] == "müqavilə.pdf"
    check_identity(preview, pdf)
    # The document before the stamp: what the page sent, which the signed file extends.
    assert base64.b64decode(preview["data_b64"]) == pdf
    assert unb64(result["pdf"]).startswith(pdf)
    assert dialog["count"] == 1


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
@pytest.mark.parametrize(("content", "kind", "shown"), [
    (TEXT, "text", True),
    (None, "pdf", True),  # a PDF's bytes as CMS content: shown as pages
    (bytes(range(256)) * 4, "binary", False),
    ("Uzun mətn\n".encode() * 3000, "text", False),  # over preview_bytes: size + SHA-256
])
async def test_sign_cms_content_is_shown_by_what_it_is(
        agent: Daemon, formats_bed: FormatsBed, content: bytes | None, kind: str,
        shown: bool) -> None:
    data = content if content is not None else minimal_pdf()
    assert (len(data) > CAP) == (kind == "text" and not shown)
    _, dialog = await signed_previews(agent, formats_bed, "sign.cms", {
        "data": b64(data), "hashAlgorithm": "SHA-256", "level": "B"})
    [preview] = dialog["previews"]
    assert preview["kind"] == kind
    check_identity(preview, data)
    assert base64.b64decode(preview["data_b64"]) == (data if shown else b"")


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
async def test_sign_cms_over_a_hash_shows_the_fingerprint(agent: Daemon,
                                                          formats_bed: FormatsBed) -> None:
    digest = hashlib.sha384(b"the page's own document").digest()
    _, dialog = await signed_previews(agent, formats_bed, "sign.cms", {
        "hash": b64(digest), "hashAlgorithm": "SHA-384", "level": "B"})
    assert dialog["previews"] == [{"kind": "hash", "size": 48, "sha256": digest.hex(),
                                   "name": None, "data_size": 0,
                                   "data_sha256": hashlib.sha256(b"").hexdigest(),
                                   "data_b64": ""}]


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
@pytest.mark.parametrize("mode", ["enveloped", "detached"])
async def test_sign_xml_shows_the_indented_document_without_the_signature(
        agent: Daemon, formats_bed: FormatsBed, mode: str) -> None:
    result, dialog = await signed_previews(agent, formats_bed, "sign.xml", {
        "xml": b64(XML), "level": "B-B", "mode": mode,
        "display": {"documentName": "qaime.xml"}})
    [preview] = dialog["previews"]
    assert preview["kind"] == "xml" and preview["name"] == "qaime.xml"
    check_identity(preview, XML)
    text = base64.b64decode(preview["data_b64"])
    assert text == expected_xml(XML)
    assert b"\n  <Sat\xc4\xb1c\xc4\xb1>\n    <Ad>Bak\xc4\xb1 MMC</Ad>" in text  # indented
    assert b"Signature" not in text and b"not signed" not in text
    if mode == "enveloped":  # the signed file does carry the signature
        assert b"Signature" in unb64(result["xml"])


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
async def test_xml_over_preview_bytes_is_shown_as_size_and_fingerprint(
        agent: Daemon, formats_bed: FormatsBed) -> None:
    # Over the limit by its comment alone: the document's size decides, not its text's.
    document = f"<Qaimə><!-- {'ş' * CAP} --><Məbləğ>5</Məbləğ></Qaimə>".encode()
    assert len(document) > CAP > len(expected_xml(document)) * 100
    _, dialog = await signed_previews(agent, formats_bed, "sign.xml", {
        "xml": b64(document), "level": "B-B", "mode": "enveloped"})
    [preview] = dialog["previews"]
    assert preview["kind"] == "xml" and preview["data_b64"] == ""
    check_identity(preview, document)


@pytest.mark.softhsm
@pytest.mark.daemon
@pytest.mark.verifiers
async def test_sign_hash_and_a_batch_show_one_fingerprint_per_hash(
        agent: Daemon, formats_bed: FormatsBed) -> None:
    digest = hashlib.sha256(b"one").digest()
    _, dialog = await signed_previews(agent, formats_bed, "sign.hash", {
        "hash": b64(digest), "hashAlgorithm": "SHA-256",
        "display": {"documentName": "ərizə.pdf", "text": "Ərizə № 5"}})
    assert dialog["previews"] == [{"kind": "hash", "size": 32, "sha256": digest.hex(),
                                   "name": "ərizə.pdf", "data_size": 0,
                                   "data_sha256": hashlib.sha256(b"").hexdigest(),
                                   "data_b64": ""}]
    assert dialog["display_text"] == "Ərizə № 5"  # the site's text stays the site's
    digests = [hashlib.sha512(f"item {i}".encode()).digest() for i in range(3)]
    _, batch = await signed_previews(agent, formats_bed, "sign.hashes", {
        "hashes": [b64(d) for d in digests], "hashAlgorithm": "SHA-512",
        "display": {"documentName": "paket"}})
    assert batch["count"] == len(batch["previews"]) == 3
    assert [(p["kind"], p["size"], p["sha256"], p["name"]) for p in batch["previews"]] == [
        ("hash", 64, d.hex(), None) for d in digests]  # one name for the batch: no item's


@pytest.fixture(scope="module")
def auth_agent(softhsm: SoftHsmBed, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("previews-auth")
    conf = copy_softhsm(softhsm.conf, tmp / "softhsm")
    daemon = Daemon(home=tmp / "home", modules=[softhsm.module],
                    env={"SOFTHSM2_CONF": str(conf)}).start()
    yield daemon
    assert daemon.stop() == 0, daemon.log_text()[-3000:]


@pytest.mark.softhsm
@pytest.mark.daemon
async def test_auth_login_signs_no_content_and_shows_none(auth_agent: Daemon,
                                                          softhsm: SoftHsmBed) -> None:
    auth_agent.set_answers({"certificate": {"holder": "Əliyev"},
                            "pin": softhsm.tokens["A"].pin})
    mark = auth_agent.transcript_mark()
    async with auth_agent.client("https://www.e-gov.az") as page:
        await page.call("auth.login", {"challenge": "c" * 43})
    [dialog] = [d for d in auth_agent.transcript(mark) if d["dialog"] == "pin"]
    assert dialog["action"] == "auth" and dialog["previews"] == []


# --- content sniffing ----------------------------------------------------------------------

@pytest.mark.parametrize(("data", "kind"), [
    (TEXT, "text"),
    (b"", "text"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "pdf"),
    (b"%PDF-" + bytes(range(256)), "pdf"),  # the header decides, not the bytes after it
    (b"Faktura 117\x00\x00", "binary"),  # a NUL: not text
    (b"Faktura \xc7\x28 117", "binary"),  # not UTF-8
    (b"\x89PNG\r\n\x1a\n" + bytes(64), "binary"),
    # Controls and invisible characters beyond 2 % of the text: not something to read.
    (("abc\x1b" * 20).encode(), "binary"),
    (("a" * 30 + "\u202e").encode() * 10, "binary"),
    (("a" * 99 + "\x1b").encode() * 10, "text"),  # 1 %: still mostly printable
    ("\ufeffBOM-lu mətn\n".encode(), "text"),
])
def test_sniffing_names_the_content(data: bytes, kind: str) -> None:
    assert sniff(data) == kind


def test_a_large_document_is_judged_by_its_first_bytes() -> None:
    text = "ə".encode() * SNIFF_PREFIX  # the prefix ends inside a two-byte character
    assert sniff(text, whole=False) == "text"
    assert sniff(text + b"\x00", whole=False) == "text"  # the NUL is past the prefix
    assert sniff(text + b"\x00") == "binary"  # but the whole is judged when shown
    assert sniff(b"\x00" + text, whole=False) == "binary"


# --- the XML preview -----------------------------------------------------------------------

def test_indented_xml_leaves_out_what_is_not_signed() -> None:
    placeholder = (b'<r xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><a>1</a>'
                   b'<!-- c --><ds:Signature Id="placeholder"/><?pi x?></r>')
    caps = StructureCaps()
    enveloped = indented_xml(placeholder, 10_000, caps, enveloped=True)
    assert enveloped == (b'<r xmlns:ds="http://www.w3.org/2000/09/xmldsig#">\n  <a>1</a>\n'
                         b'  <?pi x?>\n</r>')
    # Detached, the placeholder is part of the signed document and stays in sight.
    detached = indented_xml(placeholder, 10_000, caps, enveloped=False)
    assert detached is not None and b'<ds:Signature Id="placeholder"/>' in detached


def test_indented_xml_falls_back_to_the_text_as_it_is_then_to_none() -> None:
    deep = b"<a>" * 200 + b"x" + b"</a>" * 200  # indentation grows with the square
    caps = StructureCaps()
    plain = indented_xml(deep, len(deep), caps, enveloped=False)
    assert plain == deep
    assert indented_xml(deep, len(deep) - 1, caps, enveloped=False) is None
    indented = indented_xml(deep, 10 ** 6, caps, enveloped=False)
    assert indented is not None and len(indented) > len(deep) * 10


async def test_the_preview_process_gives_the_text_or_nothing() -> None:
    limits = WorkerLimits()
    assert await indented_xml_isolated(XML, CAP, limits, enveloped=True) == expected_xml(XML)
    for refused in (b"<a><b></a>",  # not well-formed
                    b'<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>',  # a DTD: never signed
                    b'<a xmlns:p="u:1" xmlns:q="u:2"/>'):  # over the caps below
        tight = WorkerLimits(caps=StructureCaps(xml_namespace_declarations=1))
        assert await indented_xml_isolated(refused, CAP, tight, enveloped=True) is None


async def test_a_preview_process_that_takes_too_long_gives_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    """One second of wall clock for a document whose element count the caps allow but
    whose parse and indentation take longer (about 7 s here): the preview is dropped, the
    caller goes on."""
    big = b"<a>" + b"<b>x</b>" * 2_000_000 + b"</a>"
    limits = WorkerLimits(prepare_timeout=1.0,
                          caps=StructureCaps(xml_elements=10_000_000))
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await indented_xml_isolated(big, len(big) * 4, limits, enveloped=False) is None
    assert loop.time() - started < 5
    assert "an XML preview took over 1 s" in caplog.text


# --- the scripted UI -----------------------------------------------------------------------

async def test_scripted_ui_records_the_previews(tmp_path: Path) -> None:
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps({"pin": "cancel", "preview_data": True}), encoding="utf-8")
    ui = ScriptedUI(answers)
    choice = CertificateChoice(holder="Əliyev", issuer="CA", serial_hex="01",
                               not_before="2025-01-01", not_after="2027-01-01",
                               token_label="T", usable=True)
    request = PinRequest(origin="https://e-gov.az", action="sign", certificate=choice,
                         pin=PinStatus(), previews=(
                             Preview(PreviewKind.TEXT, 3, "ab" * 32, "a.txt", b"abc"),
                             Preview(PreviewKind.BINARY, 9, "cd" * 32)))
    with pytest.raises(UserCancelled):
        await ui.ask_pin(request)
    [line] = ui.transcript.read_text(encoding="utf-8").splitlines()
    record = json.loads(line)
    assert record["previews"] == [
        {"kind": "text", "size": 3, "sha256": "ab" * 32, "name": "a.txt", "data_size": 3,
         "data_sha256": hashlib.sha256(b"abc").hexdigest(), "data_b64": "YWJj"},
        {"kind": "binary", "size": 9, "sha256": "cd" * 32, "name": None, "data_size": 0,
         "data_sha256": hashlib.sha256(b"").hexdigest(), "data_b64": ""}]
    assert record["origin"] == "https://e-gov.az" and record["holder"] == "Əliyev"


async def test_scripted_ui_records_what_was_shown_by_size_and_hash_unless_asked(
        tmp_path: Path) -> None:
    """By default the transcript holds no preview's bytes (the daemon would write every
    document as base64 JSON); a test asks for them with ``preview_data``."""
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps({"pin": "cancel"}), encoding="utf-8")
    ui = ScriptedUI(answers)
    choice = CertificateChoice(holder="Əliyev", issuer="CA", serial_hex="01",
                               not_before="2025-01-01", not_after="2027-01-01",
                               token_label="T", usable=True)
    shown = "<Qaimə>\n  <Məbləğ>5</Məbləğ>\n</Qaimə>".encode()
    request = PinRequest(origin="https://e-gov.az", action="sign", certificate=choice,
                         pin=PinStatus(), previews=(
                             Preview(PreviewKind.XML, 40, "ef" * 32, "q.xml", shown),))
    for asked in (False, True):
        answers.write_text(json.dumps({"pin": "cancel", "preview_data": asked}),
                           encoding="utf-8")
        with pytest.raises(UserCancelled):
            await ui.ask_pin(request)
    plain, full = (json.loads(line)["previews"]
                   for line in ui.transcript.read_text(encoding="utf-8").splitlines())
    assert plain == [{"kind": "xml", "size": 40, "sha256": "ef" * 32, "name": "q.xml",
                      "data_size": len(shown),
                      "data_sha256": hashlib.sha256(shown).hexdigest()}]
    assert full == [{**plain[0], "data_b64": base64.b64encode(shown).decode("ascii")}]


# --- a batch's previews ----------------------------------------------------------------------

async def test_a_batch_shows_the_xml_texts_its_worker_made_and_starts_no_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``sign.batch``: the XML items' texts are the ones the batch's document worker sent
    with its "confirm" (one parse of each item, in the worker that signs it); the daemon
    starts no preview process, and adds its own size and SHA-256 of the bytes."""
    from agent.app.documents import batch_previews, document_preview, xml_preview
    from agent.formats.isolation import WorkerPreviews

    async def no_process(*args: object, **kwargs: object) -> Any:
        raise AssertionError("a preview process was started")

    monkeypatch.setattr(asyncio, "create_subprocess_exec", no_process)
    other = XML.replace(b"Bak", b"Gyandja")
    big = b"<a>" + b"x" * CAP + b"</a>"
    sources = [("a.xml", xml_preview(XML, enveloped=True)),
               ("b.txt", document_preview(b"Salam")),
               ("c.xml", xml_preview(other, enveloped=False)),
               ("d.xml", xml_preview(big, enveloped=False))]
    share = CAP // len(sources)
    from_worker = WorkerPreviews({0: (XML, True, share), 2: (other, False, share)})
    made = asyncio.ensure_future(batch_previews(sources, from_worker)(CAP))
    await asyncio.sleep(0.05)
    assert not made.done()  # the dialog waits for the worker's texts
    from_worker.deliver({0: b"<worker text 0/>"})  # item 2's text did not come
    shown = await made
    assert [p.name for p in shown] == ["a.xml", "b.txt", "c.xml", "d.xml"]
    assert [p.data for p in shown] == [b"<worker text 0/>", b"Salam", b"", b""]
    assert [p.kind for p in shown] == [PreviewKind.XML, PreviewKind.TEXT, PreviewKind.XML,
                                       PreviewKind.XML]
    assert shown[3].size == len(big) and shown[3].sha256 == hashlib.sha256(big).hexdigest()
    assert shown[0].sha256 == hashlib.sha256(XML).hexdigest()
