"""The enveloped signature written with lxml (agent/formats/xades_enveloped.py): its
certificate parts are cached per certificate and digest, so one worker signing for
several keys and digests in turn must still name the right certificate each time; and
it has the shape signxml gave it (the elements verifiers look for, in that order)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from pathlib import Path

import pki_services
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from pki_services import FormatsBed
from xades_checks import DS, XADES, assert_xmlsec, job, signatures, signxml_verify

from agent.formats.xades import build_xades_here

formats_bed = pki_services.formats_bed
pytestmark = [pytest.mark.softhsm, pytest.mark.verifiers]

INVOICE = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
           b'<Invoice xmlns="urn:example:invoice"><ID>42</ID><Amount>10.50</Amount></Invoice>')


def _sign(bed: FormatsBed, identity: str, digest: str | None) -> bytes:
    signing_job, _ = job(bed, identity)
    return asyncio.run(build_xades_here(signing_job, INVOICE, "B-B", "enveloped", digest))


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname


def test_each_key_and_digest_in_turn_names_its_own_certificate(
        formats_bed: FormatsBed, tmp_path: Path) -> None:
    # In this one process: the cache must not hand one key's parts to the next.
    for identity, digest in (("rsa", None), ("ec", None), ("rsa", "sha512"),
                             ("ec", "sha384"), ("rsa", None)):
        signed = _sign(formats_bed, identity, digest)
        cert = formats_bed.identities[identity].cert
        der = cert.public_bytes(Encoding.DER)
        signature = signatures(signed)[0]
        shown = signature.findtext(f"{{{DS}}}KeyInfo/{{{DS}}}X509Data/{{{DS}}}X509Certificate")
        assert shown is not None and base64.b64decode(shown) == der
        cert_digest = signature.findtext(f".//{{{XADES}}}SigningCertificateV2//{{{DS}}}DigestValue")
        assert cert_digest == base64.b64encode(
            hashlib.new(digest or "sha256", der).digest()).decode("ascii")
        assert_xmlsec(formats_bed, signed, tmp_path)
        signxml_verify(signed, cert)


def test_the_signature_has_signxmls_shape(formats_bed: FormatsBed) -> None:
    signature = signatures(_sign(formats_bed, "ec", None))[0]
    assert [_local(child) for child in signature] == \
        ["SignedInfo", "SignatureValue", "KeyInfo", "Object"]
    signed_info = signature.find(f"{{{DS}}}SignedInfo")
    assert signed_info is not None
    references = signed_info.findall(f"{{{DS}}}Reference")
    assert [r.get("URI", "")[:1] for r in references] == ["", "#", "#"]
    assert references[1].get("Type") == "http://uri.etsi.org/01903#SignedProperties"
    properties = signature.find(f".//{{{XADES}}}SignedProperties")
    assert properties is not None
    assert [_local(child) for child in properties] == \
        ["SignedSignatureProperties", "SignedDataObjectProperties"]
    assert [_local(child) for child in properties[0]] == ["SigningTime", "SigningCertificateV2"]
    # Ids are unique within the signature, and its references name them.
    ids = [e.get("Id") for e in signature.iter() if e.get("Id")]
    assert len(ids) == len(set(ids))
    assert {r.get("URI")[1:] for r in references[1:]} <= set(ids)
    described = properties.find(f".//{{{XADES}}}DataObjectFormat")
    assert described is not None and described.get("ObjectReference") == \
        f"#{references[0].get('Id')}"


@pytest.mark.parametrize("digest", ["sha256", "sha384", "sha512"])
def test_signature_method_follows_the_digest(formats_bed: FormatsBed, digest: str) -> None:
    signature = signatures(_sign(formats_bed, "rsa", digest))[0]
    method = signature.find(f"{{{DS}}}SignedInfo/{{{DS}}}SignatureMethod")
    assert method is not None and method.get("Algorithm", "").endswith(f"#rsa-{digest}")
