"""Issue 14 §1 and §3 for XML: where an enveloped XAdES signature goes (a UBL-TR
e-invoice's ext:ExtensionContent), what it covers, a second signer on a signed document,
and the refusal when an existing signature would break.  The builder runs in this process
(what a document worker runs) with the loopback PKI's software keys; xmlsec1, xadesjs and
signxml check what it made.  One test goes through a running agent (sign.xml)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pki_services
import pytest
from daemon import Daemon, b64, unb64
from lxml import etree
from pki_services import ORIGIN, FormatsBed, pin_dialogs, select_handle
from pydantic import ValidationError
from signxml import methods
from signxml.exceptions import InvalidDigest
from signxml.xades import XAdESSigner
from xades_checks import (
    DS,
    EXTENSION_CONTENT,
    UBL_INVOICE,
    UBL_NS,
    UBL_PLACEMENT,
    XADES,
    assert_xadesjs,
    assert_xmlsec,
    direct_network,  # noqa: F401  (autouse)
    job,
    signatures,
    signxml_verify,
    xadesjs,
    xmlsec,
)

from agent.errors import Unsupported
from agent.formats.xades import build_xades_here
from agent.formats.xades_placement import NO_SIGNATURES, XPATH_TRANSFORM
from agent.protocol.params_xml import (
    MAX_PLACEMENT_NAMESPACES,
    MAX_PLACEMENT_XPATH,
    MAX_REFERENCES,
    SignXmlParams,
)

pytestmark = [pytest.mark.softhsm, pytest.mark.verifiers]
formats_bed = pki_services.formats_bed
formats_daemon = pki_services.formats_daemon


def _sign(bed: FormatsBed, identity: str, document: bytes, level: str = "B-B",
          **kwargs: object) -> bytes:
    signing_job, _ = job(bed, identity, "/tsa" if level != "B-B" else None)
    return asyncio.run(build_xades_here(signing_job, document, level, "enveloped",
                                        **kwargs))  # type: ignore[arg-type]


def _extension_content(xml: bytes) -> etree._Element:
    found = etree.fromstring(xml).xpath(EXTENSION_CONTENT, namespaces=UBL_PLACEMENT[
        "namespaces"])
    assert isinstance(found, list) and len(found) == 1
    element = found[0]
    assert isinstance(element, etree._Element)
    return element


# --- A: the signature inside ext:ExtensionContent -------------------------------------------

@pytest.mark.parametrize("identity", ["rsa", "ec"])
def test_ubl_invoice_signed_inside_extension_content(formats_bed: FormatsBed, identity: str,
                                                     tmp_path: Path) -> None:
    signed = _sign(formats_bed, identity, UBL_INVOICE, placement=UBL_PLACEMENT)
    content = _extension_content(signed)
    assert [child.tag for child in content] == [f"{{{DS}}}Signature"]
    assert len(signatures(signed)) == 1
    # The document itself is unchanged around the signature: one UBLExtension, the
    # cac:Signature (UBL's party element, not an XML signature) where it was.
    root = etree.fromstring(signed)
    assert root.find("cac:Signature", UBL_NS) is not None
    reference = root.find(f".//{{{DS}}}Reference[@URI='']")
    assert reference is not None
    assert [t.get("Algorithm") for t in reference.iter(f"{{{DS}}}Transform")] == [
        "http://www.w3.org/2000/09/xmldsig#enveloped-signature", XPATH_TRANSFORM,
        "http://www.w3.org/2001/10/xml-exc-c14n#"]
    assert reference.findtext(f".//{{{DS}}}XPath") == NO_SIGNATURES
    cert = formats_bed.identities[identity].cert
    assert_xmlsec(formats_bed, signed, tmp_path)
    assert_xadesjs(signed, tmp_path, cert)
    results = signxml_verify(signed, cert)
    assert len(results) == 3
    # Each validator is strict: one signed byte changed fails all three.
    tampered = signed.replace(b"1250.00</cbc:PayableAmount>", b"1250.01</cbc:PayableAmount>")
    assert xmlsec(formats_bed, tampered, tmp_path).returncode != 0
    assert xadesjs(tampered, tmp_path, cert).returncode != 0
    with pytest.raises(InvalidDigest):
        signxml_verify(tampered, cert)


def test_placement_that_selects_zero_or_several_is_refused_before_the_dialog(
        formats_bed: FormatsBed) -> None:
    two = UBL_INVOICE.replace(b"</ext:UBLExtensions>", b"<ext:UBLExtension><ext:Extension"
                              b"Content/></ext:UBLExtension></ext:UBLExtensions>")
    cases = [
        (UBL_INVOICE, {"parent": "/inv:Invoice/ext:Nothing", "namespaces":
                       UBL_PLACEMENT["namespaces"]}, "selects 0 elements"),
        (two, UBL_PLACEMENT, "selects 2 elements"),
        # Without a prefix a name has no namespace (XPath 1.0): the default-namespace
        # Invoice is not found; the error says how many, not "malformed".
        (UBL_INVOICE, {"parent": "/Invoice", "namespaces": {}}, "selects 0 elements"),
        (UBL_INVOICE, {"parent": "/inv:Invoice/undeclared:X", "namespaces":
                       {"inv": UBL_NS["inv"]}}, "declare every prefix"),
        (UBL_INVOICE, {"parent": "/inv:Invoice/count(x)", "namespaces":
                       {"inv": UBL_NS["inv"]}}, "no functions"),
    ]
    for document, placement, message in cases:
        signing_job, signer = job(formats_bed, "rsa")
        with pytest.raises(Unsupported, match=message):
            asyncio.run(build_xades_here(signing_job, document, "B-B", "enveloped",
                                         placement=placement))
        assert signer.confirmed_at is None and signer.calls == []
    # A detached signature document is not a place for an enveloped signature.
    detached_job, _ = job(formats_bed, "rsa")
    detached = asyncio.run(build_xades_here(detached_job, UBL_INVOICE, "B-B", "detached"))
    signing_job, signer = job(formats_bed, "ec")
    with pytest.raises(Unsupported, match="is a signature"):
        asyncio.run(build_xades_here(signing_job, detached, "B-B", "enveloped"))
    assert signer.calls == []
    # The positional predicate picks one of the two.
    signed = _sign(formats_bed, "ec", two, placement={
        "parent": "/inv:Invoice/ext:UBLExtensions/ext:UBLExtension[2]/ext:ExtensionContent",
        "namespaces": UBL_PLACEMENT["namespaces"]})
    root = etree.fromstring(signed)
    extensions = root.findall("ext:UBLExtensions/ext:UBLExtension/ext:ExtensionContent",
                              UBL_NS)
    assert [len(e) for e in extensions] == [0, 1]


@pytest.mark.parametrize("parent", [
    "//ext:ExtensionContent[last()]", "/inv:Invoice/following::x", "/a[@b='c']",
    "/a | /b", "ext:ExtensionContent", "/a/text()", "/a/..", "/a[0]", "/a/*[1000001]",
    "/" + "/a" * 40, "/a" * (MAX_PLACEMENT_XPATH // 2 + 1),
    # One descendant step at most, the first: "//*//*//*" would walk the document once
    # per node it selected.
    "//*//*//*", "/inv:Invoice//ext:ExtensionContent"])
def test_placement_outside_the_safe_subset_is_invalid_params(parent: str) -> None:
    with pytest.raises(ValidationError):
        SignXmlParams.model_validate({
            "handle": "h" * 16, "xml": b64(UBL_INVOICE), "level": "B-B",
            "mode": "enveloped", "placement": {"parent": parent,
                                               "namespaces": UBL_PLACEMENT["namespaces"]}})


def test_params_bounds_namespaces_references_and_mode() -> None:
    base = {"handle": "h" * 16, "xml": b64(UBL_INVOICE), "level": "B-B", "mode": "enveloped"}
    ok = SignXmlParams.model_validate({**base, "placement": {
        "parent": "//ext:ExtensionContent", "namespaces": {"ext": UBL_NS["ext"]}},
        "references": ["", "#line-1"]})
    assert ok.placement is not None and ok.references == ["", "#line-1"]
    too_many = {f"p{i}": f"urn:x:{i}" for i in range(MAX_PLACEMENT_NAMESPACES + 1)}
    bad = [
        {"placement": {"parent": "/a", "namespaces": too_many}},
        {"placement": {"parent": "/a", "namespaces": {"xmlns": "urn:x"}}},
        {"placement": {"parent": "/a", "namespaces": {"a": "urn x"}}},
        {"references": [f"#r{i}" for i in range(MAX_REFERENCES + 1)]},
        {"references": ["#a", "#a"]},
        {"references": ["other.xml"]},
        {"references": ["#a b"]},
        {"references": []},
        {"mode": "detached", "references": [""]},
        {"mode": "detached", "placement": {"parent": "/a"}},
    ]
    for extra in bad:
        with pytest.raises(ValidationError):
            SignXmlParams.model_validate({**base, **extra})
    # Every level of the issue is a level of sign.xml.
    for level in ("B-B", "B-T", "B-LT", "B-LTA"):
        SignXmlParams.model_validate({**base, "level": level})


def test_id_references_cover_only_their_elements(formats_bed: FormatsBed,
                                                 tmp_path: Path) -> None:
    signed = _sign(formats_bed, "rsa", UBL_INVOICE, placement=UBL_PLACEMENT,
                   references=["#line-1"])
    root = etree.fromstring(signed)
    uris = [r.get("URI") for r in root.iter(f"{{{DS}}}Reference")]
    assert uris[0] == "#line-1" and "" not in uris
    formats = root.findall(f".//{{{XADES}}}DataObjectFormat")
    assert len(formats) == 1 and formats[0].findtext(f"{{{XADES}}}Description") == \
        "e-fatura.xml #line-1"
    line = f"{UBL_NS['cac']}:InvoiceLine"
    cert = formats_bed.identities["rsa"].cert
    assert_xmlsec(formats_bed, signed, tmp_path, id_attrs=(line,))
    assert_xadesjs(signed, tmp_path, cert)
    # A change outside the line is not covered; one inside is.
    outside = signed.replace(b"TEMELFATURA", b"TICARIFATURA")
    assert_xmlsec(formats_bed, outside, tmp_path, id_attrs=(line,))
    inside = signed.replace(b'unitCode="C62">1<', b'unitCode="C62">2<')
    assert xmlsec(formats_bed, inside, tmp_path, id_attrs=(line,)).returncode != 0
    # An Id that names nothing, or a signature's element, is refused.
    for reference in ("#nothing", f"#{root.find(f'.//{{{XADES}}}SignedProperties').get('Id')}"):
        signing_job, signer = job(formats_bed, "rsa")
        with pytest.raises(Unsupported, match="reference"):
            asyncio.run(build_xades_here(signing_job, signed, "B-B", "enveloped",
                                         references=[reference]))
        assert signer.calls == []


# --- B: a second signer --------------------------------------------------------------------

def test_two_signers_on_one_invoice_both_verify(formats_bed: FormatsBed,
                                                tmp_path: Path) -> None:
    first = _sign(formats_bed, "rsa", UBL_INVOICE, placement=UBL_PLACEMENT)
    second = _sign(formats_bed, "ec", first, placement=UBL_PLACEMENT)
    found = signatures(second)
    assert len(found) == 2
    assert all(s.getparent() is not None and s.getparent().tag == f"{{{UBL_NS['ext']}}}"
               "ExtensionContent" for s in found)
    # The first signature is unchanged, byte for byte.
    assert etree.tostring(found[0]) == etree.tostring(signatures(first)[0])
    for index, identity in ((1, "rsa"), (2, "ec")):
        cert = formats_bed.identities[identity].cert
        assert_xmlsec(formats_bed, second, tmp_path, index)
        assert_xadesjs(second, tmp_path, cert, index)
    # A third signer, placed at the document element, still leaves both intact.
    third = _sign(formats_bed, "crl_only", second)
    for index, identity in ((1, "rsa"), (2, "ec"), (3, "crl_only")):
        assert_xmlsec(formats_bed, third, tmp_path, index)
        assert_xadesjs(third, tmp_path, formats_bed.identities[identity].cert, index)
    # Changing the invoice breaks every signature, not just the last.
    tampered = third.replace(b"GIB2024000000117", b"GIB2024000000118")
    for index in (1, 2, 3):
        assert xmlsec(formats_bed, tampered, tmp_path, index).returncode != 0


def _plain_enveloped(bed: FormatsBed) -> bytes:
    """The invoice signed the common way (signxml's own enveloped XAdES: the
    enveloped-signature transform only), with a software key."""
    issued = bed.identities["rsa"]
    signed = XAdESSigner(method=methods.enveloped, signature_algorithm="rsa-sha256",
                         digest_algorithm="sha256").sign(
        etree.fromstring(UBL_INVOICE), key=issued.key, cert=[issued.cert])
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")


def test_a_signature_that_a_second_one_would_break_is_refused(formats_bed: FormatsBed,
                                                              tmp_path: Path) -> None:
    plain = _plain_enveloped(formats_bed)
    assert_xmlsec(formats_bed, plain, tmp_path)
    for placement in (None, UBL_PLACEMENT):
        signing_job, signer = job(formats_bed, "ec")
        with pytest.raises(Unsupported, match="would break that signature"):
            asyncio.run(build_xades_here(signing_job, plain, "B-B", "enveloped",
                                         placement=placement))
        assert signer.confirmed_at is None and signer.calls == []
    # Proof that the refusal is needed: adding a signature anyway (the old way, with
    # signxml alone) breaks the first one for xmlsec1.
    issued = formats_bed.identities["ec"]
    both = XAdESSigner(method=methods.enveloped, signature_algorithm="ecdsa-sha256",
                       digest_algorithm="sha256").sign(
        etree.fromstring(plain), key=issued.key, cert=[issued.cert])
    broken = etree.tostring(both)
    assert xmlsec(formats_bed, broken, tmp_path, 1).returncode != 0


# --- D3: SigningTime after the user's PIN --------------------------------------------------

def test_signing_time_is_after_the_confirmation(formats_bed: FormatsBed) -> None:
    signing_job, signer = job(formats_bed, "ec", delay=2.0)
    asked = dt.datetime.now(dt.UTC)
    signed = asyncio.run(build_xades_here(signing_job, UBL_INVOICE, "B-B", "enveloped",
                                          placement=UBL_PLACEMENT))
    text = etree.fromstring(signed).findtext(f".//{{{XADES}}}SigningTime")
    assert text is not None and signer.confirmed_at is not None
    signing_time = dt.datetime.fromisoformat(text)
    # SigningTime has whole seconds: compare at that precision.
    assert signing_time >= signer.confirmed_at.replace(microsecond=0)
    assert signing_time > asked.replace(microsecond=0)


# --- through the agent ---------------------------------------------------------------------

@pytest.mark.daemon
async def test_sign_xml_places_the_signature_and_refuses_bad_placements(
        formats_daemon: Daemon, formats_bed: FormatsBed, tmp_path: Path) -> None:
    mark = formats_daemon.transcript_mark()
    async with formats_daemon.client(ORIGIN) as client:
        handle = await select_handle(client, formats_bed.serial("ec"))
        result = await client.call("sign.xml", {
            "handle": handle, "xml": b64(UBL_INVOICE), "level": "B-B", "mode": "enveloped",
            "placement": UBL_PLACEMENT, "display": {"documentName": "e-fatura.xml"}})
        signed = unb64(result["xml"])
        assert len(pin_dialogs(formats_daemon, mark)) == 1
        assert len(_extension_content(signed)) == 1
        assert_xmlsec(formats_bed, signed, tmp_path)
        assert_xadesjs(signed, tmp_path, formats_bed.identities["ec"].cert)
        mark = formats_daemon.transcript_mark()
        bad = await client.error("sign.xml", {
            "handle": handle, "xml": b64(UBL_INVOICE), "level": "B-B", "mode": "enveloped",
            "placement": {"parent": "//ext:ExtensionContent[last()]",
                          "namespaces": {"ext": UBL_NS["ext"]}}})
        assert bad.code == -32602
        none = await client.error("sign.xml", {
            "handle": handle, "xml": b64(UBL_INVOICE), "level": "B-B", "mode": "enveloped",
            "placement": {"parent": "//ext:Missing", "namespaces": {"ext": UBL_NS["ext"]}}})
        assert none.reason == "UNSUPPORTED" and "selects 0 elements" in none.error["message"]
        assert pin_dialogs(formats_daemon, mark) == []  # both refused before the dialog
        # A second signer through the agent on the signed invoice.
        handle = await select_handle(client, formats_bed.serial("rsa"))
        result = await client.call("sign.xml", {
            "handle": handle, "xml": b64(signed), "level": "B-B", "mode": "enveloped",
            "placement": UBL_PLACEMENT})
    assert len(pin_dialogs(formats_daemon, mark)) == 1
    both = unb64(result["xml"])
    assert len(signatures(both)) == 2
    for index, identity in ((1, "ec"), (2, "rsa")):
        assert_xmlsec(formats_bed, both, tmp_path, index)
        assert_xadesjs(both, tmp_path, formats_bed.identities[identity].cert, index)
