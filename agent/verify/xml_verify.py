"""XAdES verification: signxml's ``XAdESVerifier`` checks the references, the signature
value and the signing-certificate digest against the certificate in ``KeyInfo``;
pyHanko's time-stamp validation checks the ``SignatureTimeStamp`` (its imprint is the
canonicalised ``SignatureValue``, EN 319 132-1 §5.3); pyhanko-certvalidator builds and
checks the signer's path — at the time-stamp's time when there is one (so a certificate
that expired since still passes), else now.

Enveloped and enveloping signatures only: signxml does not fetch what a detached
reference names, and a document from a page must not make the agent fetch anything."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import cms
from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from lxml import etree
from pyhanko.sign.ades.report import AdESFailure, AdESIndeterminate, AdESSubIndic
from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
from pyhanko_certvalidator import ValidationContext
from signxml import exceptions as sx_errors
from signxml.xades.xades import XAdESVerifier

from agent.errors import Unsupported
from agent.formats.asic_xades_archive import archive_digest
from agent.formats.document_caps import StructureCaps, check_xml_structure
from agent.formats.job import KeylessJob
from agent.formats.revocation import SessionFetcherBackend, to_asn1
from agent.formats.xades import _parse
from agent.formats.xades_ltv import archive_input
from agent.formats.xades_placement import (
    element_path,
    excludes_signatures,
    follow,
    id_index,
    remove_keeping_tail,
)
from agent.verify.archive import Imprint, check_token, constant_imprint, token_digest_algorithm
from agent.verify.caps import max_verified_signatures
from agent.verify.common import (
    PASSED,
    SignatureFacts,
    Verdict,
    certificate_facts,
    chain_facts,
    revinfo_policy,
)
from agent.verify.past import Material, judge_at_archive, needs_past_validation, signer_at

DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
XADES141 = "http://uri.etsi.org/01903/v1.4.1#"
NS = {"ds": DS, "xades": XADES, "xades141": XADES141}
_SIGNATURE = f"{{{DS}}}Signature"
Resolver = Callable[[str], bytes | None]


class _Utf8XAdESVerifier(XAdESVerifier):
    """signxml re-parses the document after serialising it as ASCII, which breaks element
    and attribute *names* outside ASCII (``<Qaimə>``); UTF-8 keeps them (as the agent's
    own signer does, agent/formats/xades.py).  ``index``: which of the document's
    top-level signatures to check (signxml takes the first); ``ordinal``: which of all
    its ds:Signature elements, in document order (a countersignature, nested in another
    signature: signxml re-parses the document, so the element is found again by its
    place among the signatures, which comments or whitespace do not change)."""

    def __init__(self, index: int = 0, ordinal: int | None = None) -> None:
        super().__init__()
        self._index = index
        self._ordinal = ordinal

    def _get_signature(self, root: Any) -> Any:
        if self._ordinal is not None:
            every = list(root.iter(_SIGNATURE))
            if self._ordinal >= len(every):
                raise sx_errors.InvalidInput("the countersignature is not in the document")
            return every[self._ordinal]
        tops = top_level_signatures(root)
        if self._index >= len(tops):
            raise sx_errors.InvalidInput("the signature is not in the document")
        return tops[self._index]

    def _tostring(self, xml_node: Any, **kwargs: Any) -> bytes:
        kwargs.setdefault("encoding", "utf-8")
        text: bytes = etree.tostring(xml_node, **kwargs)
        return text


def xades_level(signature: etree._Element) -> str:
    props = signature.find(".//xades:UnsignedSignatureProperties", NS)
    if props is None or props.find("xades:SignatureTimeStamp", NS) is None:
        return "B-B"
    if props.find("xades141:ArchiveTimeStamp", NS) is not None \
            or props.find("xades:ArchiveTimeStamp", NS) is not None:
        return "B-LTA"
    if props.find("xades:RevocationValues", NS) is not None \
            or props.find("xades:CertificateValues", NS) is not None:
        return "B-LT"
    return "B-T"


async def verify_xml(job: KeylessJob, document: bytes, data: bytes | None,
                    caps: StructureCaps, resolver: Resolver | None = None,
                    report_format: str = "xml") -> list[SignatureFacts]:
    """Every signature of the document (``[documents] max_verified_signatures`` at most),
    each with its own verdict.  ``resolver``: the bytes a detached reference names (an
    ASiC-E container's files; nothing is ever fetched), None: no detached reference."""
    if data is not None:
        raise Unsupported("detached XML signatures are not verified: give an enveloped "
                          "or enveloping signature")
    check_xml_structure(document, caps)
    root = _parse(document)
    signatures = top_level_signatures(root)
    if not signatures:
        raise Unsupported("the XML document carries no signature")
    limit = max_verified_signatures(caps)
    if len(signatures) > limit:
        raise Unsupported(f"an XML document with {len(signatures)} signatures is not "
                          "verified")
    counters = [countersignatures(s) for s in signatures]
    if len(signatures) + sum(len(c) for c in counters) > limit:
        raise Unsupported(f"an XML document with more than {limit} signatures and "
                          "countersignatures is not verified")
    # Each archive time-stamp is checked over a copy of the document: bounded as well.
    if any(len(s.findall(".//xades141:ArchiveTimeStamp", NS)) > limit for s in signatures):
        raise Unsupported(f"a signature with more than {limit} archive time-stamps is not "
                          "verified")
    every = list(root.iter(_SIGNATURE))
    reports: list[SignatureFacts] = []
    for index, signature in enumerate(signatures):
        main = await _verify_one(job, document, root, signature, index, resolver,
                                 report_format)
        reports.append(main)
        number = len(reports)
        # Each countersignature is a report of its own, after the one it countersigns:
        # its verdict neither replaces nor hides the main signature's.
        for counter in counters[index]:
            facts = await _verify_one(job, document, root, counter, index, resolver,
                                      report_format, ordinal=every.index(counter))
            facts.countersigns = number
            facts.field_name = f"xades:CounterSignature of signature {number}"
            reports.append(facts)
    return reports


def countersignatures(signature: etree._Element) -> list[etree._Element]:
    """The ds:Signature elements of the signature's own xades:CounterSignature
    properties (EN 319 132-1 §5.2.7; each signs the ds:SignatureValue).  Those nested in
    a countersignature are not followed: one level is what signers make."""
    found: list[etree._Element] = signature.findall(
        "ds:Object/xades:QualifyingProperties/xades:UnsignedProperties/"
        "xades:UnsignedSignatureProperties/xades:CounterSignature/ds:Signature", NS)
    return found


def top_level_signatures(root: etree._Element) -> list[etree._Element]:
    """The document's signatures, not those inside another signature (a countersignature
    or an enveloped document's own signature belongs to the outer one's content)."""
    if root.tag == _SIGNATURE:
        return [root]
    return [s for s in root.iter(_SIGNATURE)
            if not any(a.tag == _SIGNATURE for a in s.iterancestors())]


def _excludes_other_signatures(root: etree._Element, signature: etree._Element) -> bool:
    """Whether every same-document reference of ``signature`` carries a transform that
    takes every ds:Signature out of what it covers (the co-signers' XPath transform of
    agent/formats/xades_placement.py).  References into the signature itself (its
    SignedProperties) are not affected by the other signatures."""
    signed_info = signature.find("ds:SignedInfo", NS)
    if signed_info is None:
        return False
    own = set(signature.iter())
    ids: dict[str, list[etree._Element]] | None = None
    for reference in signed_info.iterfind("ds:Reference", NS):
        uri = reference.get("URI")
        if uri is not None and uri != "" and not uri.startswith("#"):
            continue  # another file
        if uri and uri.startswith("#") and not uri.startswith("#xpointer(/)"):
            ids = ids if ids is not None else id_index(root)  # one pass, however many
            targets = ids.get(uri[1:], [])
            if targets and all(t in own for t in targets):
                continue
        transforms = reference.findall("ds:Transforms/ds:Transform", NS)
        if not excludes_signatures(transforms):
            return False
    return True


def signxml_input(document: bytes, root: etree._Element, signature: etree._Element,
                  index: int) -> tuple[bytes, int]:
    """The document signxml checks for the ``index``-th signature, and that signature's
    index in it.

    signxml applies the enveloped-signature transform but ignores the XPath transform
    ``not(ancestor-or-self::ds:Signature)`` co-signed documents carry, so with several
    signatures it would digest the others too.  When every same-document reference of
    this signature excludes signatures, the others are taken out first (lxml, keeping
    their tails: what the XPath transform's node-set keeps, as
    ``xades_placement.without_signatures`` computes it for signing); otherwise the
    document stays as it is, other signatures and all, which is what such a reference
    covers."""
    tops = top_level_signatures(root)
    if len(tops) == 1 or not _excludes_other_signatures(root, signature):
        return document, index
    copy = etree.ElementTree(etree.fromstring(
        etree.tostring(root, encoding="utf-8"),
        parser=etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)))
    for position, other in enumerate(top_level_signatures(copy.getroot())):
        if position != index:
            remove_keeping_tail(other)
    return etree.tostring(copy, encoding="utf-8"), 0


