"""Verification of what the agent's newer builders make: XML with several co-signers
(each ds:Signature judged on its own, the co-signers' XPath transform honoured) and ASiC-E
containers (XAdES and CAdES), signed by a running agent with SoftHSM keys against the
loopback TSA/OCSP/CRL; each verdict compared with xmlsec1 / openssl / hashlib."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cms_checks
import pki_services
import pytest
import xades_checks
from asn1crypto import cms
from daemon import Daemon, b64, unb64
from lxml import etree
from pki_services import (
    DIRECT_ENV,
    ORIGIN,
    FormatsBed,
    build_formats_token,
    run_tool,
    select_handle,
    start_formats_daemon,
)
from test_asic import (
    FILES,
    _check_archive_time_stamp,
    _check_cades,
    _check_xades_archive_time_stamp,
    _xmlsec,
)
from test_verify import DATA, _short_lived
from xades_checks import assert_archive_stamp, xmlsec

from agent.commands.verify_command import render
from agent.config import DocumentsConfig, FormatsConfig
from agent.errors import TooLarge, Unsupported
from agent.formats.document_caps import StructureCaps
from agent.formats.isolation import limits_from_config
from agent.formats.job import KeylessJob
from agent.formats.network import NetworkSettings
from agent.protocol.params_verify import SignatureVerifyResult
from agent.verify.caps import max_verified_signatures
from agent.verify.service import verify_signature
from agent.verify.xml_verify import verify_xml

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon, pytest.mark.verifiers]

formats_bed = pki_services.formats_bed
formats_daemon = pki_services.formats_daemon

DS = "http://www.w3.org/2000/09/xmldsig#"
XML = ('<?xml version="1.0" encoding="UTF-8"?>\n'
       '<Qaimə nömrə="119"><Məbləğ valyuta="AZN">700.00</Məbləğ></Qaimə>').encode()


@pytest.fixture(autouse=True)
def _direct(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in DIRECT_ENV.items():
        monkeypatch.setenv(name, value)
    yield


async def _call(daemon: Daemon, bed: FormatsBed, identity: str, method: str,
                params: dict[str, Any], member: str) -> bytes:
    async with daemon.client(ORIGIN) as client:
        handle = await select_handle(client, bed.serial(identity))
        result = await client.call(method, {"handle": handle, **params}, timeout=60)
    return unb64(result[member])


@pytest.fixture(scope="module")
def expiring(formats_bed: FormatsBed
             ) -> Iterator[tuple[FormatsBed, dict[str, bytes], dt.datetime]]:
    """A signer whose certificate expires about 25 s after it is issued, on a token of
    this module's own: CAdES and XAdES B-LTA signed with it now, verified after."""
    services = formats_bed.services
    identities = {"v2_expiring": _short_lived(services, "v2_expiring")}
    directory = Path(tempfile.mkdtemp(prefix="imza-verify2-"))
    token = build_formats_token(directory / "softhsm", list(identities.values()),
                                label="Yoxlama2")
    bed = FormatsBed(services, identities, token, formats_bed.anchors, directory)
    daemon = start_formats_daemon(bed, directory / "home")
    tsa = services.url("/tsa")

    async def sign_all() -> dict[str, bytes]:
        return {
            "cms_blta": await _call(daemon, bed, "v2_expiring", "sign.cms", {
                "data": b64(DATA), "hashAlgorithm": "SHA-256", "level": "LTA",
                "tsaUrl": tsa}, "cms"),
            "xml_blta": await _call(daemon, bed, "v2_expiring", "sign.xml", {
                "xml": b64(XML), "level": "B-LTA", "mode": "enveloped", "tsaUrl": tsa},
                "xml")}

    try:
        signed = asyncio.run(sign_all())
        yield bed, signed, identities["v2_expiring"].cert.not_valid_after_utc
    finally:
        code = daemon.stop()
        shutil.rmtree(directory, ignore_errors=True)
    assert code == 0, "the daemon did not stop cleanly"


@pytest.fixture(scope="module")
def co_signed(formats_daemon: Daemon, formats_bed: FormatsBed) -> bytes:
    """An XML document signed by two signers through the agent (B-T each)."""
    tsa = formats_bed.services.url("/tsa")

    async def sign_twice() -> bytes:
        first = await _call(formats_daemon, formats_bed, "ec", "sign.xml", {
            "xml": b64(XML), "level": "B-T", "mode": "enveloped", "tsaUrl": tsa}, "xml")
        return await _call(formats_daemon, formats_bed, "rsa", "sign.xml", {
            "xml": b64(first), "level": "B-T", "mode": "enveloped", "tsaUrl": tsa}, "xml")

    return asyncio.run(sign_twice())


