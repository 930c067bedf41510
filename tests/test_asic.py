"""sign.asic: ASiC-E containers (EN 319 162-1) with XAdES or CAdES signatures, created
from a page's files and given a second signer, through a running agent with SoftHSM keys.

Each signature is checked by two validators we did not write: XAdES by xmlsec1 (the data
files resolved through --url-map) and xadesjs; CAdES by openssl cms -verify over the
ASiCManifest plus a digest check of every DataObjectReference done here with hashlib.
The ZIP structure is checked with Python's zipfile and Info-ZIP's ``unzip -t``.  Hostile
containers (a ZIP bomb, path tricks, a duplicate name, a huge entry count) get clear
errors, in the builder and through the daemon, which keeps serving.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import cms_checks
import pki_services
import pytest
from asn1crypto import algos, cms, core
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from daemon import Daemon, RpcError, b64, unb64
from lxml import etree
from pki_services import ORIGIN, FormatsBed, pin_dialogs, run_tool, select_handle
from testbed.softhsm import MODULE
from xades_checks import Signer

from agent.errors import AgentError, TooLarge, Unsupported
from agent.formats.anchors import Anchors
from agent.formats.asic import build_asic_here, read_container
from agent.formats.asic_caps import MIMETYPE, AsicLimits
from agent.formats.job import FormatJob
from agent.formats.network import NetworkSettings

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon, pytest.mark.verifiers]

formats_bed = pki_services.formats_bed
formats_daemon = pki_services.formats_daemon

DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
XADES141 = "http://uri.etsi.org/01903/v1.4.1#"
ASIC = "http://uri.etsi.org/02918/v1.2.1#"
FILES = [
    ("qaimə №117.txt", "Məbləğ: 1250.00 AZN\nTarix: 2026-11-30\n".encode(), "text/plain"),
    ("docs/müqavilə.xml", '<?xml version="1.0"?><Müqavilə nömrə="7"/>'.encode(), None),
    ("data.bin", bytes(range(256)) * 16, "application/octet-stream"),
]
XADESJS_DIR = Path(os.environ.get("IMZA_XADESJS_DIR",
                                  Path(__file__).resolve().parent / "e2e"))


@pytest.fixture(autouse=True)
def _direct(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The loopback services are reached directly whatever proxy this machine has.
    for name, value in pki_services.DIRECT_ENV.items():
        monkeypatch.setenv(name, value)
    yield


# --- the checks ------------------------------------------------------------------------------

def _check_zip(container: bytes, tmp: Path) -> zipfile.ZipFile:
    """EN 319 162-1's container rules as Python's zipfile and Info-ZIP's unzip see them."""
    archive = zipfile.ZipFile(io.BytesIO(container))
    first = archive.infolist()[0]
    assert first.filename == "mimetype" and first.compress_type == zipfile.ZIP_STORED
    assert archive.read(first) == MIMETYPE.encode()
    # Readers find the type at byte 30 of the file: no extra field before it.
    assert container[26:30] == struct.pack("<HH", 8, 0) and container[30:38] == b"mimetype"
    assert container[38:38 + len(MIMETYPE)] == MIMETYPE.encode()
    assert archive.testzip() is None
    path = tmp / "container.asice"
    path.write_bytes(container)
    done = run_tool(["unzip", "-t", str(path)])
    assert done.returncode == 0 and "No errors detected" in done.stdout, done.stdout
    return archive


def _raw_entries(container: bytes) -> dict[str, bytes]:
    """Every entry's local header and data as they sit in the file."""
    archive = zipfile.ZipFile(io.BytesIO(container))
    infos = sorted(archive.infolist(), key=lambda i: i.header_offset)
    ends = [i.header_offset for i in infos[1:]] + [archive.start_dir]  # type: ignore[attr-defined]
    return {i.filename: container[i.header_offset:end] for i, end in zip(infos, ends, strict=True)}


def _extract(archive: zipfile.ZipFile, tmp: Path) -> Path:
    where = tmp / "extracted"
    shutil.rmtree(where, ignore_errors=True)
    archive.extractall(where)
    return where


def _xmlsec(bed: FormatsBed, archive: zipfile.ZipFile, signature: str, tmp: Path) -> None:
    """xmlsec1 checks ``signature`` with every data reference mapped to its file."""
    where = _extract(archive, tmp)
    root = etree.fromstring(archive.read(signature))
    assert root.tag == f"{{{ASIC}}}XAdESSignatures"
    maps = []
    for reference in root.iter(f"{{{DS}}}Reference"):
        uri = reference.get("URI", "")
        if not uri.startswith("#"):
            maps += [f"--url-map:{uri}", str(where / unquote(uri))]
    done = run_tool(["xmlsec1", "--verify", "--trusted-pem", str(bed.anchors[0]),
                     "--untrusted-pem", str(bed.anchors[1]),
                     "--id-attr:Id", f"{XADES}:SignedProperties",
                     "--id-attr:Id", f"{DS}:KeyInfo", *maps, str(where / signature)],
                    cwd=where)
    assert done.returncode == 0 and "OK" in done.stdout + done.stderr, done.stdout + done.stderr


