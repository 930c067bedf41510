"""What the XAdES tests share (tests/test_xades_*.py): a software-key ``FormatJob`` that
records when the user confirmed, a UBL-TR-shaped e-invoice, and the independent
verifiers — xmlsec1, xadesjs (npm, tests/e2e/node_modules) and signxml — each able to
check one chosen signature of a document with several."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pki_services
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from pki_services import FormatsBed, Issued, run_tool
from signxml.xades import XAdESSignatureConfiguration, XAdESVerifier

from agent.formats.anchors import Anchors
from agent.formats.job import FormatJob, KeylessJob
from agent.formats.network import NetworkSettings

DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
XADES141 = "http://uri.etsi.org/01903/v1.4.1#"
UBL_NS = {"inv": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
          "ext": "urn:oasis:names:specification:ubl:schema:xsd:CommonExtensionComponents-2",
          "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
          "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"}
EXTENSION_CONTENT = "/inv:Invoice/ext:UBLExtensions/ext:UBLExtension/ext:ExtensionContent"
UBL_PLACEMENT = {"parent": EXTENSION_CONTENT,
                 "namespaces": {"inv": UBL_NS["inv"], "ext": UBL_NS["ext"]}}

# A Türkiye UBL-TR e-Fatura as GİB's samples shape it: the default namespace, the
# extension slot for the signature, and a cac:Signature (not an XML signature) naming
# the signer.
UBL_INVOICE = """<?xml version="1.0" encoding="UTF-8"?>
<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
    xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
    xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
    xmlns:ext="urn:oasis:names:specification:ubl:schema:xsd:CommonExtensionComponents-2">
  <ext:UBLExtensions>
    <ext:UBLExtension>
      <ext:ExtensionContent/>
    </ext:UBLExtension>
  </ext:UBLExtensions>
  <cbc:UBLVersionID>2.1</cbc:UBLVersionID>
  <cbc:CustomizationID>TR1.2</cbc:CustomizationID>
  <cbc:ProfileID>TEMELFATURA</cbc:ProfileID>
  <cbc:ID>GIB2024000000117</cbc:ID>
  <cbc:CopyIndicator>false</cbc:CopyIndicator>
  <cbc:UUID>f47ac10b-58cc-4372-a567-0e02b2c3d479</cbc:UUID>
  <cbc:IssueDate>2024-11-29</cbc:IssueDate>
  <cbc:InvoiceTypeCode>SATIS</cbc:InvoiceTypeCode>
  <cbc:Note>Yalnız bin iki yüz elli Türk lirası</cbc:Note>
  <cbc:DocumentCurrencyCode>TRY</cbc:DocumentCurrencyCode>
  <cbc:LineCountNumeric>1</cbc:LineCountNumeric>
  <cac:Signature>
    <cbc:ID schemeID="VKN_TCKN">1234567890</cbc:ID>
    <cac:SignatoryParty><cac:PartyIdentification>
      <cbc:ID schemeID="VKN">1234567890</cbc:ID>
    </cac:PartyIdentification></cac:SignatoryParty>
  </cac:Signature>
  <cac:AccountingSupplierParty><cac:Party>
    <cac:PartyName><cbc:Name>Örnek Ticaret A.Ş.</cbc:Name></cac:PartyName>
  </cac:Party></cac:AccountingSupplierParty>
  <cac:AccountingCustomerParty><cac:Party>
    <cac:PartyName><cbc:Name>Müşteri Şirketi Ltd.</cbc:Name></cac:PartyName>
  </cac:Party></cac:AccountingCustomerParty>
  <cac:LegalMonetaryTotal>
    <cbc:PayableAmount currencyID="TRY">1250.00</cbc:PayableAmount>
  </cac:LegalMonetaryTotal>
  <cac:InvoiceLine Id="line-1">
    <cbc:ID>1</cbc:ID>
    <cbc:InvoicedQuantity unitCode="C62">1</cbc:InvoicedQuantity>
    <cbc:LineExtensionAmount currencyID="TRY">1250.00</cbc:LineExtensionAmount>
  </cac:InvoiceLine>
