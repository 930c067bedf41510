"""Issue 14 §5: the defects the independent check found in the format builders, each with
a test that failed before its fix.  The builders run in this process (what a document
worker runs) with a software key issued by the loopback PKI and the real loopback TSA,
OCSP and CRL services; what they produce is checked by validators we did not write:
openssl, xmlsec1, pyHanko's validator (offline for LT)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pki_services
import pytest
from asn1crypto import cms, tsp
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from daemon import Daemon, b64, unb64
from lxml import etree
from pki_services import ORIGIN, FormatsBed, Issued, run_tool, select_handle
from xades_checks import Signer

from agent.errors import NetworkError, Unsupported
from agent.formats.anchors import Anchors
from agent.formats.cades import build_cades_here
from agent.formats.job import FormatJob
from agent.formats.network import NetworkSettings
from agent.formats.xades import build_xades_here

formats_bed = pki_services.formats_bed
pytestmark = [pytest.mark.softhsm, pytest.mark.verifiers]

DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
DATA = "Vergi bəyannaməsi № 2024-117".encode()
# A default namespace on the host document: what D4 broke.
INVOICE = ('<?xml version="1.0" encoding="UTF-8"?>'
           '<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2" '
           'xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">'
           '<cbc:ID>GIB2024000000117</cbc:ID><Note>Qaimə</Note></Invoice>').encode()
DIALOG_SECONDS = 2.0


def _job(bed: FormatsBed, issued: Issued, tsa_path: str | None = None,
         document_name: str | None = None, delay: float = 0.0
         ) -> tuple[FormatJob, Signer]:
    signatures = Signer(issued, delay)
    pki = bed.services.pki
    job = FormatJob(
        sign=signatures, certificate=issued.cert, chain=[pki.intermediate.cert],
        anchors=Anchors(roots=[pki.root.cert], others=[pki.intermediate.cert]),
        network=NetworkSettings(timeout=5.0),
        tsa_url=bed.services.url(tsa_path) if tsa_path else None,
        document_name=document_name)
    return job, signatures


@pytest.fixture(scope="module")
def p384(formats_bed: FormatsBed) -> Issued:
    return formats_bed.services.issue("p384", "EC384")


@pytest.fixture(autouse=True)
def _direct(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The loopback services are reached directly whatever proxy this machine has.
    for name, value in pki_services.DIRECT_ENV.items():
        monkeypatch.setenv(name, value)
    yield


def _token_signer_cert(token: cms.ContentInfo) -> x509.Certificate:
    sid = token["content"]["signer_infos"][0]["sid"].chosen
    for choice in token["content"]["certificates"]:
        cert = choice.chosen
        if cert.issuer == sid["issuer"] and cert.serial_number == sid["serial_number"].native:
            return x509.load_der_x509_certificate(cert.dump())
    raise AssertionError("the token does not carry its signer's certificate")


def _ocsp_subjects(signed: cms.SignedData) -> list[tuple[int, object]]:
    """(serial, producedAt) of every embedded OCSP response."""
    found = []
    for choice in signed["crls"] or []:
        if choice.name != "other":
            continue
        response = asn1_ocsp.OCSPResponse.load(choice.chosen["other_rev_info"].dump())
        data = response["response_bytes"]["response"].parsed["tbs_response_data"]
        for single in data["responses"]:
            found.append((single["cert_id"]["serial_number"].native,
                          data["produced_at"].native))
    return found


def _openssl_verify_cms(bed: FormatsBed, der: bytes, tmp: Path) -> None:
    (tmp / "sig.der").write_bytes(der)
    (tmp / "data").write_bytes(DATA)
    ca = tmp / "ca.pem"
    ca.write_bytes(b"".join(p.read_bytes() for p in bed.anchors))
    done = run_tool(["openssl", "cms", "-verify", "-binary", "-inform", "DER",
                     "-in", str(tmp / "sig.der"), "-content", str(tmp / "data"),
                     "-CAfile", str(ca), "-purpose", "any", "-out", "/dev/null"])
    assert done.returncode == 0, done.stderr


# --- D1: the real token's TSA, not the trial's ------------------------------------------

def test_d1_cades_lt_carries_the_data_of_the_tsa_that_signed_the_real_token(
        formats_bed: FormatsBed, tmp_path: Path) -> None:
    """``/tsa-rotating`` answers the trial request with one TSA certificate and the real
    one with the other.  Before the fix the OCSP response embedded was for the trial's
    TSA; now it is for the real token's signer (and the signer's)."""
    services = formats_bed.services
    identity = formats_bed.identities["rsa"]
    job, _ = _job(formats_bed, identity, "/tsa-rotating")
    digest = hashlib.sha256(DATA).digest()
    der = asyncio.run(build_cades_here(job, digest, "sha256", "LT"))
    signed = cms.ContentInfo.load(der)["content"]
    attrs = signed["signer_infos"][0]["unsigned_attrs"]
    token = next(a["values"][0] for a in attrs
                 if a["type"].native == "signature_time_stamp_token")
    real_tsa = _token_signer_cert(token)
    assert services.tsa is not None and services.tsa_second is not None
    # The rotation really happened: the real token is not from the trial's TSA.
    assert real_tsa.serial_number in (services.tsa.cert.serial_number,
                                      services.tsa_second.cert.serial_number)
    serials = [serial for serial, _ in _ocsp_subjects(signed)]
    assert real_tsa.serial_number in serials, "no OCSP for the real token's TSA"
    assert identity.cert.serial_number in serials
    embedded = {c.chosen.dump() for c in signed["certificates"]}
    assert real_tsa.public_bytes(serialization.Encoding.DER) in embedded
    _openssl_verify_cms(formats_bed, der, tmp_path)


def test_d1_real_token_tsa_without_data_is_network(formats_bed: FormatsBed) -> None:
    """The trial is answered by a TSA whose status can be had, the real token by one
    whose status cannot (``/tsa-flip``): B-LT must fail with NETWORK, not come out B-T."""
    services = formats_bed.services
    services.flips = 0
    job, signatures = _job(formats_bed, formats_bed.identities["rsa"], "/tsa-flip")
    with pytest.raises(NetworkError) as raised:
        asyncio.run(build_cades_here(job, hashlib.sha256(DATA).digest(), "sha256", "LT"))
    assert raised.value.data.get("service") == "REVOCATION"
    assert len(signatures.calls) == 1  # it failed after signing: the real token's TSA


# --- D2: OCSP after the time-stamp ------------------------------------------------------

def test_d2_cades_lt_ocsp_is_produced_after_the_time_stamp(formats_bed: FormatsBed) -> None:
    identity = formats_bed.identities["ec"]
    # The user takes a while in the dialog: an OCSP response fetched before it is older
    # than the time-stamp by at least that long.
    job, _ = _job(formats_bed, identity, "/tsa", delay=DIALOG_SECONDS)
    der = asyncio.run(build_cades_here(job, hashlib.sha256(DATA).digest(), "sha256", "LT"))
    signed = cms.ContentInfo.load(der)["content"]
    attrs = signed["signer_infos"][0]["unsigned_attrs"]
    token = next(a["values"][0] for a in attrs
                 if a["type"].native == "signature_time_stamp_token")
    info = token["content"]["encap_content_info"]["content"].parsed
    assert isinstance(info, tsp.TSTInfo)
    stamped = info["gen_time"].native
    produced = [at for serial, at in _ocsp_subjects(signed)
                if serial == identity.cert.serial_number]
    assert produced, "no OCSP response for the signer"
    # The responder stamps producedAt in whole seconds (and the TSA genTime may carry
    # fractions): compare at second precision.
    assert all(at >= stamped.replace(microsecond=0) for at in produced), (produced, stamped)


# --- D4: SignedProperties digest independent of the host's namespaces ---------------------

def _xmlsec(bed: FormatsBed, xml: bytes, tmp: Path) -> None:
    path = tmp / "signed.xml"
    path.write_bytes(xml)
    done = run_tool(["xmlsec1", "--verify", "--trusted-pem", str(bed.anchors[0]),
                     "--untrusted-pem", str(bed.anchors[1]),
                     "--id-attr:Id", f"{XADES}:SignedProperties",
                     "--id-attr:Id", f"{DS}:KeyInfo", str(path)], cwd=tmp)
    assert done.returncode == 0, done.stdout + done.stderr


def test_d4_signed_properties_reference_uses_exclusive_c14n(formats_bed: FormatsBed,
                                                            tmp_path: Path) -> None:
    job, _ = _job(formats_bed, formats_bed.identities["rsa"], document_name="invoice.xml")
    signed = asyncio.run(build_xades_here(job, INVOICE, "B-B", "enveloped"))
    _xmlsec(formats_bed, signed, tmp_path)
    root = etree.fromstring(signed)
    props = root.find(f".//{{{XADES}}}SignedProperties")
    assert props is not None
    reference = next(r for r in root.iter(f"{{{DS}}}Reference")
                     if r.get("URI") == f"#{props.get('Id')}")
    transforms = [t.get("Algorithm") for t in reference.iter(f"{{{DS}}}Transform")]
    assert transforms == [EXC_C14N]
    # The digest is the same outside the host document: the default namespace of
    # <Invoice> is not part of what was digested.
    alone = etree.fromstring(etree.tostring(props))
    expected = hashlib.sha256(etree.tostring(alone, method="c14n", exclusive=True)).digest()
    value = reference.find(f"{{{DS}}}DigestValue")
    assert value is not None and base64.b64decode(value.text or "") == expected


# --- D5: the DataObjectFormat says what the document is ------------------------------------

def test_d5_data_object_format_names_the_document(formats_bed: FormatsBed,
                                                  tmp_path: Path) -> None:
    job, _ = _job(formats_bed, formats_bed.identities["ec"], document_name="qaimə-117.xml")
    signed = asyncio.run(build_xades_here(job, INVOICE, "B-B", "enveloped"))
    _xmlsec(formats_bed, signed, tmp_path)
    root = etree.fromstring(signed)
    fmt = root.find(f".//{{{XADES}}}DataObjectFormat")
    assert fmt is not None
    assert fmt.findtext(f"{{{XADES}}}Description") == "qaimə-117.xml"
    assert fmt.findtext(f"{{{XADES}}}MimeType") == "text/xml"


# --- D6: the digest follows the key, or the page ------------------------------------------

def _algorithms(xml: bytes) -> tuple[set[str], str]:
    root = etree.fromstring(xml)
    digests = {d.get("Algorithm") or "" for d in root.iter(f"{{{DS}}}DigestMethod")
               if d.getparent() is not None
               and d.getparent().tag == f"{{{DS}}}Reference"}  # type: ignore[union-attr]
    method = root.find(f".//{{{DS}}}SignatureMethod")
    assert method is not None
    return digests, method.get("Algorithm") or ""


def test_d6_xades_p384_defaults_to_sha384(formats_bed: FormatsBed, p384: Issued,
                                          tmp_path: Path) -> None:
    job, signatures = _job(formats_bed, p384, document_name="invoice.xml")
    signed = asyncio.run(build_xades_here(job, INVOICE, "B-B", "enveloped"))
    _xmlsec(formats_bed, signed, tmp_path)
    digests, method = _algorithms(signed)
    assert digests == {"http://www.w3.org/2001/04/xmldsig-more#sha384"}
    assert method == "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"
    assert signatures.calls == [("sha384", True)]


def test_d6_xades_page_chosen_digest(formats_bed: FormatsBed, tmp_path: Path) -> None:
    job, signatures = _job(formats_bed, formats_bed.identities["rsa"])
    signed = asyncio.run(build_xades_here(job, INVOICE, "B-B", "enveloped", "sha512"))
    _xmlsec(formats_bed, signed, tmp_path)
    digests, method = _algorithms(signed)
    assert digests == {"http://www.w3.org/2001/04/xmlenc#sha512"}
    assert method == "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
    assert signatures.calls == [("sha512", False)]
    with pytest.raises(Unsupported):
        asyncio.run(build_xades_here(job, INVOICE, "B-B", "enveloped", "md5"))


# --- D7: a namespace IRI is not "malformed" -------------------------------------------------

def test_d7_non_ascii_namespace_is_not_reported_malformed(formats_bed: FormatsBed) -> None:
    document = ('<?xml version="1.0" encoding="UTF-8"?>'
                '<q:Qaimə xmlns:q="http://vergi.az/qaimə"><q:Cəm>1</q:Cəm></q:Qaimə>').encode()
    job, signatures = _job(formats_bed, formats_bed.identities["rsa"])
    with pytest.raises(Unsupported) as raised:
        asyncio.run(build_xades_here(job, document, "B-B", "enveloped"))
    assert "not well-formed" not in str(raised.value)
    assert "namespace" in str(raised.value)
    assert signatures.calls == []  # refused before the dialog
    # A document that really is malformed still says so.
    with pytest.raises(Unsupported, match="not well-formed"):
        asyncio.run(build_xades_here(job, b"<a><b></a>", "B-B", "enveloped"))


# --- PAdES: D1 and D6 ------------------------------------------------------------------------

def _pdf() -> bytes:
    from test_formats_pdf import minimal_pdf

    return minimal_pdf()


def _dss_ocsp_serials(pdf: bytes) -> tuple[list[int], list[bytes], list[bytes]]:
    from io import BytesIO

    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation.dss import DocumentSecurityStore

    dss = DocumentSecurityStore.read_dss(PdfFileReader(BytesIO(pdf)))
    ocsps = [o.get_object().data for o in dss.ocsps]
    crls = [c.get_object().data for c in dss.crls]
    serials = []
    for der in ocsps:
        data = asn1_ocsp.OCSPResponse.load(der)["response_bytes"]["response"].parsed
        serials += [s["cert_id"]["serial_number"].native
                    for s in data["tbs_response_data"]["responses"]]
    return serials, ocsps, crls


def test_d1_pades_b_lt_carries_the_data_of_the_real_tokens_tsa(formats_bed: FormatsBed
                                                               ) -> None:
    from io import BytesIO

    from pki_services import trust_context
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import async_validate_pdf_signature

    from agent.formats.pades import build_pades_here

    identity = formats_bed.identities["rsa"]
    job, _ = _job(formats_bed, identity, "/tsa-rotating", delay=DIALOG_SECONDS)
    pdf = asyncio.run(build_pades_here(job, _pdf(), "B-LT", reason=None, location=None,
                                       field_name=None))
    [sig] = PdfFileReader(BytesIO(pdf)).embedded_signatures
    token = sig.signer_info["unsigned_attrs"][0]["values"][0]
    real_tsa = _token_signer_cert(token)
    serials, ocsps, crls = _dss_ocsp_serials(pdf)
    assert real_tsa.serial_number in serials, "no OCSP for the real token's TSA"
    # D2: the signer's OCSP response is not older than the signature time-stamp.
    stamped = token["content"]["encap_content_info"]["content"].parsed["gen_time"].native
    produced = [asn1_ocsp.OCSPResponse.load(der)["response_bytes"]["response"].parsed[
        "tbs_response_data"]["produced_at"].native for der in ocsps]
    assert produced and min(produced) >= stamped.replace(microsecond=0), (produced, stamped)
    # pyHanko, offline and hard-fail, on the DSS alone.
    offline = trust_context(formats_bed, allow_fetching=False, revocation_mode="hard-fail",
                            ocsps=ocsps, crls=crls)
    status = asyncio.run(async_validate_pdf_signature(sig, offline,
                                                      ts_validation_context=offline))
    assert status.valid and status.trusted and status.timestamp_validity is not None


def test_d6_pades_p384_defaults_to_sha384(formats_bed: FormatsBed, p384: Issued,
                                          tmp_path: Path) -> None:
    from io import BytesIO

    from pki_services import trust_context
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import async_validate_pdf_signature

    from agent.formats.pades import build_pades_here

    for choice, expected in ((None, "sha384"), ("SHA-512", "sha512")):
        job, signatures = _job(formats_bed, p384)
        pdf = asyncio.run(build_pades_here(job, _pdf(), "B-B", reason=None, location=None,
                                           field_name=None, digest_algorithm=choice and
                                           choice.replace("-", "").lower()))
        [sig] = PdfFileReader(BytesIO(pdf)).embedded_signatures
        assert sig.signer_info["digest_algorithm"]["algorithm"].native == expected
        assert signatures.calls == [(expected, False)]
        status = asyncio.run(async_validate_pdf_signature(sig, trust_context(formats_bed)))
        assert status.intact and status.valid and status.trusted
        (tmp_path / "signed.pdf").write_bytes(pdf)
        done = run_tool(["pdfsig", "-nocert", str(tmp_path / "signed.pdf")])
        assert "Signature is Valid." in done.stdout, done.stdout + done.stderr
        assert f"SHA-{expected[3:]}" in done.stdout, done.stdout


# --- D6 through the protocol: the page's choice and agent.info's list ------------------------

formats_daemon = pki_services.formats_daemon


@pytest.mark.daemon
async def test_d6_sign_xml_digest_algorithm_param_and_agent_info(
        formats_daemon: Daemon, formats_bed: FormatsBed, tmp_path: Path) -> None:
    async with formats_daemon.client(ORIGIN) as client:
        handle = await select_handle(client, formats_bed.serial("ec"))
        result = await client.call("sign.xml", {
            "handle": handle, "xml": b64(INVOICE), "level": "B-B", "mode": "enveloped",
            "digestAlgorithm": "SHA-512", "display": {"documentName": "invoice.xml"}})
        info = await client.call("agent.info", {})
    signed = unb64(result["xml"])
    _xmlsec(formats_bed, signed, tmp_path)
    digests, method = _algorithms(signed)
    assert digests == {"http://www.w3.org/2001/04/xmlenc#sha512"}
    assert method == "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512"
    assert info["digestAlgorithms"]["xml"] == ["SHA-256", "SHA-384", "SHA-512"]
    assert info["digestAlgorithms"]["pdf"] == ["SHA-256", "SHA-384", "SHA-512"]


# --- D4 checked by xadesjs (the npm validator that rejected such signatures) -----------------

XADESJS_DIR = Path(os.environ.get("IMZA_XADESJS_DIR",
                                  Path(__file__).resolve().parent / "e2e"))
XADESJS_VERIFY = """
import { readFileSync } from "node:fs";
import { webcrypto } from "node:crypto";
import * as xmldom from "@xmldom/xmldom";
import xpath from "xpath";
import * as xadesjs from "xadesjs";
xadesjs.Application.setEngine("NodeJS", webcrypto);
// xpath: what xadesjs's XPath transform evaluates with in Node (the agent's enveloped
// references exclude every ds:Signature with one).
xadesjs.setNodeDependencies({DOMParser: xmldom.DOMParser,
  XMLSerializer: xmldom.XMLSerializer, DOMImplementation: xmldom.DOMImplementation, xpath});