XADESJS_VERIFY = """
import { readFileSync } from "node:fs";
import { webcrypto } from "node:crypto";
import * as xmldom from "@xmldom/xmldom";
import * as xadesjs from "xadesjs";
xadesjs.Application.setEngine("NodeJS", webcrypto);
xadesjs.setNodeDependencies({DOMParser: xmldom.DOMParser,
  XMLSerializer: xmldom.XMLSerializer, DOMImplementation: xmldom.DOMImplementation});
const [signaturePath, spkiPath, algorithmJson, folder] = process.argv.slice(1);
const doc = new xmldom.DOMParser().parseFromString(readFileSync(signaturePath, "utf8"),
                                                   "application/xml");
const node = doc.getElementsByTagNameNS("http://www.w3.org/2000/09/xmldsig#", "Signature")[0];
let ok = false;
try {
  const algorithm = JSON.parse(algorithmJson);
  const key = await webcrypto.subtle.importKey("spki", readFileSync(spkiPath), algorithm,
                                               true, ["verify"]);
  const signed = new xadesjs.SignedXml(doc);
  signed.LoadXml(node);
  // A detached reference names a file of the container: its bytes, as they are.
  signed.contentHandler = async (reference) => reference.Uri && !reference.Uri.startsWith("#")
    ? new Uint8Array(readFileSync(folder + "/" + decodeURIComponent(reference.Uri)))
    : null;
  if (algorithm.namedCurve) {
    signed.Algorithm = {...signed.Algorithm, namedCurve: algorithm.namedCurve};
  }
  ok = await signed.Verify(key);
} catch (error) {
  console.error(String(error));
}
console.log(ok ? "VALID" : "INVALID");
process.exit(ok ? 0 : 1);
"""


