"""XAdES baseline signatures (ETSI EN 319 132-1) with signxml: B-B and B-T, enveloped or
detached.

signxml signs with a ``cryptography`` private key object, synchronously, over the
canonical SignedInfo.  Our key lives on a token behind an async PIN dialog, so signxml
gets a *capturing* key: its ``sign`` records the bytes signxml wants signed and returns a
placeholder; we then sign their hash through the core (one dialog) and put the real value
into ``ds:SignatureValue`` — which is outside SignedInfo, so nothing signed changes.

signxml has no unsigned properties; B-T's ``xades:SignatureTimeStamp`` (a time-stamp
over the exclusive-canonical ``ds:SignatureValue`` element) is added here, B-LT's and
B-LTA's values in ``agent.formats.xades_ltv``.

Enveloped signatures go where the page's ``placement`` says (signxml's placeholder
mechanism) and cover the page's ``references``; their data references are written here,
not by signxml, with transforms that exclude every ds:Signature, so a later co-signer
does not break them (``agent.formats.xades_placement``).  A document whose existing
signature would be broken by one more is refused before the dialog.

The user confirms (``job.sign.confirm()``, the PIN dialog) before signxml takes the
SigningTime: it is the time the user signed, not the time the request came (D3).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
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
from agent.formats.xades_ltv import (
    add_archive_timestamp,
    add_long_term_values,
    add_signature_timestamp,
    add_timestamp_validation_data,
    gather_validation_data,
)
from agent.formats.xades_placement import (
    add_reference_transforms,
    element_path,
    find_parent,
    follow,
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


@dataclasses.dataclass(frozen=True)
class DataReference:
    """A same-document reference written by ``_Utf8XAdESSigner``: its URI ("" or
    "#id"), its digest (computed before the signature was placed) and a description for
    its DataObjectFormat."""

    uri: str
    digest: bytes
    description: str


class _Utf8XAdESSigner(XAdESSigner):
    """Fixes to signxml: it re-parses the document after serialising it as ASCII,
    which breaks element and attribute *names* outside ASCII (``<Qaimə>``), so UTF-8 is
    used; SigningCertificateV2 names the signer only; enveloped data references are
    ``data_references`` (their transforms exclude every signature) and each gets its
    DataObjectFormat."""

    data_references: list[DataReference] | None = None
    mime_type: str = XML_MIME_TYPE

    def get_root(self, data: Any) -> Any:
        # signxml copies the document twice (serialise, re-parse): once to put the
        # signature in, once as the input of its reference's digest.  With
        # ``data_references`` (every enveloped signature here) the reference's digest is
        # ours, so the second copy is unused; and the first protects a node from its
        # parents' namespace declarations, which the root of the tree that
        # ``_build_xades`` has just parsed for this one signature does not have.  It is
        # signed in place instead: two serialisations and parses less per document.
        if self.data_references is not None and isinstance(data, etree._Element) \
                and data.getparent() is None:
            return data
        return super().get_root(data)  # type: ignore[no-untyped-call]

    def _build_sig(self, sig_root: Any, references: Any, c14n_inputs: Any,
                   inclusive_ns_prefixes: Any, exclude_c14n_transform_element: bool = False
                   ) -> Any:
        if self.data_references is None:
            return super()._build_sig(  # type: ignore[no-untyped-call]
                sig_root, references, c14n_inputs, inclusive_ns_prefixes,
                exclude_c14n_transform_element)
        signed_info = etree.SubElement(sig_root, f"{{{DS}}}SignedInfo")
        etree.SubElement(signed_info, f"{{{DS}}}CanonicalizationMethod",
                         Algorithm=self.c14n_alg.value)
        etree.SubElement(signed_info, f"{{{DS}}}SignatureMethod", Algorithm=self.sign_alg.value)
        for data in self.data_references:
            reference = etree.SubElement(signed_info, f"{{{DS}}}Reference", URI=data.uri,
                                         Id=f"SignXMLReference{self._token()}")
            add_reference_transforms(reference)
            etree.SubElement(reference, f"{{{DS}}}DigestMethod",
                             Algorithm=self.digest_alg.value)
            etree.SubElement(reference, f"{{{DS}}}DigestValue").text = \
                base64.b64encode(data.digest).decode("ascii")
        signature_value = etree.SubElement(sig_root, f"{{{DS}}}SignatureValue")
        return signed_info, signature_value

    def _token(self) -> str:
        token: str = self._get_token()  # type: ignore[no-untyped-call]
        return token

    def add_data_object_format(self, signed_data_object_properties: Any, sig_root: Any,
                               signing_settings: Any) -> None:
        if self.data_references is None:
            super().add_data_object_format(signed_data_object_properties, sig_root,
                                           signing_settings)
            return
        # One DataObjectFormat per data reference (EN 319 132-1 B-B); the references
        # of SignedProperties and KeyInfo are added after this.
        signed_info = sig_root.find(f"{{{DS}}}SignedInfo")
        for data, reference in zip(self.data_references,
                                   signed_info.iterfind(f"{{{DS}}}Reference"), strict=True):
            fmt = etree.SubElement(signed_data_object_properties,
                                   f"{{{XADES}}}DataObjectFormat",
                                   ObjectReference=f"#{reference.get('Id')}")
            etree.SubElement(fmt, f"{{{XADES}}}Description").text = data.description
            etree.SubElement(fmt, f"{{{XADES}}}MimeType").text = self.mime_type

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
    key = CapturingKey(cert)
    is_ec = isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    signer = _Utf8XAdESSigner(
        method=methods.enveloped if mode == "enveloped" else methods.detached,
        signature_algorithm=f"ecdsa-{md}" if is_ec else f"rsa-{md}",
        digest_algorithm=md, c14n_algorithm=EXC_C14N,
        # The document's own name and type, not signxml's placeholder description.
        data_object_format=XAdESDataObjectFormat(
            Description=_description(job.document_name, mode), MimeType=XML_MIME_TYPE))
    kwargs: dict[str, Any] = {}
    location = None
    if mode == "detached":
        uri = _detached_uri(job.document_name)
        kwargs["reference_uri"] = [SignatureReference(URI=uri)]
    else:
        # Where the signature goes and what it covers, all checked before the dialog.
        parent = find_parent(root, placement)
        refuse_if_breaking(root, parent)
        name = _description(job.document_name, mode)
        try:
            signer.data_references = [
                DataReference(uri, reference_digest(root, element, md),
                              name if uri == "" else f"{name} {uri}")
                for uri, element in resolve_references(root, references)]
        except etree.C14NError as exc:  # e.g. a relative namespace URI (xmlns="a")
            raise Unsupported("the document cannot be canonicalised") from exc
        placeholder = etree.SubElement(parent, f"{{{DS}}}Signature", Id="placeholder",
                                       nsmap={"ds": DS})
        location = element_path(placeholder)
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
            signed = signer.sign(root, key=key, cert=[cert, *job.chain],
                                 always_add_key_value=False, **kwargs)
        except etree.C14NError as exc:  # e.g. a relative namespace URI (xmlns="a")
            raise Unsupported("the document cannot be canonicalised") from exc
        assert key.captured is not None
        digest = hashlib.new(md, key.captured).digest()
        # XMLDSig wants ECDSA as raw r‖s (RFC 4050 / XMLDSig 1.1): ask the token for that.
        value = await job.sign(digest, md, ecdsa_raw=is_ec)
        signature = signed if location is None else follow(signed, location)
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
