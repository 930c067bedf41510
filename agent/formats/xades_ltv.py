"""XAdES long-term levels (ETSI EN 319 132-1): what B-T, B-LT and B-LTA add to a
signature's unsigned properties, for a signature being made (``agent.formats.xades``) and
for one being extended without its key (``agent.formats.xades_extend``).

* B-T: ``xades:SignatureTimeStamp`` over the exclusive-canonical ``ds:SignatureValue``;
* B-LT: ``xades:CertificateValues`` and ``xades:RevocationValues``: the certificates,
  OCSP responses and CRLs of the signer's and the signature time-stamp's TSA's paths,
  gathered after the time-stamp (``agent.formats.revocation``), for the certificate that
  signed the real token;
* B-LTA: ``xadesv141:ArchiveTimeStamp`` over the input of EN 319 132-1 §5.5.2.2 (each
  reference's processed data, SignedInfo, SignatureValue, KeyInfo, the unsigned
  signature properties before it, the other ds:Objects), then
  ``xadesv141:TimeStampValidationData`` with its TSA's validation data, so the next
  renewal can cover it.

signxml knows none of the unsigned properties and no library here computes the archive
time-stamp input, so this is ours, with lxml: every reference is processed again here
and its digest compared with the DigestValue — a reference whose processing we got wrong
is refused, never time-stamped.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Sequence
from typing import Any

from asn1crypto import cms
from cryptography import x509
from lxml import etree

from agent.errors import NetworkError, Unsupported
from agent.formats.anchors import Anchors
from agent.formats.network import NetworkSettings
from agent.formats.revocation import (
    ValidationData,
    as_crypto,
    collect_validation_data,
    ocsp_from_issuer_responder,
    to_asn1,
    validation_context,
)
from agent.formats.timestamps import GuardedTimeStamper, token_certificates, token_signer
from agent.formats.xades_placement import (
    DS,
    ENVELOPED,
    EXC_C14N,
    NO_SIGNATURES,
    XPATH_TRANSFORM,
    element_path,
    find_by_id,
    follow,
    remove_keeping_tail,
)

log = logging.getLogger(__name__)

XADES = "http://uri.etsi.org/01903/v1.3.2#"
XADES141 = "http://uri.etsi.org/01903/v1.4.1#"
C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
C14N_COMMENTS = C14N + "#WithComments"
EXC_C14N_COMMENTS = EXC_C14N + "WithComments"
# C14N 1.1 differs from 1.0 only in how xml:id and xml:base are inherited; lxml has no
# 1.1, so it is read as 1.0 (as signxml does) — the DigestValue check refuses a document
# where that makes a difference.
C14N11 = "http://www.w3.org/2006/12/xml-c14n11"
_C14N_METHODS = {C14N: False, C14N_COMMENTS: False, EXC_C14N: True, EXC_C14N_COMMENTS: True,
                 C14N11: False, C14N11 + "#WithComments": False}
DIGEST_URIS = {
    "http://www.w3.org/2000/09/xmldsig#sha1": "sha1",
    "http://www.w3.org/2001/04/xmlenc#sha256": "sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384": "sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512": "sha512",
}
_TIMESTAMP_DIGESTS = ("sha256", "sha384", "sha512")


def _tag(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


def c14n(element: etree._Element, *, exclusive: bool = True) -> bytes:
    text: bytes = etree.tostring(element, method="c14n", exclusive=exclusive,
                                 with_comments=False)
    return text


# --- the parts of a signature -------------------------------------------------------------

def qualifying_properties(signature: etree._Element) -> etree._Element:
    found = signature.find(f"{{{DS}}}Object/{{{XADES}}}QualifyingProperties")
    if found is None:
        raise Unsupported("the signature is not a XAdES signature (no QualifyingProperties)")
    return found


def unsigned_signature_properties(signature: etree._Element) -> etree._Element:
    """The signature's ``xades:UnsignedSignatureProperties``, made when missing."""
    qualifying = qualifying_properties(signature)
    unsigned = qualifying.find(_tag(XADES, "UnsignedProperties"))
    if unsigned is None:
        unsigned = etree.SubElement(qualifying, _tag(XADES, "UnsignedProperties"))
    props = unsigned.find(_tag(XADES, "UnsignedSignatureProperties"))
    if props is None:
        props = etree.Element(_tag(XADES, "UnsignedSignatureProperties"))
        unsigned.insert(0, props)  # before any UnsignedDataObjectProperties
    return props