def _xadesjs(archive: zipfile.ZipFile, signature: str, cert: x509.Certificate,
             tmp: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("node") is None or not (XADESJS_DIR / "node_modules" / "xadesjs").is_dir():
        pytest.fail(f"node and xadesjs (npm, in {XADESJS_DIR}/node_modules) are needed",
                    pytrace=False)
    where = _extract(archive, tmp)
    # xadesjs knows only XAdES 1.3.2's ArchiveTimeStamp and calls EN 319 132-1's (1.4.1)
    # malformed, checking nothing: it gets the signature without them (they are unsigned;
    # _check_xades_archive_time_stamp checks them).
    root = etree.fromstring(archive.read(signature))
    for stamp in list(root.iter(f"{{{XADES141}}}ArchiveTimeStamp")):
        stamp.getparent().remove(stamp)  # type: ignore[union-attr]
    (where / signature).write_bytes(etree.tostring(root, encoding="utf-8"))
    spki = tmp / "signer.spki"
    key = cert.public_key()
    spki.write_bytes(key.public_bytes(serialization.Encoding.DER,
                                      serialization.PublicFormat.SubjectPublicKeyInfo))
    algorithm = ({"name": "ECDSA", "namedCurve": f"P-{key.curve.key_size}"}
                 if isinstance(key, ec.EllipticCurvePublicKey)
                 else {"name": "RSASSA-PKCS1-v1_5", "hash": "SHA-256"})
    return subprocess.run(["node", "--input-type=module", "-e", XADESJS_VERIFY,
                           str(where / signature), str(spki), json.dumps(algorithm),
                           str(where)],
                          cwd=XADESJS_DIR, capture_output=True, text=True, timeout=60,
                          check=False)


def _check_xades(bed: FormatsBed, archive: zipfile.ZipFile, signature: str,
                 cert: x509.Certificate, tmp: Path, *, xadesjs: bool = True
                 ) -> etree._Element:
    _xmlsec(bed, archive, signature, tmp)
    if xadesjs:
        done = _xadesjs(archive, signature, cert, tmp)
        assert done.returncode == 0 and "VALID" in done.stdout, done.stdout + done.stderr
    root = etree.fromstring(archive.read(signature))
    [sig] = root.findall(f"{{{DS}}}Signature")
    data_refs = {unquote(r.get("URI", "")): r for r in sig.iter(f"{{{DS}}}Reference")
                 if not r.get("URI", "#").startswith("#")}
    assert set(data_refs) == {n for n, _d, _m in FILES}
    formats = {f.get("ObjectReference"): f.findtext(f"{{{XADES}}}MimeType")
               for f in sig.iter(f"{{{XADES}}}DataObjectFormat")}
    for name, _data, mime in FILES:
        reference = data_refs[name]
        assert formats[f"#{reference.get('Id')}"] == (mime or "application/xml")
    return sig


def _check_cades(bed: FormatsBed, archive: zipfile.ZipFile, number: int,
                 tmp: Path) -> cms.SignedData:
    """openssl over the manifest, then each DataObjectReference's digest by hand."""
    manifest_name = f"META-INF/ASiCManifest{number}.xml"
    signature_name = f"META-INF/signature{number}.p7s"
    manifest = archive.read(manifest_name)
    (tmp / "manifest.xml").write_bytes(manifest)
    (tmp / "signature.p7s").write_bytes(archive.read(signature_name))
    done = run_tool(["openssl", "cms", "-verify", "-binary", "-inform", "DER",
                     "-in", str(tmp / "signature.p7s"), "-content", str(tmp / "manifest.xml"),
                     "-CAfile", str(bed.anchors[0]), "-certfile", str(bed.anchors[1]),
                     "-purpose", "any", "-out", os.devnull])
    assert done.returncode == 0 and "Verification successful" in done.stderr, done.stderr
    root = etree.fromstring(manifest)
    assert root.tag == f"{{{ASIC}}}ASiCManifest"
    [sig_ref] = root.findall(f"{{{ASIC}}}SigReference")
    assert unquote(sig_ref.get("URI", "")) == signature_name
    checked = set()
    for reference in root.findall(f"{{{ASIC}}}DataObjectReference"):
        name = unquote(reference.get("URI", ""))
        method = reference.find(f"{{{DS}}}DigestMethod")
        assert method is not None
        md = method.get("Algorithm", "").rsplit("#", 1)[1]
        expected = base64.b64decode(reference.findtext(f"{{{DS}}}DigestValue") or "")
        assert hashlib.new(md, archive.read(name)).digest() == expected, name
        checked.add(name)
    assert checked == {n for n, _d, _m in FILES}
    signed: cms.SignedData = cms.ContentInfo.load(archive.read(signature_name))["content"]
    return signed


# --- long-term levels ------------------------------------------------------------------------

def _xml_values(signature: etree._Element, name: str) -> list[bytes]:
    return [base64.b64decode(n.text or "") for n in signature.iter(f"{{{XADES}}}{name}")]


def _check_long_term_values(bed: FormatsBed, signature: etree._Element,
                            signer: x509.Certificate) -> None:
    """B-LT: the values come after the time-stamp, and OCSP answers for the signer and
    the TSA that signed the real token were fetched after it (D1, D2)."""
    props = signature.find(f".//{{{XADES}}}UnsignedSignatureProperties")
    assert props is not None
    assert [etree.QName(c).localname for c in props][:3] == [
        "SignatureTimeStamp", "CertificateValues", "RevocationValues"]
    token_der = base64.b64decode(
        signature.findtext(f".//{{{XADES}}}SignatureTimeStamp/{{{XADES}}}EncapsulatedTimeStamp")
        or "")
    token = cms.ContentInfo.load(token_der)
    tsa_sid = token["content"]["signer_infos"][0]["sid"].chosen["serial_number"].native
    _md, imprint = cms_checks.token_imprint(token)
    value = signature.find(f"{{{DS}}}SignatureValue")
    assert value is not None
    stamped = etree.tostring(value, method="c14n", exclusive=True, with_comments=False)
    assert hashlib.new(_md, stamped).digest() == imprint
    generated = cms_checks.tsp.TSTInfo.load(
        token["content"]["encap_content_info"]["content"].parsed.dump())["gen_time"].native
    serials = set()
    values = props.find(f"{{{XADES}}}RevocationValues")
    assert values is not None
    for der in _xml_values(values, "EncapsulatedOCSPValue"):
        data = asn1_ocsp.OCSPResponse.load(der)["response_bytes"]["response"].parsed[
            "tbs_response_data"]
        assert data["produced_at"].native >= generated.replace(microsecond=0)
        serials |= {single["cert_id"]["serial_number"].native for single in data["responses"]}
    assert {signer.serial_number, tsa_sid} <= serials
    # Every certificate of both paths is in the signature (KeyInfo or CertificateValues).
    carried = {base64.b64decode(n.text or "") for n in signature.iter(f"{{{DS}}}X509Certificate")}
    carried |= set(_xml_values(signature, "EncapsulatedX509Certificate"))
    tsa = bed.services.tsa
    assert tsa is not None
    pki = bed.services.pki
    for cert in (pki.root.cert, pki.intermediate.cert, tsa.cert):
        assert cert.public_bytes(serialization.Encoding.DER) in carried


async def _check_xades_archive_time_stamp(bed: FormatsBed, archive: zipfile.ZipFile,
                                          name: str) -> None:
    """B-LTA: the archive time-stamp's input recomputed here from EN 319 132-1 §5.5.2
    (each reference's octets — a data file's bytes —, then SignedInfo, SignatureValue,
    KeyInfo and the unsigned signature properties before it, exclusive C14N), its
    imprint compared, its token checked by pyHanko; its TSA's validation data after it."""
    root = etree.fromstring(archive.read(name))
    [signature] = root.findall(f"{{{DS}}}Signature")
    props = signature.find(f".//{{{XADES}}}UnsignedSignatureProperties")
    assert props is not None
    children = [c for c in props if isinstance(c.tag, str)]
    names = [etree.QName(c).localname for c in children]
    assert names == ["SignatureTimeStamp", "CertificateValues", "RevocationValues",
                     "ArchiveTimeStamp", "TimeStampValidationData"]
    stamp = children[3]
    assert etree.QName(stamp).namespace == XADES141

    def exclusive(element: etree._Element) -> bytes:
        return etree.tostring(element, method="c14n", exclusive=True, with_comments=False)

    parts = []
    signed_info = signature.find(f"{{{DS}}}SignedInfo")
    assert signed_info is not None
    for reference in signed_info.findall(f"{{{DS}}}Reference"):
        uri = reference.get("URI", "")
        if uri.startswith("#"):
            [target] = signature.xpath("//*[@Id=$id]", id=uri[1:])
            transforms = [t.get("Algorithm") for t in reference.iter(f"{{{DS}}}Transform")]
            assert transforms == ["http://www.w3.org/2001/10/xml-exc-c14n#"]
            parts.append(exclusive(target))
        else:
            assert reference.find(f"{{{DS}}}Transforms") is None
            parts.append(archive.read(unquote(uri)))
    key_info = signature.find(f"{{{DS}}}KeyInfo")
    value = signature.find(f"{{{DS}}}SignatureValue")
    assert key_info is not None and value is not None
    parts += [exclusive(signed_info), exclusive(value), exclusive(key_info)]
    parts += [exclusive(c) for c in children[:3]]
    token = cms.ContentInfo.load(base64.b64decode(
        stamp.findtext(f"{{{XADES}}}EncapsulatedTimeStamp") or ""))
    md, imprint = cms_checks.token_imprint(token)
    assert hashlib.new(md, b"".join(parts)).digest() == imprint
    await cms_checks.pyhanko_timestamp(token, imprint, pki_services.trust_context(bed))
    # The archive TSA's own validation data follows it.
    assert _xml_values(children[4], "EncapsulatedOCSPValue") or \
        _xml_values(children[4], "EncapsulatedCRLValue")


class _AnySequence(core.SequenceOf):  # type: ignore[misc]
    _child_spec = core.Any


def _archive_imprint(der_before: bytes, content: bytes, md: str,
                     token: cms.ContentInfo) -> bytes:
    """EN 319 122-1 §5.5.3, written here from the standard: eContentType, the content's
    hash, the SignerInfo's fields and the ATSHashIndexV3, whose every entry is checked
    against the signature as it was before the archive time-stamp."""
    signed = cms_checks.signed_data(der_before)
    info = signed["signer_infos"][0]
    [index] = [a["values"][0] for a in token["content"]["signer_infos"][0]["unsigned_attrs"]
               if a["type"].dotted == cms_checks.ATS_HASH_INDEX_V3]
    raw_index = index.dump()
    items = [item.dump() for item in _AnySequence.load(raw_index)]
    index_md = "sha256"
    if len(items) == 4:  # hashIndAlgorithm present (its DEFAULT is sha256)
        index_md = algos.DigestAlgorithm.load(items[0])["algorithm"].native
        items = items[1:]

    def hashes_in(raw: bytes) -> list[bytes]:
        return [core.OctetString.load(c.dump()).native for c in _AnySequence.load(raw)]

    def h(data: bytes) -> bytes:
        return hashlib.new(index_md, data).digest()

    assert hashes_in(items[0]) == [h(c.dump()) for c in signed["certificates"]]
    assert hashes_in(items[1]) == [h(c.dump()) for c in signed["crls"] or []]
    assert hashes_in(items[2]) == [h(a["type"].dump() + v.dump())
                                   for a in info["unsigned_attrs"] or [] for v in a["values"]]
    parts = [signed["encap_content_info"]["content_type"].dump(),
             hashlib.new(md, content).digest()]
    parts += [info[name].dump() for name in ("version", "sid", "digest_algorithm",
                                             "signed_attrs", "signature_algorithm",
                                             "signature")]
    parts.append(raw_index)
    return hashlib.new(md, b"".join(parts)).digest()


async def _check_archive_time_stamp(bed: FormatsBed, archive: zipfile.ZipFile,
                                    number: int) -> None:
    """B-LTA of a container's CAdES signature, checked by pyHanko offline and from the
    standard's archive-time-stamp-v3 imprint."""
    der = archive.read(f"META-INF/signature{number}.p7s")
    manifest = archive.read(f"META-INF/ASiCManifest{number}.xml")
    # pyHanko, offline, on what the signature carries (hard-fail: nothing may be missing).
    ocsps, crls = [], []
    for choice in cms_checks.signed_data(der)["crls"] or []:
        if choice.name == "crl":
            crls.append(choice.chosen)
        else:
            ocsps.append(choice.chosen["other_rev_info"])
    assert ocsps
    offline = pki_services.trust_context(bed, allow_fetching=False,
                                         revocation_mode="hard-fail", ocsps=ocsps, crls=crls)
    await cms_checks.pyhanko_validate(der, manifest, 0, offline, offline)
    # The archive-time-stamp-v3 covers the manifest: its imprint recomputed from
    # EN 319 122-1 §5.5.3 over the signature as it was before it, and its token checked
    # by pyHanko's time-stamp validation.
    [token] = cms_checks.archive_tokens(der, 0)
    content = cms_checks.signed_data(der)
    info = content["signer_infos"][0]
    info["unsigned_attrs"] = [a for a in info["unsigned_attrs"]
                              if a["type"].dotted != cms_checks.ATS_V3]
    before = cms.ContentInfo({"content_type": "signed_data", "content": content}).dump()
    md, imprint = cms_checks.token_imprint(token)
    assert _archive_imprint(before, manifest, md, token) == imprint
    await cms_checks.pyhanko_timestamp(token, imprint, pki_services.trust_context(bed))


# --- through the daemon -------------------------------------------------------------------

async def _sign(daemon: Daemon, bed: FormatsBed, identity: str, params: dict[str, Any]
                ) -> tuple[bytes, list[dict[str, Any]]]:
    mark = daemon.transcript_mark()
    async with daemon.client(ORIGIN) as client:
        handle = await select_handle(client, bed.serial(identity))
        result = await client.call("sign.asic", {"handle": handle, **params}, timeout=60)
    return unb64(result["container"]), pin_dialogs(daemon, mark)


def _files() -> list[dict[str, str]]:
    return [{"name": n, "data": b64(d), **({"mimeType": m} if m else {})} for n, d, m in FILES]


def _previewed(dialogs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    [dialog] = dialogs  # one key use: one dialog, one PIN
    assert dialog["count"] == 1
    return {p["name"]: p for p in dialog["previews"]}


def _check_previews(dialogs: list[dict[str, Any]]) -> None:
    shown = _previewed(dialogs)
    assert set(shown) == {n for n, _d, _m in FILES}
    for name, data, _mime in FILES:
        assert shown[name]["sha256"] == hashlib.sha256(data).hexdigest()
        assert shown[name]["size"] == len(data)
    assert shown["qaimə №117.txt"]["kind"] == "text"
    assert shown["data.bin"]["kind"] == "binary"


async def test_xades_container_with_a_second_signer(formats_daemon: Daemon,
                                                     formats_bed: FormatsBed,
                                                     tmp_path: Path) -> None:
    first, dialogs = await _sign(formats_daemon, formats_bed, "rsa", {
        "files": _files(), "signatureFormat": "xades", "level": "B-B"})
    _check_previews(dialogs)
    archive = _check_zip(first, tmp_path)
    names = archive.namelist()
    assert names[:1] == ["mimetype"] and "META-INF/manifest.xml" in names
    assert "META-INF/signatures1.xml" in names
    for name, data, _mime in FILES:
        assert archive.read(name) == data
    _check_xades(formats_bed, archive, "META-INF/signatures1.xml",
                 formats_bed.identities["rsa"].cert, tmp_path)

    # A second signer (EC, B-LTA) over the same files: a new signature file, every
    # existing entry kept byte for byte (the dialog lists what the container holds).
    second, dialogs = await _sign(formats_daemon, formats_bed, "ec", {
        "container": b64(first), "signatureFormat": "xades", "level": "B-LTA",
        "tsaUrl": formats_bed.services.url("/tsa")})
    _check_previews(dialogs)
    archive = _check_zip(second, tmp_path)
    before, after = _raw_entries(first), _raw_entries(second)
    assert set(after) == set(before) | {"META-INF/signatures2.xml"}
    assert all(after[name] == raw for name, raw in before.items())
    # The first signature still holds in the new container (its bytes are the same).
    _check_xades(formats_bed, archive, "META-INF/signatures1.xml",
                 formats_bed.identities["rsa"].cert, tmp_path, xadesjs=False)
    sig = _check_xades(formats_bed, archive, "META-INF/signatures2.xml",
                       formats_bed.identities["ec"].cert, tmp_path)
    _check_long_term_values(formats_bed, sig, formats_bed.identities["ec"].cert)
    await _check_xades_archive_time_stamp(formats_bed, archive, "META-INF/signatures2.xml")

    # xadesjs is not lenient: the same signature over a changed file fails.
    tampered = io.BytesIO()
    with zipfile.ZipFile(tampered, "w") as out:
        for info in archive.infolist():
            data = archive.read(info)
            out.writestr(info, data.replace(b"1250.00", b"9250.00"))
    done = _xadesjs(zipfile.ZipFile(tampered), "META-INF/signatures2.xml",
                    formats_bed.identities["ec"].cert, tmp_path)
    assert done.returncode != 0 and "INVALID" in done.stdout, done.stdout + done.stderr


async def test_cades_container_with_a_second_signer(formats_daemon: Daemon,
                                                     formats_bed: FormatsBed,
                                                     tmp_path: Path) -> None:
    first, dialogs = await _sign(formats_daemon, formats_bed, "ec", {
        "files": _files(), "signatureFormat": "cades", "level": "B-B"})
    _check_previews(dialogs)
    archive = _check_zip(first, tmp_path)
    assert {"META-INF/ASiCManifest1.xml", "META-INF/signature1.p7s"} <= set(archive.namelist())
    _check_cades(formats_bed, archive, 1, tmp_path)

    second, dialogs = await _sign(formats_daemon, formats_bed, "rsa", {
        "container": b64(first), "signatureFormat": "cades", "level": "B-LTA",
        "tsaUrl": formats_bed.services.url("/tsa")})
    _check_previews(dialogs)
    archive = _check_zip(second, tmp_path)
    before, after = _raw_entries(first), _raw_entries(second)
    assert set(after) == set(before) | {"META-INF/ASiCManifest2.xml", "META-INF/signature2.p7s"}
    assert all(after[name] == raw for name, raw in before.items())
    _check_cades(formats_bed, archive, 1, tmp_path)
    signed = _check_cades(formats_bed, archive, 2, tmp_path)
    [signer] = signed["signer_infos"]
    unsigned = [a["type"].native for a in signer["unsigned_attrs"] or []]
    assert "signature_time_stamp_token" in unsigned
    await _check_archive_time_stamp(formats_bed, archive, 2)
    # The message digest is the manifest's: a changed manifest no longer verifies.
    (tmp_path / "manifest.xml").write_bytes(
        archive.read("META-INF/ASiCManifest2.xml").replace(b"data.bin", b"data.BIN"))
    done = run_tool(["openssl", "cms", "-verify", "-binary", "-inform", "DER",
                     "-in", str(tmp_path / "signature.p7s"),
                     "-content", str(tmp_path / "manifest.xml"),
                     "-CAfile", str(formats_bed.anchors[0]),
                     "-certfile", str(formats_bed.anchors[1]), "-purpose", "any",
                     "-out", os.devnull])
    assert done.returncode != 0


# --- hostile containers ------------------------------------------------------------------------

def _container(entries: list[tuple[str, bytes]], *, mimetype: bool = True,
               compress: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        if mimetype:
            archive.writestr(zipfile.ZipInfo("mimetype"), MIMETYPE)
        for name, data in entries:
            info = zipfile.ZipInfo(name)
            info.compress_type = compress
            archive.writestr(info, data)
    return buffer.getvalue()


def _named(written: str, hostile: str, *others: tuple[str, bytes]) -> bytes:
    """A container with an entry written as ``written``, then renamed in place (local
    header and central directory) to ``hostile``, a name zipfile would not write."""
    container = _container([*others, (written, b"evil")])
    old, new = written.encode(), hostile.encode()
    assert len(old) == len(new) and container.count(old) == 2
    return container.replace(old, new)


@functools.cache
def zip_bomb() -> bytes:
    # 32 MB of zeros deflate to about 32 kB: a ratio of 1000:1.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), MIMETYPE)
        info = zipfile.ZipInfo("bomb.txt")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=False) as out:
            chunk = bytes(1024 * 1024)
            for _ in range(32):
                out.write(chunk)
    data = buffer.getvalue()
    assert len(data) < 1024 * 1024
    return data


def many_entries(count: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), MIMETYPE)
        for index in range(count):
            archive.writestr(zipfile.ZipInfo(f"f{index}"), b"")
    return buffer.getvalue()


def understated_count(count: int) -> bytes:
    """``count`` entries, with an end record that claims 3: zipfile reads the directory
    by its size, so only the size can tell."""
    data = many_entries(count)
    end = data.rfind(b"PK\x05\x06")
    return data[:end + 8] + struct.pack("<HH", 3, 3) + data[end + 12:]


HOSTILE: dict[str, tuple[Callable[[], bytes], type[AgentError], str]] = {
    "zip bomb": (zip_bomb, TooLarge, "compressed more than"),
    "dot-dot": (lambda: _named("aa/evil.txt", "../evil.txt"), Unsupported, "'..'"),
    "absolute": (lambda: _named("xevil.txt", "/evil.txt"), Unsupported, "starts with '/'"),
    "backslash": (lambda: _named("a/evil.txt", "a\\evil.txt"), Unsupported, "'\\'"),
    "duplicate": (lambda: _named("b.txt", "a.txt", ("a.txt", b"x")), Unsupported, "same name"),
    "many entries": (lambda: many_entries(5000), TooLarge, "more than 1000 entries"),
    "understated count": (lambda: understated_count(50_000), TooLarge,
                          "directory is larger than 1000 entries need"),
    "no mimetype": (lambda: _container([("a.txt", b"x")], mimetype=False), Unsupported,
                    "not an ASiC-E container"),
    "not a zip": (lambda: b"%PDF-1.7\n" + bytes(100), Unsupported, "not a ZIP"),
}


def _job(bed: FormatsBed, identity: str) -> tuple[FormatJob, Signer]:
    issued = bed.identities[identity]
    signer = Signer(issued)
    pki = bed.services.pki
    return FormatJob(sign=signer, certificate=issued.cert, chain=[pki.intermediate.cert],
                     anchors=Anchors(roots=[pki.root.cert], others=[pki.intermediate.cert]),
                     network=NetworkSettings(timeout=5.0), tsa_url=None), signer


def _build(job: FormatJob, limits: AsicLimits | None = None, **args: Any) -> bytes:
    return asyncio.run(build_asic_here(job, signature_format=args.pop("fmt", "xades"),
                                       level="B-B", digest_algorithm=None,
                                       limits=limits or AsicLimits(), **args))


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_container_is_refused_before_signing(formats_bed: FormatsBed,
                                                      case: str) -> None:
    make, error, words = HOSTILE[case]
    container = make()
    job, signer = _job(formats_bed, "rsa")
    with pytest.raises(error) as raised:
        _build(job, container=container)
    assert words in str(raised.value)
    assert signer.calls == [] and signer.confirmed_at is None


def test_limits_are_the_settings(formats_bed: FormatsBed, tmp_path: Path) -> None:
    """Each bound is the named setting's value, not a constant: lowered, it refuses what
    the defaults accept."""
    job, _ = _job(formats_bed, "rsa")
    files = [{"name": n, "data": d, "mime_type": m} for n, d, m in FILES]
    good = _build(job, files=files)
    _check_zip(good, tmp_path)
    read = read_container(good, AsicLimits(), "sha256")
    assert [f.name for f in read.files] == [n for n, _d, _m in FILES]
    refusals: list[tuple[AsicLimits, type[AgentError], str]] = [
        (AsicLimits(files=2), TooLarge, "more than 2 files"),
        (AsicLimits(entries=5), TooLarge, "more than 5 entries"),
        (AsicLimits(unpacked_bytes=4000), TooLarge, "over 4000 bytes"),
        (AsicLimits(ratio=2, ratio_floor_bytes=1000), TooLarge, "more than 2:1"),
        (AsicLimits(name_bytes=10), Unsupported, "longer than 10 bytes"),
    ]
    for limits, error, words in refusals:
        with pytest.raises(error) as raised:
            _build(job, limits, container=good)
        assert words in str(raised.value), limits
    with pytest.raises(TooLarge):
        _build(job, AsicLimits(files=2), files=files)


async def test_hostile_containers_through_the_daemon(formats_daemon: Daemon,
                                                      formats_bed: FormatsBed,
                                                      tmp_path: Path) -> None:
    async with formats_daemon.client(ORIGIN) as client:
        handle = await select_handle(client, formats_bed.serial("rsa"))
        info = await client.call("agent.info")
        assert "sign.asic" in info["features"]
        assert info["formats"]["asic"] == ["B-B", "B-T", "B-LT", "B-LTA"]
        assert info["digestAlgorithms"]["asic"] == ["SHA-256", "SHA-384", "SHA-512"]
        for case in ("zip bomb", "dot-dot", "duplicate", "many entries"):
            make, error, words = HOSTILE[case]
            container = make()
            mark = formats_daemon.transcript_mark()
            with pytest.raises(RpcError) as raised:
                await client.call("sign.asic", {
                    "handle": handle, "container": b64(container),
                    "signatureFormat": "cades", "level": "B-B"}, timeout=60)
            assert raised.value.reason == error.reason, case
            assert words in raised.value.error["message"], case
            assert pin_dialogs(formats_daemon, mark) == [], case  # refused before the PIN
        # Bad names of a new container's files: refused as parameters.
        for name in ("../a.txt", "/a.txt", "META-INF/a.xml", "a/./b", "c:evil"):
            with pytest.raises(RpcError) as raised:
                await client.call("sign.asic", {
                    "handle": handle, "files": [{"name": name, "data": b64(b"x")}],
                    "signatureFormat": "xades", "level": "B-B"})
            assert raised.value.code == -32602 and "file name" in raised.value.error["message"]
        with pytest.raises(RpcError) as raised:
            await client.call("sign.asic", {
                "handle": handle, "files": [{"name": "a.txt", "data": b64(b"x")},
                                            {"name": "A.TXT", "data": b64(b"y")}],
                "signatureFormat": "xades", "level": "B-B"})
        assert "same name" in raised.value.error["message"]
        # ... and the daemon still serves.
        result = await client.call("sign.asic", {
            "handle": handle, "files": [{"name": "ok.txt", "data": b64(b"ok")}],
            "signatureFormat": "xades", "level": "B-T",
            "tsaUrl": formats_bed.services.url("/tsa")}, timeout=60)
    archive = _check_zip(unb64(result["container"]), tmp_path)
    assert archive.read("ok.txt") == b"ok"
    _xmlsec(formats_bed, archive, "META-INF/signatures1.xml", tmp_path)
    signature = etree.fromstring(archive.read("META-INF/signatures1.xml"))
    assert [etree.QName(c).localname for c in signature.find(
        f".//{{{XADES}}}UnsignedSignatureProperties")] == ["SignatureTimeStamp"]


@pytest.fixture(scope="module")
def tight_daemon(formats_bed: FormatsBed, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[Daemon]:
    """A daemon whose [documents] container settings are lowered."""
    home = tmp_path_factory.mktemp("asic-tight") / "agent"
    daemon = Daemon(home=home, modules=[MODULE],
                    env={**pki_services.DIRECT_ENV, **formats_bed.token.env},
                    config={"formats": {"trust_anchors": [str(p) for p in formats_bed.anchors],
                                        "revocation": "enforce"},
                            "documents": {"max_container_files": 2,
                                          "max_container_name_bytes": 30},
                            "ui": {"max_filtered_selects_per_site": 10000}},
                    answers={"consent": "always", "certificate": "first",
                             "pin": formats_bed.token.pin}).start()
    try:
        yield daemon
    finally:
        code = daemon.stop()
    assert code == 0, "the daemon did not stop cleanly"


async def test_container_settings_bound_requests(tight_daemon: Daemon,
                                                 formats_bed: FormatsBed) -> None:
    job, _ = _job(formats_bed, "rsa")
    three = await build_asic_here(
        job, signature_format="xades", level="B-B", digest_algorithm=None,
        limits=AsicLimits(), files=[{"name": n, "data": d, "mime_type": m} for n, d, m in FILES])
    async with tight_daemon.client(ORIGIN) as client:
        handle = await select_handle(client, formats_bed.serial("rsa"))
        base = {"handle": handle, "signatureFormat": "cades", "level": "B-B"}
        with pytest.raises(RpcError) as raised:
            await client.call("sign.asic", {**base, "files": _files()})
        assert raised.value.reason == "TOO_LARGE"
        assert "max_container_files" in raised.value.error["message"]
        with pytest.raises(RpcError) as raised:
            await client.call("sign.asic", {**base, "container": b64(three)}, timeout=60)
        assert raised.value.reason == "TOO_LARGE"
        assert "more than 2 files" in raised.value.error["message"]
        with pytest.raises(RpcError) as raised:
            await client.call("sign.asic", {**base, "files": [
                {"name": "n" * 27 + ".txt", "data": b64(b"x")}]})
        assert raised.value.reason == "UNSUPPORTED"
        assert "longer than 30 bytes" in raised.value.error["message"]
        result = await client.call("sign.asic", {**base, "files": [
            {"name": "short.txt", "data": b64(b"x")}]}, timeout=60)
    assert zipfile.ZipFile(io.BytesIO(unb64(result["container"]))).read("short.txt") == b"x"


# --- parameters ------------------------------------------------------------------------------

def _params(**changes: Any) -> dict[str, Any]:
    return {"handle": "h-1", "signatureFormat": "xades", "level": "B-B",
            "files": [{"name": "a.txt", "data": b64(b"x")}], **changes}


@pytest.mark.parametrize(("changes", "words"), [
    ({"files": [{"name": "a.txt", "data": b64(b"x"), "mimeType": "text/plain; x=<y>"}]},
     "String should match pattern"),
    ({"container": b64(b"PK")}, "not both"),
    ({"files": None}, "give either files"),
    ({"files": [{"name": "a\\b.txt", "data": b64(b"x")}]}, "contains '\\'"),
    ({"files": [{"name": "mimetype", "data": b64(b"x")}]}, "mimetype"),
    ({"files": [{"name": "a/", "data": b64(b"x")}]}, "empty"),
    ({"files": [{"name": "a\x01", "data": b64(b"x")}]}, "control characters"),
    ({"files": []}, "at least 1"),
])
def test_params_refuse_what_a_container_cannot_hold(changes: dict[str, Any], words: str) -> None:
    from pydantic import ValidationError

    from agent.protocol.params_asic import SignAsicParams

    with pytest.raises(ValidationError) as raised:
        SignAsicParams.model_validate(_params(**changes), by_alias=True, by_name=False)
    assert words in str(raised.value)
    # The same request with its files as they should be is accepted.
    assert SignAsicParams.model_validate(_params(), by_alias=True, by_name=False).files
