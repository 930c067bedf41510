"""XAdES baseline signatures (ETSI EN 319 132-1) with signxml: B-B and B-T, enveloped or
detached.

signxml signs with a ``cryptography`` private key object, synchronously, over the
canonical SignedInfo.  Our key lives on a token behind an async PIN dialog, so signxml
gets a *capturing* key: its ``sign`` records the bytes signxml wants signed and returns a
placeholder; we then sign their hash through the core (one dialog) and put the real value
into ``ds:SignatureValue`` — which is outside SignedInfo, so nothing signed changes.

signxml has no unsigned properties; B-T's ``xades:SignatureTimeStamp`` (a time-stamp
over the exclusive-canonical ``ds:SignatureValue`` element) is added here.
"""

from __future__ import annotations

import base64
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
    check_xml_structure,
    xml_syntax_refusal,
)
from agent.formats.job import FormatJob
from agent.formats.signer_adapter import placeholder_signature
from agent.formats.timestamps import preflight_tsa, timestamp_token

log = logging.getLogger(__name__)

DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
DEFAULT_DETACHED_URI = "document.xml"
XML_MIME_TYPE = "text/xml"
# What a page may choose for ``digestAlgorithm`` (XMLDSig names: sha256 → rsa-sha256...).
XML_DIGESTS = ("sha256", "sha384", "sha512")


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
    """Two fixes to signxml: it re-parses the document after serialising it as ASCII,
    which breaks element and attribute *names* outside ASCII (``<Qaimə>``), so UTF-8 is
    used; and SigningCertificateV2 names the signer only."""

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
                      digest_algorithm: str | None = None) -> bytes:
    """The signed XML, built in a document worker (``agent.formats.isolation``): the
    page's XML is never parsed in the daemon.  ``digest_algorithm``: "sha256", "sha384"
    or "sha512"; None: the key's (``agent.formats.digests.default_digest``)."""
    from agent.formats.isolation import build_isolated

    return await build_isolated("xml", job, {"document": document, "level": level,
                                             "mode": mode,
                                             "digest_algorithm": digest_algorithm})


# What lxml and signxml raise when a document is not one they can sign (signxml's
# InvalidInput is a ValueError).  MemoryError is not here: it is TOO_LARGE.
_MALFORMED = (etree.LxmlError, ValueError, KeyError, TypeError, AssertionError, IndexError,
              RecursionError)


async def build_xades_here(job: FormatJob, document: bytes, level: str, mode: str,
                           digest_algorithm: str | None = None, *,
                           caps: StructureCaps | None = None) -> bytes:
    """``build_xades`` in this process: what a document worker runs."""
    # Counted in a streaming pass before signxml's canonicalisation, whose time grows
    # with the square of the namespace declarations times the elements.
    check_xml_structure(document, caps or StructureCaps())
    try:
        return await _build_xades(job, document, level, mode, digest_algorithm)
    except AgentError:
        raise
    except _MALFORMED as exc:
        log.warning("XML refused: %s in the format library", type(exc).__name__)
        raise Unsupported("the document could not be processed as XML") from None


async def _build_xades(job: FormatJob, document: bytes, level: str, mode: str,
                       digest_algorithm: str | None) -> bytes:
    root = _parse(document)
    md = digest_for(job.certificate, digest_algorithm)
    if md not in XML_DIGESTS:
        raise Unsupported(f"digest algorithm {md} is not supported")
    if level == "B-T":
        assert job.tsa_url is not None
        await preflight_tsa(job.tsa_url, job.network, md)
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
    if mode == "detached":
        uri = _detached_uri(job.document_name)
        kwargs["reference_uri"] = [SignatureReference(URI=uri)]
    try:
        signed = signer.sign(root, key=key, cert=[cert, *job.chain],
                             always_add_key_value=False, **kwargs)
    except etree.C14NError as exc:  # e.g. a relative namespace URI (xmlns="a")
        raise Unsupported("the document cannot be canonicalised") from exc
    assert key.captured is not None
    digest = hashlib.new(md, key.captured).digest()
    # XMLDSig wants ECDSA as raw r‖s (RFC 4050 / XMLDSig 1.1): ask the token for that.
    value = await job.sign(digest, md, ecdsa_raw=is_ec)
    signature = signed if mode == "detached" else signed.find(f".//{{{DS}}}Signature")
    assert signature is not None
    value_node = signature.find(f"{{{DS}}}SignatureValue")
    assert value_node is not None
    value_node.text = base64.b64encode(value).decode("ascii")
    if level == "B-T":
        assert job.tsa_url is not None
        await _add_signature_timestamp(signature, value_node, job, md)
    tree = signed.getroottree()
    encoding = root.getroottree().docinfo.encoding or "UTF-8"
    out: bytes = etree.tostring(tree, xml_declaration=True, encoding=encoding)
    return out


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