def signature_level(signature: etree._Element) -> str:
    """The baseline level the unsigned properties show: B-B, B-T, B-LT or B-LTA."""
    props = signature.find(f".//{{{XADES}}}UnsignedSignatureProperties")
    names = {child.tag for child in (props if props is not None else [])}
    if _tag(XADES141, "ArchiveTimeStamp") in names:
        return "B-LTA"
    if {_tag(XADES, "CertificateValues"), _tag(XADES, "RevocationValues")} <= names:
        return "B-LT"
    if _tag(XADES, "SignatureTimeStamp") in names:
        return "B-T"
    return "B-B"


def signature_digest(signature: etree._Element) -> str:
    """The digest for the time-stamps added to a signature: its first reference's."""
    method = signature.find(f"{{{DS}}}SignedInfo/{{{DS}}}Reference/{{{DS}}}DigestMethod")
    name = DIGEST_URIS.get(method.get("Algorithm", "") if method is not None else "")
    return name if name in _TIMESTAMP_DIGESTS else "sha256"


def key_info_certificates(signature: etree._Element) -> list[x509.Certificate]:
    certs = []
    for node in signature.iterfind(f"{{{DS}}}KeyInfo/{{{DS}}}X509Data/{{{DS}}}X509Certificate"):
        try:
            certs.append(x509.load_der_x509_certificate(base64.b64decode(node.text or "")))
        except ValueError:
            raise Unsupported("the signature carries a certificate that cannot be read"
                              ) from None
    return certs


def signing_certificate(signature: etree._Element) -> tuple[x509.Certificate,
                                                            list[x509.Certificate]]:
    """The signer's certificate (the KeyInfo certificate whose digest
    SigningCertificate(V2) names) and the other KeyInfo certificates."""
    from cryptography.hazmat.primitives.serialization import Encoding

    certs = key_info_certificates(signature)
    named = [base64.b64decode(v.text or "") for v in signature.iterfind(
        f".//{{{XADES}}}SigningCertificateV2/{{{XADES}}}Cert/{{{XADES}}}CertDigest/"
        f"{{{DS}}}DigestValue")]
    named += [base64.b64decode(v.text or "") for v in signature.iterfind(
        f".//{{{XADES}}}SigningCertificate/{{{XADES}}}Cert/{{{XADES}}}CertDigest/"
        f"{{{DS}}}DigestValue")]
    for cert in certs:
        der = cert.public_bytes(Encoding.DER)
        if any(hashlib.new(md, der).digest() in named
               for md in ("sha1", "sha256", "sha384", "sha512")):
            return cert, [c for c in certs if c is not cert]
    raise Unsupported("the signature does not carry the certificate it names as its "
                      "signer's in KeyInfo")


def timestamp_tokens(signature: etree._Element, name: str, namespace: str = XADES
                     ) -> list[cms.ContentInfo]:
    tokens = []
    for node in signature.iterfind(f".//{{{namespace}}}{name}/{{{XADES}}}EncapsulatedTimeStamp"):
        try:
            tokens.append(cms.ContentInfo.load(base64.b64decode(node.text or "")))
        except ValueError:
            raise Unsupported("the signature carries a time-stamp that cannot be read") from None
    return tokens


# --- time-stamps --------------------------------------------------------------------------

async def stamp(stamper: GuardedTimeStamper, data: bytes, md: str) -> cms.ContentInfo:
    token: cms.ContentInfo = await stamper.async_timestamp(hashlib.new(md, data).digest(), md)
    return token