</Invoice>
""".encode()

_HASHES = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(), "sha512": hashes.SHA512()}


class Signer:
    """``FormatJob.sign`` with a software key; ``confirm`` stands for the dialog (it
    takes ``delay`` seconds, the user reading and typing the PIN) and records when it
    ended."""

    def __init__(self, issued: Issued, delay: float = 0.0) -> None:
        self.key = issued.key
        self.delay = delay
        self.calls: list[tuple[str, bool]] = []
        self.confirmed_at: dt.datetime | None = None

    async def confirm(self) -> None:
        if self.confirmed_at is None:
            await asyncio.sleep(self.delay)
            self.confirmed_at = dt.datetime.now(dt.UTC)

    async def __call__(self, digest: bytes, digest_algorithm: str, *,
                       ecdsa_raw: bool = False) -> bytes:
        await self.confirm()
        self.calls.append((digest_algorithm, ecdsa_raw))
        algorithm = Prehashed(_HASHES[digest_algorithm])
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(digest, padding.PKCS1v15(), algorithm)
        der = self.key.sign(digest, ec.ECDSA(algorithm))
        if not ecdsa_raw:
            return der
        r, s = decode_dss_signature(der)
        size = (self.key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def anchors(bed: FormatsBed) -> Anchors:
    pki = bed.services.pki
    return Anchors(roots=[pki.root.cert], others=[pki.intermediate.cert])


def job(bed: FormatsBed, identity: str, tsa_path: str | None = None,
        document_name: str | None = "e-fatura.xml", delay: float = 0.0
        ) -> tuple[FormatJob, Signer]:
    issued = bed.identities[identity]
    signer = Signer(issued, delay)
    return FormatJob(sign=signer, certificate=issued.cert,
                     chain=[bed.services.pki.intermediate.cert], anchors=anchors(bed),
                     network=NetworkSettings(timeout=5.0),
                     tsa_url=bed.services.url(tsa_path) if tsa_path else None,
                     document_name=document_name), signer


def keyless(bed: FormatsBed, tsa_path: str = "/tsa") -> KeylessJob:
    return KeylessJob(anchors=anchors(bed), network=NetworkSettings(timeout=5.0),
                      tsa_url=bed.services.url(tsa_path))


@pytest.fixture(autouse=True)
def direct_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loopback services are reached directly whatever proxy this machine has."""
    for name, value in pki_services.DIRECT_ENV.items():
        monkeypatch.setenv(name, value)


def signatures(xml: bytes) -> list[etree._Element]:
    return list(etree.fromstring(xml).iter(f"{{{DS}}}Signature"))


# --- xmlsec1 -------------------------------------------------------------------------------

def xmlsec(bed: FormatsBed, xml: bytes, tmp: Path, index: int = 1,
           id_attrs: tuple[str, ...] = (), extra: tuple[str, ...] = ()
           ) -> subprocess.CompletedProcess[str]:
    """xmlsec1's check of the ``index``-th ds:Signature (1-based), trusting the test root."""
    path = tmp / f"xmlsec-{index}.xml"
    path.write_bytes(xml)
    argv = ["xmlsec1", "--verify", "--trusted-pem", str(bed.anchors[0]),
            "--untrusted-pem", str(bed.anchors[1]),
            "--id-attr:Id", f"{XADES}:SignedProperties", "--id-attr:Id", f"{DS}:KeyInfo",
            "--node-xpath", f"(//*[local-name()='Signature' and namespace-uri()='{DS}'])"
                            f"[{index}]"]
    for spec in id_attrs:
        argv += ["--id-attr:Id", spec]
    return run_tool([*argv, *extra, str(path)], cwd=tmp)


def assert_xmlsec(bed: FormatsBed, xml: bytes, tmp: Path, index: int = 1,
                  id_attrs: tuple[str, ...] = ()) -> None:
    done = xmlsec(bed, xml, tmp, index, id_attrs)
    assert done.returncode == 0 and "OK" in done.stdout + done.stderr, \
        done.stdout + done.stderr


# --- xadesjs -------------------------------------------------------------------------------

XADESJS_DIR = Path(os.environ.get("IMZA_XADESJS_DIR",
                                  Path(__file__).resolve().parent / "e2e"))