const doc = new xmldom.DOMParser().parseFromString(readFileSync(process.argv[1], "utf8"),
                                                   "application/xml");
const node = doc.getElementsByTagNameNS("http://www.w3.org/2000/09/xmldsig#", "Signature")[0];
let ok = false;
try {
  // The signer's public key, imported here: xadesjs cannot tell an EC key's curve from
  // the KeyInfo certificate by itself.
  const algorithm = JSON.parse(process.argv[3]);
  const key = await webcrypto.subtle.importKey("spki", readFileSync(process.argv[2]),
                                               algorithm, true, ["verify"]);
  const signed = new xadesjs.SignedXml(doc);
  signed.LoadXml(node);
  if (algorithm.namedCurve) {  // xadesjs re-imports the key with its own algorithm
    signed.Algorithm = {...signed.Algorithm, namedCurve: algorithm.namedCurve};
  }
  ok = await signed.Verify(key);
} catch (error) {
  console.error(String(error));  // xadesjs throws on a digest mismatch
}
console.log(ok ? "VALID" : "INVALID");
process.exit(ok ? 0 : 1);
"""


def _xadesjs(xml: bytes, tmp: Path, cert: x509.Certificate) -> subprocess.CompletedProcess[str]:
    if shutil.which("node") is None or not (XADESJS_DIR / "node_modules" / "xadesjs").is_dir():
        pytest.fail(f"node and xadesjs (npm, in {XADESJS_DIR}/node_modules) are needed",
                    pytrace=False)
    path = tmp / "signed-xadesjs.xml"
    path.write_bytes(xml)
    spki = tmp / "signer.spki"
    spki.write_bytes(cert.public_key().public_bytes(serialization.Encoding.DER,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo))
    key = cert.public_key()
    algorithm = ({"name": "ECDSA", "namedCurve": f"P-{key.curve.key_size}"}
                 if isinstance(key, ec.EllipticCurvePublicKey)
                 else {"name": "RSASSA-PKCS1-v1_5", "hash": "SHA-256"})
    return subprocess.run(["node", "--input-type=module", "-e", XADESJS_VERIFY, str(path),
                           str(spki), json.dumps(algorithm)],
                          cwd=XADESJS_DIR, capture_output=True, text=True, timeout=60,
                          check=False)


@pytest.mark.parametrize("identity", ["rsa", "ec"])
def test_d4_xadesjs_accepts_enveloped_in_a_default_namespace(
        formats_bed: FormatsBed, identity: str, tmp_path: Path) -> None:
    job, _ = _job(formats_bed, formats_bed.identities[identity], document_name="invoice.xml")
    signed = asyncio.run(build_xades_here(job, INVOICE, "B-B", "enveloped"))
    done = _xadesjs(signed, tmp_path, job.certificate)
    assert done.returncode == 0 and "VALID" in done.stdout, done.stdout + done.stderr
    # xadesjs is not lenient: the same signature with one signed byte changed fails.
    tampered = signed.replace(b"GIB2024000000117", b"GIB2024000000118")
    done = _xadesjs(tampered, tmp_path, job.certificate)
    assert done.returncode != 0 and "INVALID" in done.stdout, done.stdout + done.stderr
