"""XAdES baseline signatures (ETSI EN 319 132-1): B-B to B-LTA, enveloped or detached.

Detached signatures are signxml's.  signxml signs with a ``cryptography`` private key
object, synchronously, over the canonical SignedInfo.  Our key lives on a token behind an
async PIN dialog, so signxml gets a *capturing* key: its ``sign`` records the bytes
signxml wants signed and returns a placeholder; we then sign their hash through the core
(one dialog) and put the real value into ``ds:SignatureValue`` — which is outside
SignedInfo, so nothing signed changes.

Enveloped signatures are written with lxml by ``agent.formats.xades_enveloped`` (why:
its module doc) where the page's ``placement`` says, and cover the page's
``references``, with transforms that exclude every ds:Signature, so a later co-signer
does not break them (``agent.formats.xades_placement``).  A document whose existing
signature would be broken by one more is refused before the dialog.

B-T's ``xades:SignatureTimeStamp`` (a time-stamp over the exclusive-canonical
``ds:SignatureValue`` element) is added here, B-LT's and B-LTA's values in
``agent.formats.xades_ltv``.

The user confirms (``job.sign.confirm()``, the PIN dialog) before the SigningTime is
taken: it is the time the user signed, not the time the request came (D3).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import hashlib
import logging
import re
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from lxml import etree
from signxml import methods
from signxml.signer import SignatureReference
from signxml.xades.xades import XAdESDataObjectFormat, XAdESSigner

from agent.errors import AgentError, Unsupported
from agent.formats.digests import digest_for
from agent.formats.document_caps import (
    StructureCaps,
    parse_xml_counted,
    xml_syntax_refusal,
)
from agent.formats.job import FormatJob
from agent.formats.signer_adapter import placeholder_signature
from agent.formats.timestamps import GuardedTimeStamper, timestamp_token
from agent.formats.xades_enveloped import DataReference, fill_enveloped
from agent.formats.xades_ltv import (
    add_archive_timestamp,
    add_long_term_values,
    add_signature_timestamp,
    add_timestamp_validation_data,
    gather_validation_data,
)
from agent.formats.xades_placement import (
    find_parent,
    reference_digest,
    refuse_if_breaking,
    resolve_references,
)

log = logging.getLogger(__name__)

DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
DEFAULT_DETACHED_URI = "document.xml"
XML_MIME_TYPE = "text/xml"
# What a page may choose for ``digestAlgorithm`` (XMLDSig names: sha256 → rsa-sha256...).
XML_DIGESTS = ("sha256", "sha384", "sha512")
XADES_LEVELS = ("B-B", "B-T", "B-LT", "B-LTA")


class CapturingKey:
    """Looks enough like cryptography's RSAPrivateKey/EllipticCurvePrivateKey for signxml
    (``sign``, ``public_key``, ``key_size``, ``curve``); signs nothing itself."""

    def __init__(self, cert: x509.Certificate) -> None:
        self._public = cert.public_key()
        if not isinstance(self._public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise Unsupported("only RSA and EC keys can sign")
        self._key_size = self._public.key_size
        self._placeholder = placeholder_signature(cert)
        self.captured: bytes | None = None

    @property
    def key_size(self) -> int:
        return self._key_size

    @property
    def curve(self) -> ec.EllipticCurve:
        assert isinstance(self._public, ec.EllipticCurvePublicKey)
        return self._public.curve

    def public_key(self) -> Any:
        return self._public

    def sign(self, data: bytes, *args: Any, **kwargs: Any) -> bytes:
        if self.captured is not None:
            raise RuntimeError("signxml asked for a second signature")
        self.captured = bytes(data)
        if isinstance(self._public, ec.EllipticCurvePublicKey):
            return encode_dss_signature(1, 1)  # decoded by signxml, then replaced by us
        return self._placeholder


class _Utf8XAdESSigner(XAdESSigner):
    """Fixes to signxml for the signatures it still writes here (detached, and ASiC's in
    ``agent.formats.asic_xades``; enveloped ones are ``agent.formats.xades_enveloped``'s):
    it re-parses the document after serialising it as ASCII, which breaks element and
    attribute *names* outside ASCII (``<Qaimə>``), so UTF-8 is used; SigningCertificateV2
    names the signer only; its own references are exclusively canonicalised."""

    def _tostring(self, xml_node: Any, **kwargs: Any) -> bytes:
        kwargs.setdefault("encoding", "utf-8")
        text: bytes = etree.tostring(xml_node, **kwargs)
        return text

    def add_signing_certificate(self, signed_signature_properties: Any, sig_root: Any,
                                signing_settings: Any) -> None:
        # signxml would list every chain certificate in SigningCertificateV2 (and its own
        # verifier then rejects them); the property names the signer's certificate only,
        # while KeyInfo still carries the chain.
        only_signer = dataclasses.replace(signing_settings,
                                          cert_chain=signing_settings.cert_chain[:1])
        super().add_signing_certificate(signed_signature_properties, sig_root, only_signer)

    def _add_reference_to_signed_info(self, sig_root: Any, node_to_reference: Any,
                                      **attrs: Any) -> None:
        # signxml writes these references (SignedProperties, KeyInfo) without a Transform,
        # so a verifier applies inclusive C14N 1.0 to them *in the document*, where they
        # inherit the host's namespace declarations (a default xmlns, say) that were not
        # there when signxml digested them.  An explicit exclusive C14N renders only the
        # namespaces the element uses: the digest is the same wherever it sits.
        signed_info = sig_root.find(f"{{{DS}}}SignedInfo")
        reference = etree.SubElement(signed_info, f"{{{DS}}}Reference",
                                     URI=f"#{node_to_reference.get('Id')}", **attrs)
        transforms = etree.SubElement(reference, f"{{{DS}}}Transforms")
        etree.SubElement(transforms, f"{{{DS}}}Transform", Algorithm=EXC_C14N)
        etree.SubElement(reference, f"{{{DS}}}DigestMethod", Algorithm=self.digest_alg.value)
        value = etree.SubElement(reference, f"{{{DS}}}DigestValue")
        c14n = etree.tostring(node_to_reference, method="c14n", exclusive=True,
                              with_comments=False)
        value.text = base64.b64encode(
            hashlib.new(self.digest_alg.name.lower().replace("_", ""), c14n).digest()
        ).decode("ascii")


def _parse(document: bytes) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False, remove_blank_text=False)
    try:
        root = etree.fromstring(document, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise xml_syntax_refusal(exc) from exc
    return _without_doctype(root)


def _without_doctype(root: etree._Element) -> etree._Element:
    if root.getroottree().docinfo.doctype:
        # DTDs invite entity tricks and change what is signed; portals do not need them.
        raise Unsupported("XML documents with a DOCTYPE are not signed")
    return root


def _detached_uri(document_name: str | None) -> str:
    """A relative reference for the signed document: its plain file name when the page
    gave one, else ``document.xml``."""
    if document_name and re.fullmatch(r"[\w.-]{1,128}", document_name) \
            and not document_name.startswith("."):
        return document_name
    return DEFAULT_DETACHED_URI


async def build_xades(job: FormatJob, document: bytes, level: str, mode: str,
                      digest_algorithm: str | None = None, *,
                      placement: dict[str, Any] | None = None,
                      references: list[str] | None = None) -> bytes:
    """The signed XML, built in a document worker (``agent.formats.isolation``): the
    page's XML is never parsed in the daemon.  ``digest_algorithm``: "sha256", "sha384"
    or "sha512"; None: the key's (``agent.formats.digests.default_digest``).
    ``placement`` ({"parent": xpath, "namespaces": {prefix: iri}}) and ``references``
    ("" or "#id" each): enveloped only, see ``agent.protocol.params_xml``."""
    from agent.formats.isolation import build_isolated

    args: dict[str, Any] = {"document": document, "level": level, "mode": mode,
                            "digest_algorithm": digest_algorithm}
    if placement is not None:
        args["placement"] = placement
    if references is not None:
        args["references"] = references
    return await build_isolated("xml", job, args)


# What lxml and signxml raise when a document is not one they can sign (signxml's
# InvalidInput is a ValueError).  MemoryError is not here: it is TOO_LARGE.
_MALFORMED = (etree.LxmlError, ValueError, KeyError, TypeError, AssertionError, IndexError,
              RecursionError)


async def build_xades_here(job: FormatJob, document: bytes, level: str, mode: str,
                           digest_algorithm: str | None = None, *,
                           caps: StructureCaps | None = None,
                           placement: dict[str, Any] | None = None,
                           references: list[str] | None = None,
                           parsed: etree._Element | None = None) -> bytes:
    """``build_xades`` in this process: what a document worker runs.
    ``parsed``: this very document as ``parse_xml_counted`` gave it to the worker (a
    batch item, whose preview came from the same parse), unchanged since."""
    # Counted in a streaming pass (which builds the tree as it goes) before signxml's
    # canonicalisation, whose time grows with the square of the namespace declarations
    # times the elements.
    root = _without_doctype(parsed if parsed is not None
                            else parse_xml_counted(document, caps or StructureCaps()))
    if mode != "enveloped" and (placement is not None or references is not None):
        raise Unsupported("placement and references apply to enveloped signatures only")
    try:
        return await _build_xades(job, document, root, level, mode, digest_algorithm,
                                  placement, references)
    except AgentError:
        raise
    except _MALFORMED as exc:
        log.warning("XML refused: %s in the format library", type(exc).__name__)
        raise Unsupported("the document could not be processed as XML") from None


async def _build_xades(job: FormatJob, document: bytes, root: etree._Element, level: str,
                       mode: str, digest_algorithm: str | None,
                       placement: dict[str, Any] | None,
                       references: list[str] | None) -> bytes:
    md = digest_for(job.certificate, digest_algorithm)
    if md not in XML_DIGESTS:
        raise Unsupported(f"digest algorithm {md} is not supported")
    if level not in XADES_LEVELS:
        raise Unsupported(f"XAdES level {level} is not supported")
    cert = job.certificate
    is_ec = isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    if not isinstance(cert.public_key(), rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise Unsupported("only RSA and EC keys can sign")
    data_references: list[DataReference] = []
    placeholder = None
    if mode == "enveloped":
        # Where the signature goes and what it covers, all checked before the dialog.
        parent = find_parent(root, placement)
        refuse_if_breaking(root, parent)
        name = _description(job.document_name, mode)
        try:
            data_references = [
                DataReference(uri, reference_digest(root, element, md),
                              name if uri == "" else f"{name} {uri}")
                for uri, element in resolve_references(root, references)]
        except etree.C14NError as exc:  # e.g. a relative namespace URI (xmlns="a")
            raise Unsupported("the document cannot be canonicalised") from exc
        placeholder = etree.SubElement(parent, f"{{{DS}}}Signature", Id="placeholder",
                                       nsmap={"ds": DS})
    # No session for B-B: nothing to ask (e-invoices are signed by the hundred).
    async with (job.network.session() if level != "B-B" else contextlib.nullcontext()
                ) as session:
        stamper = None
        if session is not None:
            assert job.tsa_url is not None
            stamper = GuardedTimeStamper(job.tsa_url, job.network, session)
            # Before the user is asked: a dead TSA or responder costs no PIN entry.
            trial = await stamper.preflight(md)
            if level in ("B-LT", "B-LTA"):
                await gather_validation_data(job.anchors, job.network, session, [cert],
                                             job.chain, [trial])
        await _confirm(job)  # D3: SigningTime is taken after the user's PIN
        try:
            if placeholder is None:
                signed, to_sign = _detached_by_signxml(job, root, md, is_ec)
                signature = signed
            else:
                to_sign = fill_enveloped(
                    placeholder, references=data_references,
                    certificates=[cert, *job.chain], md=md, is_ec=is_ec,
                    mime_type=XML_MIME_TYPE, signing_time=dt.datetime.now(dt.UTC))
                signed, signature = root, placeholder
        except etree.C14NError as exc:  # e.g. a relative namespace URI (xmlns="a")
            raise Unsupported("the document cannot be canonicalised") from exc
        digest = hashlib.new(md, to_sign).digest()
        # XMLDSig wants ECDSA as raw r‖s (RFC 4050 / XMLDSig 1.1): ask the token for that.
        value = await job.sign(digest, md, ecdsa_raw=is_ec)
        assert signature.tag == f"{{{DS}}}Signature"
        value_node = signature.find(f"{{{DS}}}SignatureValue")
        assert value_node is not None
        value_node.text = base64.b64encode(value).decode("ascii")
        if stamper is not None:
            await _long_term(job, session, stamper, signed, signature, level, md,
                             document if mode == "detached" else None)
    tree = signed.getroottree()
    encoding = root.getroottree().docinfo.encoding or "UTF-8"
    out: bytes = etree.tostring(tree, xml_declaration=True, encoding=encoding)
    return out


def _detached_by_signxml(job: FormatJob, root: etree._Element, md: str, is_ec: bool
                         ) -> tuple[etree._Element, bytes]:
    """A detached signature of ``root`` by signxml: the signature (the new document's
    root) and the canonical SignedInfo its key was asked to sign."""
    key = CapturingKey(job.certificate)
    signer = _Utf8XAdESSigner(
        method=methods.detached, signature_algorithm=f"ecdsa-{md}" if is_ec else f"rsa-{md}",
        digest_algorithm=md, c14n_algorithm=EXC_C14N,
        # The document's own name and type, not signxml's placeholder description.
        data_object_format=XAdESDataObjectFormat(
            Description=_description(job.document_name, "detached"),
            MimeType=XML_MIME_TYPE))
    options: dict[str, Any] = {  # as keywords: signxml's wrapped ``sign`` types poorly
        "key": key, "cert": [job.certificate, *job.chain], "always_add_key_value": False,
        "reference_uri": [SignatureReference(URI=_detached_uri(job.document_name))]}
    signed = signer.sign(root, **options)
    assert key.captured is not None
    return signed, key.captured


async def _confirm(job: FormatJob) -> None:
    """``job.sign.confirm()``.  A bare signing function (the fuzz and bench doubles)
    has none; it confirms when called, as the contract allows."""
    confirm = getattr(job.sign, "confirm", None)
    if confirm is not None:
        await confirm()


async def _long_term(job: FormatJob, session: Any, stamper: GuardedTimeStamper,
                     root: etree._Element, signature: etree._Element, level: str, md: str,
                     detached: bytes | None) -> None:
    """B-T, then B-LT's values for the TSA that signed the real token (D1) fetched after
    it (D2), then B-LTA's archive time-stamp and its TSA's validation data."""
    token = await add_signature_timestamp(signature, stamper, md)
    if level == "B-T":
        return
    data = await gather_validation_data(job.anchors, job.network, session,
                                        [job.certificate], job.chain, [token])
    add_long_term_values(signature, data)
    if level == "B-LTA":
        archive = await add_archive_timestamp(root, signature, stamper, md, detached)
        data = await gather_validation_data(job.anchors, job.network, session, [], [],
                                            [archive])
        add_timestamp_validation_data(signature, data,
                                      f"{signature.get('Id', 'Signature')}-ArchiveData1")


def _description(document_name: str | None, mode: str) -> str:
    """DataObjectFormat's Description: the page's name for the document, one line."""
    name = " ".join((document_name or "").split())[:256]
    if name:
        return name
    return DEFAULT_DETACHED_URI if mode == "detached" else "XML document"


async def _add_signature_timestamp(signature: etree._Element, value_node: etree._Element,
                                   job: FormatJob, md: str) -> None:
    qualifying = signature.find(f".//{{{XADES}}}QualifyingProperties")
    if qualifying is None:
        raise RuntimeError("signxml produced no QualifyingProperties")
    c14n = etree.tostring(value_node, method="c14n", exclusive=True, with_comments=False)
    assert job.tsa_url is not None
    token = await timestamp_token(job.tsa_url, job.network, c14n, md)
    unsigned = etree.SubElement(qualifying, f"{{{XADES}}}UnsignedProperties")
    props = etree.SubElement(unsigned, f"{{{XADES}}}UnsignedSignatureProperties")
    stamp = etree.SubElement(props, f"{{{XADES}}}SignatureTimeStamp",
                             Id=f"{signature.get('Id', 'Signature')}-SignatureTimeStamp")
    etree.SubElement(stamp, f"{{{DS}}}CanonicalizationMethod", Algorithm=EXC_C14N)
    encapsulated = etree.SubElement(stamp, f"{{{XADES}}}EncapsulatedTimeStamp")
    encapsulated.text = base64.b64encode(token).decode("ascii")