XADESJS_VERIFY = """
import { readFileSync } from "node:fs";
import { webcrypto } from "node:crypto";
import * as xmldom from "@xmldom/xmldom";
import xpath from "xpath";
import * as xadesjs from "xadesjs";
xadesjs.Application.setEngine("NodeJS", webcrypto);
// The xpath module is what xadesjs's XPath transform evaluates with in Node.
xadesjs.setNodeDependencies({DOMParser: xmldom.DOMParser,
  XMLSerializer: xmldom.XMLSerializer, DOMImplementation: xmldom.DOMImplementation, xpath});
const doc = new xmldom.DOMParser().parseFromString(readFileSync(process.argv[1], "utf8"),
                                                   "application/xml");
const index = Number(process.argv[4]);
const node = doc.getElementsByTagNameNS("http://www.w3.org/2000/09/xmldsig#",
                                        "Signature")[index];
let ok = false;
try {
  const algorithm = JSON.parse(process.argv[3]);
  const key = await webcrypto.subtle.importKey("spki", readFileSync(process.argv[2]),
                                               algorithm, true, ["verify"]);
  const signed = new xadesjs.SignedXml(doc);
  signed.LoadXml(node);
  if (algorithm.namedCurve) {
    signed.Algorithm = {...signed.Algorithm, namedCurve: algorithm.namedCurve};
  }
  ok = await signed.Verify(key);
} catch (error) {
  console.error(error && error.message ? error.message : String(error));
}
console.log(ok ? "VALID" : "INVALID");
process.exit(ok ? 0 : 1);
"""


def xadesjs(xml: bytes, tmp: Path, cert: x509.Certificate, index: int = 1
            ) -> subprocess.CompletedProcess[str]:
    """xadesjs's check of the ``index``-th ds:Signature (1-based) with ``cert``'s key."""
    if shutil.which("node") is None or not (XADESJS_DIR / "node_modules" / "xadesjs").is_dir():
        pytest.fail(f"node and xadesjs (npm, in {XADESJS_DIR}/node_modules) are needed",
                    pytrace=False)
    path = tmp / f"xadesjs-{index}.xml"
    path.write_bytes(xml)
    spki = tmp / f"signer-{index}.spki"
    key = cert.public_key()
    spki.write_bytes(key.public_bytes(serialization.Encoding.DER,
                                      serialization.PublicFormat.SubjectPublicKeyInfo))
    algorithm = ({"name": "ECDSA", "namedCurve": f"P-{key.curve.key_size}"}
                 if isinstance(key, ec.EllipticCurvePublicKey)
                 else {"name": "RSASSA-PKCS1-v1_5", "hash": "SHA-256"})
    return subprocess.run(["node", "--input-type=module", "-e", XADESJS_VERIFY, str(path),
                           str(spki), json.dumps(algorithm), str(index - 1)],
                          cwd=XADESJS_DIR, capture_output=True, text=True, timeout=60,
                          check=False)


def without_v141_archive_stamps(xml: bytes) -> bytes:
    """The document without its xadesv141:ArchiveTimeStamp elements.  xadesjs matches
    unsigned properties by local name and knows only XAdES 1.3.2's ArchiveTimeStamp, so
    it calls EN 319 132-1's (1.4.1 namespace) malformed and checks nothing.  They are
    unsigned: without them xadesjs checks the same signature value and references (the
    archive time-stamps are checked by xmlsec1 and openssl in test_xades_long_term)."""
    root = etree.fromstring(xml)
    for stamp in list(root.iter(f"{{{XADES141}}}ArchiveTimeStamp")):
        parent = stamp.getparent()
        assert parent is not None
        parent.remove(stamp)
    return etree.tostring(root, encoding="utf-8")


def assert_xadesjs(xml: bytes, tmp: Path, cert: x509.Certificate, index: int = 1) -> None:
    xml = without_v141_archive_stamps(xml)
    done = xadesjs(xml, tmp, cert, index)
    assert done.returncode == 0 and "VALID" in done.stdout, done.stdout + done.stderr


