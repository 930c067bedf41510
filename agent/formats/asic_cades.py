"""The CAdES signature of an ASiC-E container (EN 319 162-1 §4.4.3.3): a detached CMS
``META-INF/signature<N>.p7s`` over ``META-INF/ASiCManifest<N>.xml``, the manifest naming
the signature and every data file with its digest.  The CMS itself is the CAdES
builder's (``agent.formats.cades``), given the manifest's digest."""

from __future__ import annotations

import base64
import hashlib

from lxml import etree

from agent.formats.asic_xades import ASIC_NS, DIGEST_URIS, DS, DataFile, reference_uri
from agent.formats.cades import build_cades_here
from agent.formats.cades_extend import extend_cades_here
from agent.formats.job import FormatJob, KeylessJob

P7S_MIME_TYPE = "application/pkcs7-signature"
# The protocol's levels → the CAdES builder's (B-LTA: B-LT, then extended).
CADES_LEVELS = {"B-B": "B", "B-T": "T", "B-LT": "LT", "B-LTA": "LT"}


def asic_manifest(signature_name: str, files: list[DataFile], md: str) -> bytes:
    """``asic:ASiCManifest``: the signature it belongs to and each file's digest."""
    root = etree.Element(f"{{{ASIC_NS}}}ASiCManifest", nsmap={"asic": ASIC_NS, "ds": DS})
    etree.SubElement(root, f"{{{ASIC_NS}}}SigReference", URI=reference_uri(signature_name),
                     MimeType=P7S_MIME_TYPE)
    for file in files:
        reference = etree.SubElement(root, f"{{{ASIC_NS}}}DataObjectReference",
                                     URI=reference_uri(file.name), MimeType=file.mime_type)
        etree.SubElement(reference, f"{{{DS}}}DigestMethod", Algorithm=DIGEST_URIS[md])
        etree.SubElement(reference, f"{{{DS}}}DigestValue").text = \
            base64.b64encode(file.digest).decode("ascii")
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8",
                                standalone=True)
    return out


async def sign_asic_cades(job: FormatJob, manifest: bytes, level: str, md: str) -> bytes:
    """The detached CMS (DER) over the manifest's bytes; one use of the key.  B-LTA is
    B-LT (whose services are tried before the dialog) given its archive-time-stamp-v3
    by the extend builder, which needs no key."""
    digest = hashlib.new(md, manifest).digest()
    signature = await build_cades_here(job, digest, md, CADES_LEVELS[level])
    if level != "B-LTA":
        return signature
    keyless = KeylessJob(anchors=job.anchors, network=job.network, tsa_url=job.tsa_url)
    return await extend_cades_here(keyless, signature, "LTA", digest, md)
