"""The ds:Signature of an enveloped XAdES B-B, written with lxml where its placeholder
stands.

Why not signxml's ``XAdESSigner`` here (it still writes detached signatures, and it
verifies): e-invoices are signed by the hundred in one ``sign.batch``, where signxml's
generic path was half of each invoice's work.  Per document it builds a new signer
object, re-reads the certificates from PEM, re-derives every algorithm from its name,
draws four random Ids and copies the document; of that only the SignedProperties and
KeyInfo digests and the SignedInfo canonicalisation depend on the document.  The
elements written are the ones signxml wrote for us (same names, order, namespaces,
transforms), and the certificate-derived parts are made once per certificate.

The data references' digests come from ``agent.formats.xades_placement`` (their
transforms exclude every signature, so co-signers do not break each other).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import hashlib
import secrets
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from signxml.algorithms import DigestAlgorithm, SignatureMethod

from agent.formats.xades_placement import add_reference_transforms

DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
SIGNED_PROPERTIES_TYPE = "http://uri.etsi.org/01903#SignedProperties"
_NAMESPACES = {"ds": DS, "xades": XADES}


@dataclasses.dataclass(frozen=True)
class DataReference:
    """A same-document reference: its URI ("" or "#id"), its digest (of the covered
    octets, made before the signature was placed) and a description for its
    DataObjectFormat."""

    uri: str
    digest: bytes
    description: str


@dataclasses.dataclass(frozen=True)
class _Certificates:
    """What the signature says of its certificates, the same for every document."""

    texts: tuple[str, ...]   # ds:X509Certificate, signer first (base64 in 64-column lines)
    signer_digest: str       # SigningCertificateV2's CertDigest of the signer's certificate


@functools.lru_cache(maxsize=16)
def _certificates(certificates: tuple[x509.Certificate, ...], md: str) -> _Certificates:
    ders = [c.public_bytes(Encoding.DER) for c in certificates]
    texts = []
    for der in ders:
        text = base64.b64encode(der).decode("ascii")
        texts.append("".join(text[i:i + 64] + "\n" for i in range(0, len(text), 64)))
    digest = base64.b64encode(hashlib.new(md, ders[0]).digest()).decode("ascii")
    return _Certificates(tuple(texts), digest)


def _algorithms(md: str, is_ec: bool) -> tuple[str, str]:
    """(SignatureMethod, DigestMethod) URIs, as signxml names them."""
    name = md.upper()
    signature = SignatureMethod[f"ECDSA_{name}" if is_ec else f"RSA_{name}"]
    return signature.value, DigestAlgorithm[name].value


def _ds(parent: etree._Element, name: str, **attributes: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{DS}}}{name}", attributes)


def _xades(parent: etree._Element, name: str, **attributes: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{XADES}}}{name}", attributes)


def _digest_of(element: etree._Element, md: str) -> str:
    octets = etree.tostring(element, method="c14n", exclusive=True, with_comments=False)
    return base64.b64encode(hashlib.new(md, octets).digest()).decode("ascii")


def _add_reference(signed_info: etree._Element, uri: str, digest: str, digest_method: str,
                   **attributes: str) -> None:
    """A reference to a part of the signature itself, exclusively canonicalised: the same
    digest wherever the signature sits (its host's namespace declarations are left out)."""
    reference = _ds(signed_info, "Reference", URI=uri, **attributes)
    _ds(_ds(reference, "Transforms"), "Transform", Algorithm=EXC_C14N)
    _ds(reference, "DigestMethod", Algorithm=digest_method)
    _ds(reference, "DigestValue").text = digest


def fill_enveloped(signature: etree._Element, *, references: Sequence[DataReference],
                   certificates: Sequence[x509.Certificate], md: str, is_ec: bool,
                   mime_type: str, signing_time: dt.datetime) -> bytes:
    """Writes SignedInfo, an empty SignatureValue, KeyInfo (``certificates``, signer
    first) and the XAdES signed properties into ``signature`` (the empty ds:Signature
    in the document); returns the canonical SignedInfo, which the key signs."""
    signature_method, digest_method = _algorithms(md, is_ec)
    parts = _certificates(tuple(certificates), md)
    token = secrets.token_hex(8).upper()  # one draw: the Ids below only need to differ
    signature_id = f"SignXMLSignature{token[:8]}"
    signature.attrib.clear()
    signature.set("Id", signature_id)

    signed_info = _ds(signature, "SignedInfo")
    _ds(signed_info, "CanonicalizationMethod", Algorithm=EXC_C14N)
    _ds(signed_info, "SignatureMethod", Algorithm=signature_method)
    reference_ids = []
    for number, data in enumerate(references):
        reference_id = f"SignXMLReference{token[8:]}-{number}"
        reference_ids.append(reference_id)
        reference = _ds(signed_info, "Reference", URI=data.uri, Id=reference_id)
        add_reference_transforms(reference)
        _ds(reference, "DigestMethod", Algorithm=digest_method)
        _ds(reference, "DigestValue").text = base64.b64encode(data.digest).decode("ascii")
    _ds(signature, "SignatureValue")

    key_info = _ds(signature, "KeyInfo", Id=f"SignXMLCertificate{token[8:]}")
    x509_data = _ds(key_info, "X509Data")
    for text in parts.texts:
        _ds(x509_data, "X509Certificate").text = text

    ds_object = etree.SubElement(signature, f"{{{DS}}}Object", nsmap=_NAMESPACES)
    qualifying = _xades(ds_object, "QualifyingProperties", Target=f"#{signature_id}")
    signed_properties = _xades(qualifying, "SignedProperties",
                               Id=f"{signature_id}-SignedProperties{token[8:]}")
    signature_properties = _xades(signed_properties, "SignedSignatureProperties")
    _xades(signature_properties, "SigningTime").text = \
        signing_time.astimezone(dt.UTC).isoformat(timespec="seconds")
    cert_digest = _xades(_xades(_xades(signature_properties, "SigningCertificateV2"), "Cert"),
                         "CertDigest")
    _ds(cert_digest, "DigestMethod", Algorithm=digest_method)
    _ds(cert_digest, "DigestValue").text = parts.signer_digest
    data_objects = _xades(signed_properties, "SignedDataObjectProperties")
    for data, reference_id in zip(references, reference_ids, strict=True):
        data_format = _xades(data_objects, "DataObjectFormat",
                             ObjectReference=f"#{reference_id}")
        _xades(data_format, "Description").text = data.description
        _xades(data_format, "MimeType").text = mime_type

    _add_reference(signed_info, f"#{signed_properties.get('Id')}",
                   _digest_of(signed_properties, md), digest_method,
                   Type=SIGNED_PROPERTIES_TYPE)
    _add_reference(signed_info, f"#{key_info.get('Id')}", _digest_of(key_info, md),
                   digest_method)
    octets: bytes = etree.tostring(signed_info, method="c14n", exclusive=True,
                                   with_comments=False)
    return octets