# --- signxml -------------------------------------------------------------------------------

class Utf8Verifier(XAdESVerifier):
    """signxml re-parses ASCII-serialised XML, which non-ASCII text would survive but
    non-ASCII names would not: as the agent's signer, UTF-8."""

    def _tostring(self, xml_node, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("encoding", "utf-8")
        return etree.tostring(xml_node, **kwargs)


def signxml_verify(xml: bytes, cert: x509.Certificate, references: int = 3) -> list:
    config = XAdESSignatureConfiguration(expect_references=references)
    results: list = Utf8Verifier().verify(xml, x509_cert=cert, expect_config=config)
    return results


# --- the archive time-stamp's input, put together independently ---------------------------

def _c14n(element: etree._Element) -> bytes:
    text: bytes = etree.tostring(element, method="c14n", exclusive=True, with_comments=False)
    return text


def _predigest_buffers(bed: FormatsBed, xml: bytes, tmp: Path, index: int = 1) -> list[bytes]:
    """What xmlsec1 digested for each reference of the ``index``-th signature."""
    done = xmlsec(bed, xml, tmp, index, extra=("--store-references", "--print-debug"))
    assert done.returncode == 0, done.stderr
    raw = done.stdout.encode()
    return re.findall(rb"== PreDigest data - start buffer:\n(.*?)\n== PreDigest data - end "
                      rb"buffer", raw, flags=re.S)


def _archive_input(bed: FormatsBed, xml: bytes, tmp: Path, stamp: int,
                   index: int = 1) -> tuple[bytes, bytes]:
    """(the input EN 319 132-1 §5.5.2.2 gives the ``stamp``-th archive time-stamp of the
    ``index``-th signature, its token)."""
    signature = signatures(xml)[index - 1]
    references = signature.findall(f"{{{DS}}}SignedInfo/{{{DS}}}Reference")
    buffers = _predigest_buffers(bed, xml, tmp, index)
    assert len(buffers) == len(references)
    parts = list(buffers)
    parts += [_c14n(signature.find(f"{{{DS}}}{name}"))  # type: ignore[arg-type]
              for name in ("SignedInfo", "SignatureValue", "KeyInfo")]
    props = signature.find(f".//{{{XADES}}}UnsignedSignatureProperties")
    assert props is not None
    seen = 0
    token = b""
    for child in props:
        if child.tag == f"{{{XADES141}}}ArchiveTimeStamp":
            seen += 1
            if seen == stamp:
                token = base64.b64decode(child.findtext(f"{{{XADES}}}EncapsulatedTimeStamp")
                                         or "")
                break
        parts.append(_c14n(child))
    assert token, f"no archive time-stamp {stamp}"
    parts += [_c14n(o) for o in signature.findall(f"{{{DS}}}Object")
              if o.find(f"{{{XADES}}}QualifyingProperties") is None]
    return b"".join(parts), token


def _openssl_ts_verify(bed: FormatsBed, token: bytes, data: bytes, tmp: Path) -> None:
    (tmp / "token.der").write_bytes(token)
    (tmp / "data.bin").write_bytes(data)
    services = bed.services
    chain = tmp / "untrusted.pem"
    chain.write_bytes(bed.anchors[1].read_bytes() + b"".join(
        t.cert.public_bytes(Encoding.PEM) for t in (services.tsa, services.tsa_second)
        if t is not None))
    done = run_tool(["openssl", "ts", "-verify", "-token_in", "-in", str(tmp / "token.der"),
                     "-data", str(tmp / "data.bin"), "-CAfile", str(bed.anchors[0]),
                     "-untrusted", str(chain)])
    assert done.returncode == 0 and "Verification: OK" in done.stdout, \
        done.stdout + done.stderr


def assert_archive_stamp(bed: FormatsBed, xml: bytes, tmp: Path, stamp: int,
                          index: int = 1) -> None:
    data, token = _archive_input(bed, xml, tmp, stamp, index)
    _openssl_ts_verify(bed, token, data, tmp)
    # And not over anything else: one byte more of input fails.
    with pytest.raises(AssertionError):
        _openssl_ts_verify(bed, token, data + b" ", tmp)