@pytest.fixture(scope="module")
def made(formats_daemon: Daemon, formats_bed: FormatsBed) -> dict[str, bytes]:
    """Signed once for the module: XAdES and CAdES containers, B-T and B-LTA."""
    tsa = formats_bed.services.url("/tsa")
    files = [{"name": n, "data": b64(d), **({"mimeType": m} if m else {})}
             for n, d, m in FILES]

    async def sign_all() -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        out["asic_xades"] = await _call(formats_daemon, formats_bed, "rsa", "sign.asic", {
            "files": files, "signatureFormat": "xades", "level": "B-T", "tsaUrl": tsa},
            "container")
        out["asic_cades"] = await _call(formats_daemon, formats_bed, "ec", "sign.asic", {
            "files": files, "signatureFormat": "cades", "level": "B-T", "tsaUrl": tsa},
            "container")
        out["asic_xades_lta"] = await _call(formats_daemon, formats_bed, "ec", "sign.asic", {
            "files": files, "signatureFormat": "xades", "level": "B-LTA", "tsaUrl": tsa},
            "container")
        out["asic_cades_lta"] = await _call(formats_daemon, formats_bed, "rsa", "sign.asic", {
            "files": files, "signatureFormat": "cades", "level": "B-LTA", "tsaUrl": tsa},
            "container")
        return out

    return asyncio.run(sign_all())


def _config(bed: FormatsBed) -> FormatsConfig:
    return FormatsConfig(trust_anchors=bed.anchors,
                         network_timeout=pki_services.NETWORK_TIMEOUT,
                         page_tsa_private_addresses=True)


async def _verify(bed: FormatsBed, signature: bytes) -> SignatureVerifyResult:
    return await verify_signature(_config(bed), signature, None, None)


def _verdicts(result: SignatureVerifyResult) -> list[tuple[str, str | None]]:
    return [(s.indication.value, s.sub_indication) for s in result.signatures]