def add_timestamp_element(props: etree._Element, namespace: str, name: str,
                          token: cms.ContentInfo, element_id: str) -> etree._Element:
    nsmap = {"xades141": XADES141} if namespace == XADES141 else None
    node = etree.SubElement(props, _tag(namespace, name), nsmap=nsmap, Id=element_id)
    etree.SubElement(node, f"{{{DS}}}CanonicalizationMethod", Algorithm=EXC_C14N)
    encapsulated = etree.SubElement(node, _tag(XADES, "EncapsulatedTimeStamp"))
    encapsulated.text = base64.b64encode(token.dump()).decode("ascii")
    return node


async def add_signature_timestamp(signature: etree._Element, stamper: GuardedTimeStamper,
                                  md: str) -> cms.ContentInfo:
    """B-T: a time-stamp over the exclusive-canonical ds:SignatureValue."""
    value = signature.find(f"{{{DS}}}SignatureValue")
    if value is None:
        raise Unsupported("the signature has no SignatureValue")
    token = await stamp(stamper, c14n(value), md)
    add_timestamp_element(unsigned_signature_properties(signature), XADES,
                          "SignatureTimeStamp", token,
                          f"{signature.get('Id', 'Signature')}-SignatureTimeStamp")
    return token


# --- validation data ----------------------------------------------------------------------

async def gather_validation_data(anchors: Anchors, network: NetworkSettings, session: Any,
                                 subjects: Sequence[x509.Certificate],
                                 extra: Sequence[x509.Certificate],
                                 tokens: Sequence[cms.ContentInfo]) -> ValidationData:
    """The validation data of ``subjects`` and of the TSAs that signed ``tokens``, asked
    for anew with hard-fail revocation checking: anything missing is NETWORK."""
    tsas = []
    for token in tokens:
        signer = token_signer(token)
        if not signer:
            log.warning("time-stamp token carries no certificate of its signer")
            raise NetworkError("validation data (OCSP/CRL) could not be gathered",
                               service="REVOCATION")
        tsas.extend(signer)
    others = [*extra, *(c for t in tokens for c in as_crypto(token_certificates(t)))]
    context = validation_context(anchors, others, session, network, hard_fail=True)

    async def issuer_ocsp(cert: Any, path: Any) -> Any:
        return await ocsp_from_issuer_responder(
            cert, path,
            lambda ocsps: validation_context(anchors, others, session, network,
                                             hard_fail=True, ocsps=ocsps),
            session, network)

    return await collect_validation_data(context, [*(to_asn1(c) for c in subjects), *tsas],
                                         issuer_ocsp=issuer_ocsp)


def _present(signature: etree._Element, name: str) -> set[bytes]:
    return {base64.b64decode(n.text or "") for n in signature.iter(_tag(XADES, name))}