def _key_info_certificate(signature: etree._Element) -> x509.Certificate | None:
    node = signature.find("ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS)
    if node is None or not node.text:
        return None
    try:
        return x509.load_der_x509_certificate(base64.b64decode("".join(node.text.split())))
    except ValueError:
        return None


@dataclass
class Embedded:
    """What a B-LT/B-LTA signature carries for its validation (CertificateValues,
    RevocationValues, TimeStampValidationData), handed to pyhanko-certvalidator."""

    certs: list[asn1_x509.Certificate] = field(default_factory=list)
    crls: list[asn1_crl.CertificateList] = field(default_factory=list)
    ocsps: list[asn1_ocsp.OCSPResponse] = field(default_factory=list)


def embedded_values(signature: etree._Element) -> Embedded:
    found = Embedded()
    props = signature.find(".//xades:UnsignedSignatureProperties", NS)
    if props is None:
        return found
    kinds: tuple[tuple[str, Any, list[Any]], ...] = (
        ("EncapsulatedX509Certificate", asn1_x509.Certificate, found.certs),
        ("EncapsulatedCRLValue", asn1_crl.CertificateList, found.crls),
        ("EncapsulatedOCSPValue", asn1_ocsp.OCSPResponse, found.ocsps))
    for name, spec, into in kinds:
        for node in props.iter(f"{{{XADES}}}{name}"):
            try:
                value = spec.load(base64.b64decode("".join((node.text or "").split())))
                _ = value.native  # parse now: a malformed value is skipped here
            except (ValueError, TypeError, KeyError):
                continue  # unusable validation data: the status is then fetched or unknown
            into.append(value)
    return found


def _claimed_time(signature: etree._Element) -> dt.datetime | None:
    node = signature.find(".//xades:SignedSignatureProperties/xades:SigningTime", NS)
    if node is None or not node.text:
        return None
    try:
        moment = dt.datetime.fromisoformat(node.text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


async def _verify_one(job: KeylessJob, document: bytes, root: etree._Element,
                      signature: etree._Element, index: int, resolver: Resolver | None,
                      report_format: str, ordinal: int | None = None) -> SignatureFacts:
    """One signature's report; ``ordinal``: a countersignature's place among all the
    document's ds:Signature elements (it is checked in the document as it is)."""
    level = xades_level(signature)
    cert = _key_info_certificate(signature)
    claimed = _claimed_time(signature)
    facts = SignatureFacts(format=report_format, level=f"XAdES-{level}",
                           verdict=Verdict("INDETERMINATE", "NO_SIGNING_CERTIFICATE_FOUND"),
                           signer=certificate_facts(to_asn1(cert)) if cert else None,
                           claimed_signing_time=claimed)
    if cert is None:
        return facts
    try:
        if ordinal is None:
            checked, position = signxml_input(document, root, signature, index)
        else:
            checked, position = document, index
        # Every reference of SignedInfo is checked; signxml only wants to know how many
        # there are (it assumes one per document plus the SignedProperties otherwise).
        references = len(signature.findall("ds:SignedInfo/ds:Reference", NS))
        _Utf8XAdESVerifier(position, ordinal).verify(
            checked, x509_cert=cert, uri_resolver=resolver, expect_references=references)
    except sx_errors.InvalidDigest as exc:
        facts.verdict = _verdict(AdESFailure.HASH_FAILURE, str(exc))
        return facts
    except sx_errors.InvalidSignature as exc:
        facts.verdict = _verdict(AdESFailure.SIG_CRYPTO_FAILURE, str(exc))
        return facts
    except (sx_errors.SignXMLException, ValueError, etree.LxmlError) as exc:
        facts.verdict = _verdict(AdESFailure.FORMAT_FAILURE, str(exc))
        return facts
    embedded = embedded_values(signature)
    async with job.network.session() as session:
        moment: dt.datetime | None = None
        if level != "B-B":
            stamp = await _timestamp(job, session, signature, embedded)
            if isinstance(stamp, Verdict):
                facts.verdict = stamp
                if level == "B-LTA" and needs_past_validation(stamp):
                    await _judge_in_the_past(job, session, root, signature, resolver,
                                             embedded, facts, cert)
                return facts
            moment = facts.timestamp_time = stamp
        facts.best_signature_time = moment or dt.datetime.now(dt.UTC)
        facts.verdict, path, revocation = await signer_at(
            job, session, to_asn1(cert), moment, claimed, _material(embedded))
        if level == "B-LTA" and facts.verdict.indication == PASSED:
            archived = await _archive_verdict(job, session, root, signature, resolver,
                                              embedded)
            if isinstance(archived, Verdict):
                facts.verdict = archived
    facts.chain = chain_facts(path)
    facts.revocation = revocation
    return facts


def _material(embedded: Embedded) -> Material:
    return Material(certs=list(embedded.certs), crls=list(embedded.crls),
                    ocsps=list(embedded.ocsps))


async def _judge_in_the_past(job: KeylessJob, session: Any, root: etree._Element,
                             signature: etree._Element, resolver: Resolver | None,
                             embedded: Embedded, facts: SignatureFacts,
                             cert: x509.Certificate) -> None:
    """The signature time-stamp does not hold now for a reason time can cure (its TSA
    certificate expired): with every archive time-stamp holding now, the signature is
    judged at the POE the oldest gives (agent/verify/past.py); a failing archive
    time-stamp's verdict is reported when it is a failure."""
    archived = await _archive_verdict(job, session, root, signature, resolver, embedded)
    if isinstance(archived, Verdict):
        if archived.indication == "TOTAL-FAILED":
            facts.verdict = archived
        return
    if not archived:
        return
    stamp = _signature_time_stamp(signature)
    past = await judge_at_archive(job, session, min(archived),
                                  stamp[0] if stamp else None, stamp[1] if stamp else None,
                                  to_asn1(cert), facts.claimed_signing_time,
                                  _material(embedded))
    facts.verdict, facts.best_signature_time = past.verdict, past.moment
    facts.timestamp_time = past.timestamp
    facts.chain = chain_facts(past.path)
    facts.revocation = past.revocation


def _before(root: etree._Element, signature: etree._Element, stamp: etree._Element
            ) -> tuple[etree._Element, etree._Element]:
    """A copy of the document with ``stamp`` and every unsigned signature property after
    it taken out: the signature as it stood when that archive time-stamp was made."""
    copy = etree.fromstring(etree.tostring(root, encoding="utf-8"), parser=etree.XMLParser(
        resolve_entities=False, no_network=True, huge_tree=False))
    copied = follow(copy, element_path(stamp))
    props = copied.getparent()
    assert props is not None
    for later in [copied, *copied.itersiblings()]:
        props.remove(later)
    return copy, follow(copy, element_path(signature))


async def _archive_verdict(job: KeylessJob, session: Any, root: etree._Element,
                           signature: etree._Element, resolver: Resolver | None,
                           embedded: Embedded) -> Verdict | list[dt.datetime]:
    """The verdict of the first xadesv141:ArchiveTimeStamp that fails, else their times
    (now validated), each recomputed over the signature as it was before it
    (agent/verify/archive.py)."""
    props = signature.find(".//xades:UnsignedSignatureProperties", NS)
    stamps = [] if props is None else props.findall("xades141:ArchiveTimeStamp", NS)
    context = _context(job, session, None, embedded)
    times: list[dt.datetime] = []
    for stamp in stamps:
        node = stamp.find("xades:EncapsulatedTimeStamp", NS)
        try:
            token = cms.ContentInfo.load(base64.b64decode("".join((node.text or "").split())
                                                          if node is not None else ""))
        except ValueError:
            token = None
        md = token_digest_algorithm(token) if token is not None else None
        if token is None or md not in ("sha256", "sha384", "sha512"):
            return _verdict(AdESFailure.FORMAT_FAILURE, "an archive time-stamp is unreadable")
        copy, copied = _before(root, signature, stamp)
        try:
            if resolver is None:
                digest = hashlib.new(md, archive_input(copy, copied, None)).digest()
            else:
                digest = archive_digest(copy, copied, lambda uri: [resolver(uri) or b""], md)
        except Unsupported as exc:
            # A transform the archive input's code does not process (the references
            # themselves matched for signxml already): the time-stamp cannot be checked,
            # so it proves nothing — not that anything changed.
            return _verdict(AdESIndeterminate.NO_POE,
                            f"the archive time-stamp cannot be checked: {exc}")
        result = await check_token(token, context, constant_imprint(digest),
                                   "archive time-stamp")
        if isinstance(result, Verdict):
            return result
        times.append(result)
    return times


def _verdict(subindic: AdESSubIndic, message: str | None = None) -> Verdict:
    return Verdict.of(subindic, (message or "")[:300] or None)


def _context(job: KeylessJob, session: Any, moment: dt.datetime | None,
             embedded: Embedded) -> ValidationContext:
    return ValidationContext(
        trust_roots=[to_asn1(c) for c in job.anchors.roots],
        other_certs=[*(to_asn1(c) for c in job.anchors.others), *embedded.certs],
        crls=embedded.crls, ocsps=embedded.ocsps,
        allow_fetching=True, moment=moment,
        # Judged at the time-stamp: status information issued after it still tells
        # whether the certificate was revoked before it.
        revinfo_policy=revinfo_policy(retroactive=moment is not None),
        fetcher_backend=SessionFetcherBackend(session, job.network))


async def _timestamp(job: KeylessJob, session: Any, signature: etree._Element,
                     embedded: Embedded) -> dt.datetime | Verdict:
    """The validated time of the signature time-stamp, or the verdict it earns."""
    found = _signature_time_stamp(signature)
    if found is None:
        return _verdict(AdESFailure.FORMAT_FAILURE, "the signature time-stamp is unreadable")
    signed, imprint = found
    try:
        status = await validate_tst_signed_data(signed, _context(job, session, None, embedded),
                                                imprint)
    except Exception as exc:  # pyHanko's own validation errors carry their sub-indication
        subindic = getattr(exc, "ades_subindication", None) or AdESFailure.FORMAT_FAILURE
        return _verdict(subindic, f"signature time-stamp: {exc}")
    if not status.get("intact"):
        return _verdict(AdESFailure.HASH_FAILURE,
                        "the signature time-stamp does not cover this signature")
    if not status.get("valid"):
        return _verdict(AdESFailure.SIG_CRYPTO_FAILURE, "the signature time-stamp is invalid")
    problem = status.get("trust_problem_indic")
    if problem is not None:
        return _verdict(problem, "the signature time-stamp's certificate is not trusted")
    moment: dt.datetime = status["timestamp"]
    return moment


def _signature_time_stamp(signature: etree._Element) -> tuple[cms.SignedData, Imprint] | None:
    """The SignatureTimeStamp's token and the imprint it must carry (None: unreadable)."""
    # The signature's own properties (the first in document order: any countersignature's
    # are inside them), and their own time-stamp, not a countersignature's.
    props = signature.find(".//xades:UnsignedSignatureProperties", NS)
    node = None if props is None else props.find(
        "xades:SignatureTimeStamp/xades:EncapsulatedTimeStamp", NS)
    value = signature.find("ds:SignatureValue", NS)
    if node is None or not node.text or value is None:
        return None
    try:
        token = cms.ContentInfo.load(base64.b64decode("".join(node.text.split())))
        signed: cms.SignedData = token["content"]
        _ = signed["encap_content_info"]["content"].parsed.native  # parse now
    except (ValueError, TypeError, KeyError):
        return None
    # The imprint covers the exclusively canonicalised SignatureValue element.
    c14n = etree.tostring(value, method="c14n", exclusive=True, with_comments=False)

    def imprint(md: str) -> bytes:
        return hashlib.new(md, c14n).digest()

    return signed, imprint
