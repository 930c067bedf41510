"""Issue 14 §2 for XML: XAdES B-LT and B-LTA (EN 319 132-1) made by sign.xml's builder
and by the keyless extension (B-B → B-T → B-LT → B-LTA, and the renewal of a B-LTA).

The archive time-stamps are checked independently of the agent's code: xmlsec1 processes
each reference (its pre-digest buffers), the rest of the input of EN 319 132-1 §5.5.2.2
is put together here with lxml, and openssl ts verifies the token over it.  xmlsec1 and
xadesjs check the signatures themselves; the loopback TSA, OCSP and CRL services are real
HTTP servers."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pki_services
import pytest
from asn1crypto import cms, tsp
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from pki_services import FormatsBed
from pyhanko_certvalidator.errors import InsufficientRevinfoError
from signxml import methods
from signxml.xades import XAdESSigner
from xades_checks import (
    DS,
    UBL_INVOICE,
    UBL_PLACEMENT,
    XADES,
    XADES141,
    assert_archive_stamp,
    assert_xadesjs,
    assert_xmlsec,
    direct_network,  # noqa: F401  (autouse)
    job,
    keyless,
    signatures,
)

from agent.errors import NetworkError, Unsupported
from agent.formats.document_caps import StructureCaps
from agent.formats.xades import build_xades_here
from agent.formats.xades_extend import extend_xades_here

pytestmark = [pytest.mark.softhsm, pytest.mark.verifiers]
formats_bed = pki_services.formats_bed


def _values(signature: etree._Element, name: str) -> list[bytes]:
    return [base64.b64decode(n.text or "") for n in signature.iter(f"{{{XADES}}}{name}")]


def _gen_time(token_der: bytes) -> object:
    token = cms.ContentInfo.load(token_der)
    info = token["content"]["encap_content_info"]["content"].parsed
    assert isinstance(info, tsp.TSTInfo)
    return info["gen_time"].native


def _token_signer(token_der: bytes) -> x509.Certificate:
    token = cms.ContentInfo.load(token_der)
    sid = token["content"]["signer_infos"][0]["sid"].chosen
    for choice in token["content"]["certificates"]:
        cert = choice.chosen
        if cert.issuer == sid["issuer"] and cert.serial_number == sid["serial_number"].native:
            return x509.load_der_x509_certificate(cert.dump())
    raise AssertionError("the token does not carry its signer's certificate")


def _ocsp(signature: etree._Element) -> list[tuple[int, object]]:
    found = []
    for der in _values(signature, "EncapsulatedOCSPValue"):
        data = asn1_ocsp.OCSPResponse.load(der)["response_bytes"]["response"].parsed[
            "tbs_response_data"]
        for single in data["responses"]:
            found.append((single["cert_id"]["serial_number"].native, data["produced_at"].native))
    return found


def _offline_validation(bed: FormatsBed, signature: etree._Element,
                        certs: list[x509.Certificate]) -> None:
    """pyhanko-certvalidator, fetching nothing, validates ``certs`` with hard-fail
    revocation checking from what the signature carries alone (KeyInfo, CertificateValues,
    RevocationValues, TimeStampValidationData): the B-LT data is complete."""
    from asn1crypto import crl as asn1_crl
    from asn1crypto import x509 as asn1_x509
    from pyhanko_certvalidator import CertificateValidator, ValidationContext

    carried = [asn1_x509.Certificate.load(base64.b64decode(n.text or "")) for n in
               signature.iter(f"{{{DS}}}X509Certificate")]
    carried += [asn1_x509.Certificate.load(der)
                for der in _values(signature, "EncapsulatedX509Certificate")]
    root = asn1_x509.Certificate.load(
        bed.services.pki.root.cert.public_bytes(Encoding.DER))
    context = ValidationContext(
        trust_roots=[root], other_certs=carried, allow_fetching=False,
        revocation_mode="hard-fail",
        ocsps=[asn1_ocsp.OCSPResponse.load(d) for d in _values(signature,
                                                                "EncapsulatedOCSPValue")],
        crls=[asn1_crl.CertificateList.load(d) for d in _values(signature,
                                                                 "EncapsulatedCRLValue")])
    for cert in certs:
        subject = asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))
        asyncio.run(CertificateValidator(subject, validation_context=context
                                         ).async_validate_path())


# --- B-LT and B-LTA at signing time --------------------------------------------------------

def test_sign_b_lt_carries_the_real_tsa_data_fetched_after_the_time_stamp(
        formats_bed: FormatsBed, tmp_path: Path) -> None:
    # One TSA URL served by two TSA certificates in turn (D1): the preflight's is not
    # the real token's.
    signing_job, _ = job(formats_bed, "ec", "/tsa-rotating")
    signed = asyncio.run(build_xades_here(signing_job, UBL_INVOICE, "B-LT", "enveloped",
                                          placement=UBL_PLACEMENT))
    signature = signatures(signed)[0]
    props = signature.find(f".//{{{XADES}}}UnsignedSignatureProperties")
    assert props is not None
    assert [etree.QName(c).localname for c in props] == [
        "SignatureTimeStamp", "CertificateValues", "RevocationValues"]
    token = _values(signature, "EncapsulatedTimeStamp")[0]
    tsa = _token_signer(token)
    certs = _values(signature, "EncapsulatedX509Certificate")
    assert tsa.public_bytes(Encoding.DER) in certs
    root = formats_bed.services.pki.root.cert
    assert root.public_bytes(Encoding.DER) in certs
    responses = _ocsp(signature)
    serials = {serial for serial, _ in responses}
    assert {signing_job.certificate.serial_number, tsa.serial_number} <= serials
    # D2: every OCSP response is newer than the time-stamp (whole seconds).
    stamped = _gen_time(token)
    assert all(at >= stamped.replace(microsecond=0) for _, at in responses)  # type: ignore[attr-defined]
    _offline_validation(formats_bed, signature, [signing_job.certificate, tsa])
    assert_xmlsec(formats_bed, signed, tmp_path)
    assert_xadesjs(signed, tmp_path, signing_job.certificate)


def test_sign_b_lt_without_the_tsa_data_is_network(formats_bed: FormatsBed) -> None:
    signing_job, signer = job(formats_bed, "rsa", "/tsa-unverifiable")
    with pytest.raises(NetworkError):
        asyncio.run(build_xades_here(signing_job, UBL_INVOICE, "B-LT", "enveloped"))
    assert signer.calls == []  # found out before the user was asked


def test_sign_b_lta_archive_time_stamp_covers_the_standard_input(
        formats_bed: FormatsBed, tmp_path: Path) -> None:
    signing_job, _ = job(formats_bed, "rsa", "/tsa")
    signed = asyncio.run(build_xades_here(signing_job, UBL_INVOICE, "B-LTA", "enveloped",
                                          placement=UBL_PLACEMENT))
    signature = signatures(signed)[0]
    props = signature.find(f".//{{{XADES}}}UnsignedSignatureProperties")
    assert props is not None
    assert [etree.QName(c).localname for c in props] == [
        "SignatureTimeStamp", "CertificateValues", "RevocationValues", "ArchiveTimeStamp",
        "TimeStampValidationData"]
    assert_archive_stamp(formats_bed, signed, tmp_path, 1)
    assert_xmlsec(formats_bed, signed, tmp_path)
    assert_xadesjs(signed, tmp_path, signing_job.certificate)


# --- the keyless extension -----------------------------------------------------------------

def _levels(xml: bytes) -> list[str]:
    from agent.formats.xades_ltv import signature_level

    return [signature_level(s) for s in signatures(xml)]


def test_extend_b_b_step_by_step_to_lta_and_renew(formats_bed: FormatsBed,
                                                  tmp_path: Path) -> None:
    signing_job, _ = job(formats_bed, "ec")
    signed = asyncio.run(build_xades_here(signing_job, UBL_INVOICE, "B-B", "enveloped",
                                          placement=UBL_PLACEMENT))
    extender = keyless(formats_bed)
    t = asyncio.run(extend_xades_here(extender, signed, "B-T", None))
    assert _levels(t) == ["B-T"]
    lt = asyncio.run(extend_xades_here(extender, t, "B-LT", None))
    assert _levels(lt) == ["B-LT"]
    # The signed part is untouched by each step.
    assert etree.tostring(signatures(lt)[0].find(f"{{{DS}}}SignedInfo")) == \
        etree.tostring(signatures(signed)[0].find(f"{{{DS}}}SignedInfo"))
    assert asyncio.run(extend_xades_here(extender, lt, "B-T", None)) == lt  # nothing to do
    # Offline, a B-T signature lacks what B-LT adds: the check below can fail.
    with pytest.raises(InsufficientRevinfoError):
        _offline_validation(formats_bed, signatures(t)[0], [signing_job.certificate])
    lt_signature = signatures(lt)[0]
    _offline_validation(formats_bed, lt_signature, [
        signing_job.certificate,
        _token_signer(_values(lt_signature, "EncapsulatedTimeStamp")[0])])
    lta = asyncio.run(extend_xades_here(extender, lt, "B-LTA", None))
    assert _levels(lta) == ["B-LTA"]
    # The archive time-stamp's TSA can be validated offline from the signature too.
    lta_signature = signatures(lta)[0]
    _offline_validation(formats_bed, lta_signature, [
        _token_signer(_values(lta_signature, "EncapsulatedTimeStamp")[-1])])
    assert_archive_stamp(formats_bed, lta, tmp_path, 1)
    renewed = asyncio.run(extend_xades_here(extender, lta, "B-LTA", None))
    props = signatures(renewed)[0].find(f".//{{{XADES}}}UnsignedSignatureProperties")
    assert props is not None
    assert [etree.QName(c).localname for c in props][-4:] == [
        "ArchiveTimeStamp", "TimeStampValidationData", "ArchiveTimeStamp",
        "TimeStampValidationData"]
    assert_archive_stamp(formats_bed, renewed, tmp_path, 1)
    assert_archive_stamp(formats_bed, renewed, tmp_path, 2)
    assert_xmlsec(formats_bed, renewed, tmp_path)
    assert_xadesjs(renewed, tmp_path, signing_job.certificate)
    # A renewal of an archive time-stamp that has no validation data yet adds it first,
    # so the new archive time-stamp covers it.
    bare = etree.fromstring(lta)
    data = bare.find(f".//{{{XADES141}}}TimeStampValidationData")
    assert data is not None
    data.getparent().remove(data)  # type: ignore[union-attr]
    again = asyncio.run(extend_xades_here(extender, etree.tostring(bare), "B-LTA", None))
    props = signatures(again)[0].find(f".//{{{XADES}}}UnsignedSignatureProperties")
    assert props is not None
    assert [etree.QName(c).localname for c in props][-4:] == [
        "ArchiveTimeStamp", "TimeStampValidationData", "ArchiveTimeStamp",
        "TimeStampValidationData"]
    assert_archive_stamp(formats_bed, again, tmp_path, 2)


def test_extend_two_signers_each_gets_its_own_archive_time_stamp(
        formats_bed: FormatsBed, tmp_path: Path) -> None:
    first_job, _ = job(formats_bed, "rsa")
    second_job, _ = job(formats_bed, "ec")
    one = asyncio.run(build_xades_here(first_job, UBL_INVOICE, "B-B", "enveloped",
                                       placement=UBL_PLACEMENT))
    both = asyncio.run(build_xades_here(second_job, one, "B-B", "enveloped",
                                        placement=UBL_PLACEMENT))
    lta = asyncio.run(extend_xades_here(keyless(formats_bed), both, "B-LTA", None))
    assert _levels(lta) == ["B-LTA", "B-LTA"]
    for index, signing_job in ((1, first_job), (2, second_job)):
        assert_archive_stamp(formats_bed, lta, tmp_path, 1, index)
        assert_xmlsec(formats_bed, lta, tmp_path, index)
        assert_xadesjs(lta, tmp_path, signing_job.certificate, index)


def test_extend_detached_signature_needs_its_document(formats_bed: FormatsBed,
                                                      tmp_path: Path) -> None:
    signing_job, _ = job(formats_bed, "rsa", document_name="qaime.xml")
    signed = asyncio.run(build_xades_here(signing_job, UBL_INVOICE, "B-B", "detached"))
    extender = keyless(formats_bed)
    with pytest.raises(Unsupported, match="give its data"):
        asyncio.run(extend_xades_here(extender, signed, "B-LTA", None))
    with pytest.raises(Unsupported, match="does not match"):
        asyncio.run(extend_xades_here(extender, signed, "B-LTA",
                                      UBL_INVOICE.replace(b"1250.00", b"1250.01")))
    lta = asyncio.run(extend_xades_here(extender, signed, "B-LTA", UBL_INVOICE))
    assert _levels(lta) == ["B-LTA"]
    (tmp_path / "qaime.xml").write_bytes(UBL_INVOICE)
    assert_archive_stamp(formats_bed, lta, tmp_path, 1)


def test_extend_refuses_what_would_break_or_is_broken(formats_bed: FormatsBed) -> None:
    signing_job, _ = job(formats_bed, "rsa")
    ours = asyncio.run(build_xades_here(signing_job, UBL_INVOICE, "B-B", "enveloped",
                                        placement=UBL_PLACEMENT))
    # Someone else's plain enveloped signature over the whole document, ours included:
    # any change to ours would break theirs.
    issued = formats_bed.identities["ec"]
    theirs = etree.tostring(XAdESSigner(
        method=methods.enveloped, signature_algorithm="ecdsa-sha256",
        digest_algorithm="sha256").sign(etree.fromstring(ours), key=issued.key,
                                        cert=[issued.cert]))
    requests = len(formats_bed.services.requests)
    with pytest.raises(Unsupported, match="would break that signature"):
        asyncio.run(extend_xades_here(keyless(formats_bed), theirs, "B-T", None))
    # A changed document is not time-stamped as if it were the signed one.
    tampered = ours.replace(b"GIB2024000000117", b"GIB2024000000118")
    with pytest.raises(Unsupported, match="does not match"):
        asyncio.run(extend_xades_here(keyless(formats_bed), tampered, "B-LTA", None))
    assert len(formats_bed.services.requests) == requests  # no service was asked
    with pytest.raises(Unsupported):
        asyncio.run(extend_xades_here(keyless(formats_bed), UBL_INVOICE, "B-T", None))
    with pytest.raises(Unsupported):
        asyncio.run(extend_xades_here(keyless(formats_bed), ours, "B-B", None))


def test_extension_bounds_signatures_and_references(formats_bed: FormatsBed) -> None:
    from agent.formats.xades_extend import MAX_REFERENCES, MAX_SIGNATURES

    signing_job, _ = job(formats_bed, "rsa")
    signed = asyncio.run(build_xades_here(signing_job, UBL_INVOICE, "B-B", "enveloped"))
    requests = len(formats_bed.services.requests)
    # One signature with a reference too many.
    root = etree.fromstring(signed)
    signed_info = root.find(f".//{{{DS}}}SignedInfo")
    assert signed_info is not None
    reference = signed_info.find(f"{{{DS}}}Reference")
    for _ in range(MAX_REFERENCES - len(signed_info.findall(f"{{{DS}}}Reference")) + 1):
        signed_info.append(etree.fromstring(etree.tostring(reference)))
    with pytest.raises(Unsupported, match=f"more than {MAX_REFERENCES} references"):
        asyncio.run(extend_xades_here(keyless(formats_bed), etree.tostring(root), "B-T",
                                      None))
    # A signature too many (copies of the one, in the document element).
    root = etree.fromstring(signed)
    signature = root.find(f"{{{DS}}}Signature")
    for _ in range(MAX_SIGNATURES):
        root.append(etree.fromstring(etree.tostring(signature)))
    caps = StructureCaps(xml_namespace_declarations=10 * MAX_SIGNATURES)
    with pytest.raises(Unsupported, match=f"more than {MAX_SIGNATURES} XAdES signatures"):
        asyncio.run(extend_xades_here(keyless(formats_bed), etree.tostring(root), "B-T",
                                      None, caps=caps))
    assert len(formats_bed.services.requests) == requests


def test_extend_another_tools_signature(formats_bed: FormatsBed, tmp_path: Path) -> None:
    """A XAdES B-B made by signxml alone (the enveloped transform only, no transform on
    its SignedProperties and KeyInfo references: inclusive C14N by default) is extended
    to B-LTA; its references are processed as XMLDSig says and still match."""
    issued = formats_bed.identities["ec"]
    document = b'<Hesab nomre="117"><Mebleg valyuta="AZN">1250.00</Mebleg></Hesab>'
    plain = etree.tostring(XAdESSigner(
        method=methods.enveloped, signature_algorithm="ecdsa-sha256",
        digest_algorithm="sha256").sign(etree.fromstring(document), key=issued.key,
                                        cert=[issued.cert, formats_bed.services.pki
                                              .intermediate.cert]))
    assert_xmlsec(formats_bed, plain, tmp_path)
    lta = asyncio.run(extend_xades_here(keyless(formats_bed), plain, "B-LTA", None))
    assert _levels(lta) == ["B-LTA"]
    assert_xmlsec(formats_bed, lta, tmp_path)
    assert_archive_stamp(formats_bed, lta, tmp_path, 1)