def validation_elements(signature: etree._Element, data: ValidationData
                        ) -> tuple[etree._Element, etree._Element]:
    """``xades:CertificateValues`` (the certificates KeyInfo and earlier values do not
    carry) and ``xades:RevocationValues`` (the OCSP responses and CRLs not carried yet)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    known = {c.public_bytes(Encoding.DER) for c in key_info_certificates(signature)}
    known |= _present(signature, "EncapsulatedX509Certificate")
    certs = etree.Element(_tag(XADES, "CertificateValues"))
    for cert in data.certificates:
        der = cert.dump()
        if der not in known:
            known.add(der)
            etree.SubElement(certs, _tag(XADES, "EncapsulatedX509Certificate")).text = \
                base64.b64encode(der).decode("ascii")
    revocation = etree.Element(_tag(XADES, "RevocationValues"))
    for kind, values, items in (
            ("CRL", "EncapsulatedCRLValue", data.crls),
            ("OCSP", "EncapsulatedOCSPValue", data.ocsps)):
        present = _present(signature, values)
        fresh = [i.dump() for i in items if i.dump() not in present]
        if fresh:
            group = etree.SubElement(revocation, _tag(XADES, f"{kind}Values"))
            for der in dict.fromkeys(fresh):
                etree.SubElement(group, _tag(XADES, values)).text = \
                    base64.b64encode(der).decode("ascii")
    return certs, revocation


def add_long_term_values(signature: etree._Element, data: ValidationData) -> None:
    """B-LT: CertificateValues and RevocationValues after the signature time-stamp."""
    props = unsigned_signature_properties(signature)
    for element in validation_elements(signature, data):
        props.append(element)


def add_timestamp_validation_data(signature: etree._Element, data: ValidationData,
                                  element_id: str) -> None:
    """``xadesv141:TimeStampValidationData`` for an archive time-stamp's TSA."""
    props = unsigned_signature_properties(signature)
    holder = etree.SubElement(props, _tag(XADES141, "TimeStampValidationData"),
                              nsmap={"xades141": XADES141}, Id=element_id)
    certs, revocation = validation_elements(signature, data)
    if len(certs):
        holder.append(certs)
    if len(revocation):
        holder.append(revocation)


# --- the archive time-stamp ---------------------------------------------------------------

def _by_id(root: etree._Element, value: str) -> etree._Element:
    found = find_by_id(root, value)
    if len(found) != 1:
        raise Unsupported(f"a reference names {len(found)} elements; it cannot be processed")
    return found[0]


def reference_octets(root: etree._Element, signature: etree._Element,
                     reference: etree._Element, detached: bytes | None) -> bytes:
    """A ds:Reference processed by the XMLDSig reference processing model (for the
    transforms the agent and common signers write), checked against its DigestValue."""
    uri = reference.get("URI")
    algorithms = [t.get("Algorithm") or "" for t in
                  reference.iterfind(f"{{{DS}}}Transforms/{{{DS}}}Transform")]
    final = algorithms[-1] if algorithms and algorithms[-1] in _C14N_METHODS else None
    steps = algorithms[:-1] if final else algorithms
    if any(step not in (ENVELOPED, XPATH_TRANSFORM) for step in steps):
        raise Unsupported("a reference of the signature uses a transform the agent does not "
                          "process; it cannot be extended")
    for transform in reference.iterfind(f"{{{DS}}}Transforms/{{{DS}}}Transform"):
        if transform.get("Algorithm") == XPATH_TRANSFORM:
            xpath = transform.find(f"{{{DS}}}XPath")
            if xpath is None or "".join((xpath.text or "").split()) != NO_SIGNATURES \
                    or xpath.nsmap.get("ds") != DS:
                raise Unsupported("a reference of the signature uses an XPath transform "
                                  "the agent does not process")
    if uri is not None and (uri == "" or uri.startswith("#")):
        octets = _same_document(root, signature, uri, steps, final)
    else:
        if detached is None:
            raise Unsupported("the signature covers a detached document: give its data")
        if steps:
            raise Unsupported("a detached reference with these transforms is not processed")
        if final is None:
            octets = detached
        else:
            parsed = etree.fromstring(detached, parser=etree.XMLParser(
                resolve_entities=False, no_network=True, load_dtd=False))
            octets = c14n(parsed, exclusive=_C14N_METHODS[final])
    method = reference.find(f"{{{DS}}}DigestMethod")
    md = DIGEST_URIS.get(method.get("Algorithm", "") if method is not None else "")
    value = reference.findtext(f"{{{DS}}}DigestValue") or ""
    if md is None or hashlib.new(md, octets).digest() != base64.b64decode(value):
        raise Unsupported(f"reference {uri!r} of the signature does not match what it covers "
                          "(another document, or a change since it was signed)")
    return octets


