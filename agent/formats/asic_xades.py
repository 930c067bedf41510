"""The XAdES signature of an ASiC-E container (EN 319 162-1 §4.4.3.2): one ds:Signature
in an ``asic:XAdESSignatures`` root, with one reference per data file of the container.

signxml signs XML it can resolve; a container's files are bytes of any type, referenced
by their names.  So ``_AsicXAdESSigner`` keeps signxml for everything XAdES (the
qualifying properties, the signing certificate, KeyInfo, the canonical SignedInfo) and
replaces only the data references: each is ``URI=<the file's name>`` with *no* transform,
so its digest is over the file's bytes as they are in the container (what xmlsec1,
xadesjs and the EU's DSS compute for a detached binary reference), and each gets its own
``xades:DataObjectFormat`` with the file's MIME type.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree
from signxml import methods
from signxml.signer import SignatureReference

from agent.errors import Unsupported
from agent.formats.asic_xades_archive import add_archive_timestamp
from agent.formats.digests import digest_for
from agent.formats.job import FormatJob
from agent.formats.timestamps import GuardedTimeStamper
from agent.formats.xades import (  # the xml work's pieces, reused as they are
    DS,
    EXC_C14N,
    XADES,
    XML_DIGESTS,
    CapturingKey,
    _Utf8XAdESSigner,
)
from agent.formats.xades_ltv import (
    add_long_term_values,
    add_signature_timestamp,
    gather_validation_data,
)

__all__ = ["ASIC_NS", "DIGEST_URIS", "DS", "DataFile", "reference_uri", "sign_asic_xades",
           "xades_digest"]

ASIC_NS = "http://uri.etsi.org/02918/v1.2.1#"
# XMLDSig's and XML Encryption's names of the digests (what ds:DigestMethod says).
DIGEST_URIS = {"sha256": "http://www.w3.org/2001/04/xmlenc#sha256",
               "sha384": "http://www.w3.org/2001/04/xmldsig-more#sha384",
               "sha512": "http://www.w3.org/2001/04/xmlenc#sha512"}


@dataclass(frozen=True)
class DataFile:
    """One data file of a container as a signature covers it: its name, MIME type and
    digest (with the signature's digest algorithm)."""

    name: str
    mime_type: str
    size: int
    digest: bytes


def reference_uri(name: str) -> str:
    """The file's name as a relative URI reference (RFC 3986): non-ASCII letters and
    reserved characters percent-encoded (UTF-8), '/' kept as the path separator."""
    return quote(name, safe="/")


class _AsicXAdESSigner(_Utf8XAdESSigner):
    """signxml's XAdES signer with the data references replaced; see the module doc."""

    def __init__(self, files: list[DataFile], signature_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.files = files
        self.signature_id = signature_id

    def _unpack(self, data: Any, references: Any) -> Any:
        root = etree.Element(f"{{{ASIC_NS}}}XAdESSignatures",
                             nsmap={"asic": ASIC_NS, "ds": DS})
        # Its Id names it in the container (one signature per file, but unique anyway).
        sig_root = etree.SubElement(root, f"{{{DS}}}Signature", nsmap=self.namespaces,
                                    Id=self.signature_id)
        references = [SignatureReference(URI=reference_uri(f.name)) for f in self.files]
        return sig_root, root, list(self.files), references

    def _build_sig(self, sig_root: Any, references: Any, c14n_inputs: Any,
                   inclusive_ns_prefixes: Any, exclude_c14n_transform_element: Any = False
                   ) -> Any:
        signed_info = etree.SubElement(sig_root, f"{{{DS}}}SignedInfo")
        etree.SubElement(signed_info, f"{{{DS}}}CanonicalizationMethod",
                         Algorithm=self.c14n_alg.value)
        etree.SubElement(signed_info, f"{{{DS}}}SignatureMethod", Algorithm=self.sign_alg.value)
        for reference, file in zip(references, c14n_inputs, strict=True):
            node = etree.SubElement(signed_info, f"{{{DS}}}Reference", URI=reference.URI)
            etree.SubElement(node, f"{{{DS}}}DigestMethod", Algorithm=self.digest_alg.value)
            value = etree.SubElement(node, f"{{{DS}}}DigestValue")
            value.text = base64.b64encode(file.digest).decode("ascii")
        return signed_info, etree.SubElement(sig_root, f"{{{DS}}}SignatureValue")

    def add_data_object_format(self, signed_data_object_properties: Any, sig_root: Any,
                               signing_settings: Any) -> None:
        # One DataObjectFormat per data file (signxml writes one, for the first reference).
        signed_info = sig_root.find(f"{{{DS}}}SignedInfo")
        data_references = [r for r in signed_info.findall(f"{{{DS}}}Reference")
                           if not r.get("URI", "").startswith("#")]
        for index, (reference, file) in enumerate(zip(data_references, self.files,
                                                      strict=True)):
            reference.set("Id", f"{sig_root.get('Id')}-ref{index}")
            data_format = etree.SubElement(signed_data_object_properties,
                                           f"{{{XADES}}}DataObjectFormat",
                                           ObjectReference=f"#{reference.get('Id')}")
            etree.SubElement(data_format, f"{{{XADES}}}Description").text = \
                " ".join(file.name.split())[:256]
            etree.SubElement(data_format, f"{{{XADES}}}MimeType").text = file.mime_type


def xades_digest(job: FormatJob, choice: str | None) -> str:
    md = digest_for(job.certificate, choice)
    if md not in XML_DIGESTS:
        raise Unsupported(f"digest algorithm {md} is not supported")
    return md


async def sign_asic_xades(job: FormatJob, files: list[DataFile], level: str, md: str,
                          signature_id: str,
                          chunks: Callable[[str], Iterable[bytes]]) -> bytes:
    """The ``META-INF/signatures<N>.xml`` document over ``files`` (their digests made
    with ``md``; ``chunks(name)``: a file's bytes again, for B-LTA), at B-B, B-T, B-LT
    or B-LTA; one use of the key.  The time-stamps and the validation data as
    ``sign.xml`` makes them (``agent.formats.xades_ltv``): the TSA and the responders
    tried before the dialog, the real data fetched after the real time-stamp, for the
    TSA that signed it."""
    cert = job.certificate
    key = CapturingKey(cert)
    is_ec = isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    signer = _AsicXAdESSigner(
        files, signature_id, method=methods.detached,
        signature_algorithm=f"ecdsa-{md}" if is_ec else f"rsa-{md}",
        digest_algorithm=md, c14n_algorithm=EXC_C14N)
    async with job.network.session() as session:
        stamper = None
        if level != "B-B":
            assert job.tsa_url is not None
            stamper = GuardedTimeStamper(job.tsa_url, job.network, session)
            # Before the user is asked: a dead TSA or responder costs no PIN entry.
            trial = await stamper.preflight(md)
            if level in ("B-LT", "B-LTA"):
                await gather_validation_data(job.anchors, job.network, session, [cert],
                                             job.chain, [trial])
        # The dialog first: signxml takes the signing time while it builds (D3).
        await job.sign.confirm()
        # signxml's wraps()-decorated ``sign`` confuses mypy about ``self``; the data
        # argument is unused (``_unpack`` builds the references from ``files``).
        sign: Any = signer.sign
        signature = sign(etree.Element("unused"), key=key, cert=[cert, *job.chain],
                         always_add_key_value=False)
        assert key.captured is not None
        value = await job.sign(hashlib.new(md, key.captured).digest(), md, ecdsa_raw=is_ec)
        value_node = signature.find(f"{{{DS}}}SignatureValue")
        assert value_node is not None
        value_node.text = base64.b64encode(value).decode("ascii")
        if stamper is not None:
            token = await add_signature_timestamp(signature, stamper, md)
            if level in ("B-LT", "B-LTA"):
                data = await gather_validation_data(job.anchors, job.network, session,
                                                    [cert], job.chain, [token])
                add_long_term_values(signature, data)
            if level == "B-LTA":
                by_uri = {reference_uri(f.name): f.name for f in files}
                await add_archive_timestamp(job, session, stamper, signature.getparent(),
                                            signature, lambda uri: chunks(by_uri[uri]), md)
    root = signature.getparent()
    assert root is not None
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out