def _flip_signature_value(xml: bytes, index: int) -> bytes:
    """The ``index``-th (0-based) signature's value with one bit changed."""
    root = etree.fromstring(xml)
    value = list(root.iter(f"{{{DS}}}SignatureValue"))[index]
    raw = bytearray(base64.b64decode("".join((value.text or "").split())))
    raw[len(raw) // 2] ^= 0x01
    value.text = base64.b64encode(bytes(raw)).decode("ascii")
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out


# --- XML with several signatures ----------------------------------------------------------

async def test_each_co_signer_is_judged_as_xmlsec1_judges_it(
        co_signed: bytes, formats_bed: FormatsBed, tmp_path: Path) -> None:
    xml = co_signed
    result = await _verify(formats_bed, xml)
    assert result.format.value == "xml"
    assert _verdicts(result) == [("TOTAL-PASSED", None)] * 2, \
        [s.message for s in result.signatures]
    names = [s.signer.common_name for s in result.signatures if s.signer]
    assert names == [formats_bed.identities[i].cert.subject.get_attributes_for_oid(
        pki_services.NameOID.COMMON_NAME)[0].value for i in ("ec", "rsa")]
    for index in (1, 2):
        done = xmlsec(formats_bed, xml, tmp_path, index)
        assert done.returncode == 0, done.stdout + done.stderr
    # The second signer's value broken: only its verdict changes, as for xmlsec1.
    broken = _flip_signature_value(xml, 1)
    result = await _verify(formats_bed, broken)
    assert _verdicts(result) == [("TOTAL-PASSED", None),
                                 ("TOTAL-FAILED", "SIG_CRYPTO_FAILURE")]
    assert xmlsec(formats_bed, broken, tmp_path, 1).returncode == 0
    assert xmlsec(formats_bed, broken, tmp_path, 2).returncode != 0
    # The content changed: both fail.
    changed = xml.replace(b"700.00", b"900.00")
    assert changed != xml
    result = await _verify(formats_bed, changed)
    assert _verdicts(result) == [("TOTAL-FAILED", "HASH_FAILURE")] * 2
    assert xmlsec(formats_bed, changed, tmp_path, 1).returncode != 0


async def test_signatures_beyond_the_setting_are_refused(
        co_signed: bytes, formats_bed: FormatsBed) -> None:
    pki = formats_bed.services.pki
    from agent.formats.anchors import Anchors

    job = KeylessJob(anchors=Anchors(roots=[pki.root.cert], others=[pki.intermediate.cert]),
                     network=NetworkSettings(timeout=5.0))

    # The structure caps with the setting at 1 (a namespace: the same whether or not
    # StructureCaps has the field yet).
    caps = SimpleNamespace(**{**vars(StructureCaps()), "verified_signatures": 1})
    with pytest.raises(Unsupported, match="2 signatures"):
        await verify_xml(job, co_signed, None, caps)


def test_max_verified_signatures_is_a_documents_setting() -> None:
    """[documents] max_verified_signatures reaches the workers' caps (default 32)."""
    from pydantic import ValidationError

    tight = limits_from_config(DocumentsConfig(max_verified_signatures=1))
    assert max_verified_signatures(tight.caps) == 1
    assert max_verified_signatures(limits_from_config(DocumentsConfig()).caps) == 32
    with pytest.raises(ValidationError):
        DocumentsConfig(max_verified_signatures=0)


def test_detached_content_counts_with_the_document() -> None:
    """signature.verify's ``data`` is bounded with its ``signature`` by max_document_bytes
    (the frame session answers TOO_LARGE before any parsing), and decoded there too."""
    from agent.protocol import jsonrpc
    from agent.transport.document_frames import prepare_document

    def request(size: int) -> jsonrpc.Request:
        return jsonrpc.Request(1, "signature.verify", {"signature": b64(b"s" * size),
                                                       "data": b64(b"d" * size)})

    over = request(600)  # 1200 bytes together, each under the limit
    answer = prepare_document(over, 1024)
    assert answer is not None and "TOO_LARGE" in answer and "1024" in answer
    under = request(500)
    assert prepare_document(under, 1024) is None
    assert isinstance(under.params, dict) and under.params["data"] == b"d" * 500


# --- ASiC-E ---------------------------------------------------------------------------------

def _rewritten(container: bytes, name: str, data: bytes) -> bytes:
    """The container with one entry's content replaced (mimetype first and stored)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(container)) as source, \
            zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content = data if info.filename == name else source.read(info)
            target.writestr(info, content, compress_type=info.compress_type)
    return out.getvalue()


async def test_xades_container_passes_and_a_changed_file_fails(
        made: dict[str, bytes], formats_bed: FormatsBed, tmp_path: Path) -> None:
    container = made["asic_xades"]
    result = await _verify(formats_bed, container)
    assert result.format.value == "asic"
    [report] = result.signatures
    assert (report.indication.value, report.sub_indication) == ("TOTAL-PASSED", None), \
        report.message
    assert report.level == "XAdES-B-T" and report.field_name == "META-INF/signatures1.xml"
    _xmlsec(formats_bed, zipfile.ZipFile(io.BytesIO(container)), report.field_name, tmp_path)
    assert "META-INF/signatures1.xml" in render(result)  # the command line names the file
    name = FILES[0][0]
    changed = _rewritten(container, name, FILES[0][1] + b"!")
    [report] = (await _verify(formats_bed, changed)).signatures
    assert (report.indication.value, report.sub_indication) == ("TOTAL-FAILED",
                                                                "HASH_FAILURE")
    with pytest.raises(AssertionError):
        _xmlsec(formats_bed, zipfile.ZipFile(io.BytesIO(changed)),
                "META-INF/signatures1.xml", tmp_path)


async def test_cades_container_passes_and_a_changed_file_fails(
        made: dict[str, bytes], formats_bed: FormatsBed, tmp_path: Path) -> None:
    container = made["asic_cades"]
    [report] = (await _verify(formats_bed, container)).signatures
    assert (report.indication.value, report.sub_indication) == ("TOTAL-PASSED", None), \
        report.message
    assert report.level == "CAdES-B-T" and report.field_name == "META-INF/signature1.p7s"
    assert report.format.value == "asic"
    _check_cades(formats_bed, zipfile.ZipFile(io.BytesIO(container)), 1, tmp_path)
    changed = _rewritten(container, FILES[2][0], FILES[2][1][::-1])
    [report] = (await _verify(formats_bed, changed)).signatures
    assert (report.indication.value, report.sub_indication) == ("TOTAL-FAILED",
                                                                "HASH_FAILURE")
    assert FILES[2][0] in (report.message or "")
    with pytest.raises(AssertionError):  # hashlib over the manifest's references
        _check_cades(formats_bed, zipfile.ZipFile(io.BytesIO(changed)), 1, tmp_path)


async def test_b_lta_containers_pass_and_a_changed_archived_property_fails(
        made: dict[str, bytes], formats_bed: FormatsBed) -> None:
    xades = made["asic_xades_lta"]
    [report] = (await _verify(formats_bed, xades)).signatures
    assert (report.indication.value, report.sub_indication) == ("TOTAL-PASSED", None), \
        report.message
    assert report.level == "XAdES-B-LTA"
    archive = zipfile.ZipFile(io.BytesIO(xades))
    await _check_xades_archive_time_stamp(formats_bed, archive, "META-INF/signatures1.xml")
    cades = made["asic_cades_lta"]
    [report] = (await _verify(formats_bed, cades)).signatures
    assert (report.indication.value, report.sub_indication) == ("TOTAL-PASSED", None), \
        report.message
    assert report.level == "CAdES-B-LTA"
    await _check_archive_time_stamp(formats_bed, zipfile.ZipFile(io.BytesIO(cades)), 1)
    # The signature time-stamp's Id changed: the XAdES signature holds, its archive
    # time-stamp (which covers that element) does not.
    name = "META-INF/signatures1.xml"
    root = etree.fromstring(archive.read(name))
    stamp = next(root.iter("{http://uri.etsi.org/01903/v1.3.2#}SignatureTimeStamp"))
    stamp.set("Id", f"{stamp.get('Id', 'ts')}-renamed")
    changed = _rewritten(xades, name, etree.tostring(root, xml_declaration=True,
                                                     encoding="UTF-8"))
    [report] = (await _verify(formats_bed, changed)).signatures
    assert (report.indication.value, report.sub_indication) == ("TOTAL-FAILED",
                                                                "HASH_FAILURE"), \
        report.message
    assert "archive time-stamp" in (report.message or "")
    with pytest.raises(AssertionError):
        await _check_xades_archive_time_stamp(
            formats_bed, zipfile.ZipFile(io.BytesIO(changed)), name)


async def test_hostile_container_is_refused(formats_bed: FormatsBed) -> None:
    from test_asic import HOSTILE

    for case in ("zip bomb", "dot-dot", "many entries"):
        make, error, _words = HOSTILE[case]
        with pytest.raises((TooLarge, Unsupported)) as raised:
            await _verify(formats_bed, make())
        assert isinstance(raised.value, error), case


# --- archive time-stamps (last: the short-lived signer must have expired) ----------------------

async def test_archive_time_stamps_beyond_the_setting_are_refused(
        expiring: tuple[FormatsBed, dict[str, bytes], dt.datetime]) -> None:
    """A signature with two archive time-stamps and the setting at 1: refused before any
    is checked (each costs a copy of the document or a token validation)."""
    from agent.verify.cms_verify import verify_cms

    bed, signed, _expires = expiring
    pki = bed.services.pki
    from agent.formats.anchors import Anchors

    job = KeylessJob(anchors=Anchors(roots=[pki.root.cert], others=[pki.intermediate.cert]),
                     network=NetworkSettings(timeout=5.0))
    caps = SimpleNamespace(**{**vars(StructureCaps()), "verified_signatures": 1})
    root = etree.fromstring(signed["xml_blta"])
    stamp = next(root.iter("{http://uri.etsi.org/01903/v1.4.1#}ArchiveTimeStamp"))
    stamp.addnext(etree.fromstring(etree.tostring(stamp)))
    twice = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    with pytest.raises(Unsupported, match="archive time-stamps"):
        await verify_xml(job, twice, None, caps)
    info = cms.ContentInfo.load(signed["cms_blta"])
    signer = info["content"]["signer_infos"][0]
    attrs = list(signer["unsigned_attrs"])
    attrs.append(next(a for a in attrs if a["type"].dotted == "0.4.0.1733.2.4"))
    signer["unsigned_attrs"] = attrs
    with pytest.raises(Unsupported, match="archive time-stamps"):
        await verify_cms(job, info.dump(force=True), DATA, 1)


def _without_last_crl(der: bytes) -> bytes:
    """The SignedData without its last revocation entry, which the archive time-stamp's
    hash index lists (the signer's own signature is untouched)."""
    info = cms.ContentInfo.load(der)
    signed = info["content"]
    entries = list(signed["crls"])
    assert entries, "the B-LTA signature carries no revocation data"
    signed["crls"] = entries[:-1]
    out: bytes = info.dump(force=True)
    return out


async def test_cades_b_lta_of_an_expired_signer_and_a_broken_archive_time_stamp(
        expiring: tuple[FormatsBed, dict[str, bytes], dt.datetime], tmp_path: Path) -> None:
    bed, signed, expires = expiring
    pki_services.wait_until_expired(expires)
    der = signed["cms_blta"]
    result = await verify_signature(_config(bed), der, DATA, None)
    [report] = result.signatures
    assert (report.indication.value, report.sub_indication) == ("TOTAL-PASSED", None), \
        report.message
    assert report.level == "CAdES-B-LTA"
    # openssl: expired now; the archive time-stamp holds over the input EN 319 122-1
    # gives (recomputed by the test's own code), for openssl ts and pyHanko.
    (tmp_path / "sig.der").write_bytes(der)
    (tmp_path / "data.bin").write_bytes(DATA)
    done = run_tool(["openssl", "cms", "-verify", "-binary", "-inform", "DER",
                     "-in", str(tmp_path / "sig.der"), "-content", str(tmp_path / "data.bin"),
                     "-CAfile", str(bed.anchors[0]), "-certfile", str(bed.anchors[1]),
                     "-purpose", "any", "-out", str(tmp_path / "out.bin")])
    assert done.returncode != 0 and "expired" in done.stderr
    [token] = cms_checks.archive_tokens(der, 0)
    stamped = cms_checks.recomputed_archive_input(der, 0, DATA, token, newest=True)
    _md, imprint = cms_checks.token_imprint(token)
    cms_checks.openssl_ts_verify(bed, token, imprint, tmp_path)
    # Revocation data the archive time-stamp protects, removed: HASH_FAILURE.
    broken = _without_last_crl(der)
    [report] = (await verify_signature(_config(bed), broken, DATA, None)).signatures
    assert (report.indication.value, report.sub_indication) == ("TOTAL-FAILED",
                                                                "HASH_FAILURE"), \
        report.message
    assert "archive time-stamp" in (report.message or "")
    with pytest.raises(AssertionError):  # the index names what is no longer there
        cms_checks.recomputed_archive_input(broken, 0, DATA, token, newest=True)
    assert stamped  # the good input was recomputed


async def test_xades_b_lta_of_an_expired_signer_and_a_broken_archive_time_stamp(
        expiring: tuple[FormatsBed, dict[str, bytes], dt.datetime], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    bed, signed, expires = expiring
    pki_services.wait_until_expired(expires)
    xml = signed["xml_blta"]
    [report] = (await _verify(bed, xml)).signatures
    assert (report.indication.value, report.sub_indication) == ("TOTAL-PASSED", None), \
        report.message
    assert report.level == "XAdES-B-LTA"
    assert xmlsec(bed, xml, tmp_path, 1).returncode != 0  # xmlsec1 now: expired
    # xmlsec1 at the signature time-stamp's time (its local time), for the checks below.
    stamped = dt.datetime.fromisoformat((report.timestamp_time or "").replace("Z", "+00:00"))
    assert stamped < expires
    at = ("--verification-time", stamped.astimezone().strftime("%Y-%m-%d %H:%M:%S"))
    plain = xades_checks.xmlsec

    def xmlsec_then(bed: FormatsBed, xml: bytes, tmp: Path, index: int = 1,
                    id_attrs: tuple[str, ...] = (), extra: tuple[str, ...] = ()) -> Any:
        return plain(bed, xml, tmp, index, id_attrs, (*extra, *at))

    monkeypatch.setattr(xades_checks, "xmlsec", xmlsec_then)
    assert_archive_stamp(bed, xml, tmp_path, 1)  # xmlsec1's reference octets + openssl ts
    # A property the archive time-stamp covers, changed (the signature time-stamp's Id,
    # which nothing references): the signature itself still holds, the archive does not.
    root = etree.fromstring(xml)
    stamp = next(root.iter("{http://uri.etsi.org/01903/v1.3.2#}SignatureTimeStamp"))
    stamp.set("Id", f"{stamp.get('Id', 'ts')}-renamed")
    broken: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    [report] = (await _verify(bed, broken)).signatures
    assert (report.indication.value, report.sub_indication) == ("TOTAL-FAILED",
                                                                "HASH_FAILURE"), \
        report.message
    assert "archive time-stamp" in (report.message or "")
    assert xmlsec_then(bed, broken, tmp_path, 1).returncode == 0  # the signature holds
    with pytest.raises(AssertionError):
        assert_archive_stamp(bed, broken, tmp_path, 1)