def _same_document(root: etree._Element, signature: etree._Element, uri: str,
                   steps: list[str], final: str | None) -> bytes:
    copy = etree.fromstring(etree.tostring(root, encoding="utf-8"), parser=etree.XMLParser(
        resolve_entities=False, no_network=True, huge_tree=False))

    def in_copy(element: etree._Element) -> etree._Element:
        return follow(copy, element_path(element))

    target = in_copy(root if uri == "" else _by_id(root, uri[1:]))
    own = in_copy(signature)
    if XPATH_TRANSFORM in steps:
        for other in list(copy.iter(f"{{{DS}}}Signature")):
            if other.getparent() is not None and not any(
                    a.tag == f"{{{DS}}}Signature" for a in other.iterancestors()):
                remove_keeping_tail(other)
    elif ENVELOPED in steps and own.getparent() is not None:
        remove_keeping_tail(own)
    exclusive = _C14N_METHODS[final] if final is not None else False
    return c14n(target, exclusive=exclusive)


def check_references(root: etree._Element, signature: etree._Element,
                     detached: bytes | None) -> None:
    """Every reference of the signature still matches what it covers (a detached one
    only when its data is given): a changed document is never time-stamped as if it
    were the signed one."""
    signed_info = signature.find(f"{{{DS}}}SignedInfo")
    if signed_info is None:
        raise Unsupported("the signature has no SignedInfo")
    for reference in signed_info.iterfind(f"{{{DS}}}Reference"):
        uri = reference.get("URI")
        external = uri is None or not (uri == "" or uri.startswith("#"))
        if external and detached is None:
            continue
        reference_octets(root, signature, reference, detached)


def archive_input(root: etree._Element, signature: etree._Element,
                  detached: bytes | None) -> bytes:
    """The input of a new archive time-stamp (EN 319 132-1 §5.5.2.2, exclusive C14N)."""
    signed_info = signature.find(f"{{{DS}}}SignedInfo")
    value = signature.find(f"{{{DS}}}SignatureValue")
    if signed_info is None or value is None:
        raise Unsupported("the signature has no SignedInfo or SignatureValue")
    parts = [reference_octets(root, signature, reference, detached)
             for reference in signed_info.iterfind(f"{{{DS}}}Reference")]
    parts += [c14n(signed_info), c14n(value)]
    key_info = signature.find(f"{{{DS}}}KeyInfo")
    if key_info is not None:
        parts.append(c14n(key_info))
    props = unsigned_signature_properties(signature)
    parts += [c14n(child) for child in props if isinstance(child.tag, str)]
    qualifying = qualifying_properties(signature)
    parts += [c14n(obj) for obj in signature.iterfind(f"{{{DS}}}Object")
              if qualifying.getparent() is not obj]
    return b"".join(parts)


async def add_archive_timestamp(root: etree._Element, signature: etree._Element,
                                stamper: GuardedTimeStamper, md: str,
                                detached: bytes | None) -> cms.ContentInfo:
    """B-LTA: an archive time-stamp over everything before it."""
    data = archive_input(root, signature, detached)
    token = await stamp(stamper, data, md)
    props = unsigned_signature_properties(signature)
    count = len(props.findall(_tag(XADES141, "ArchiveTimeStamp")))
    node = add_timestamp_element(props, XADES141, "ArchiveTimeStamp", token,
                                 f"{signature.get('Id', 'Signature')}-ArchiveTimeStamp"
                                 f"{count + 1}")
    assert node is not None
    return token


def last_archive_timestamp_lacks_data(signature: etree._Element) -> bool:
    """Whether the last ArchiveTimeStamp has no TimeStampValidationData after it."""
    props = signature.find(f".//{{{XADES}}}UnsignedSignatureProperties")
    if props is None:
        return False
    children = [c for c in props if isinstance(c.tag, str)]
    stamps = [i for i, c in enumerate(children) if c.tag == _tag(XADES141, "ArchiveTimeStamp")]
    if not stamps:
        return False
    return not any(c.tag == _tag(XADES141, "TimeStampValidationData")
                   for c in children[stamps[-1] + 1:])
