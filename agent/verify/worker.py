"""Inside a document worker: the verification report of one signed file, as JSON bytes
(``{"format": ..., "signatures": [...]}``; the daemon checks it against
``agent.protocol.params_verify.VerifyResult`` before anyone sees it)."""

from __future__ import annotations

import json
from typing import Any

from agent.errors import Unsupported
from agent.formats.asic_caps import MIMETYPE
from agent.formats.document_caps import StructureCaps
from agent.formats.job import KeylessJob
from agent.verify.caps import max_verified_signatures

FORMATS = ("cms", "pdf", "xml", "asic")


def is_asic(data: bytes) -> bool:
    """A ZIP whose first entry is the stored ``mimetype`` of ASiC-E (a local header of 30
    bytes, the 8-byte name "mimetype", then its content: EN 319 162-1 §A.1)."""
    return data[:4] == b"PK\x03\x04" and data[30:38] == b"mimetype" \
        and data[38:38 + len(MIMETYPE)] == MIMETYPE.encode("ascii")


def detect_format(signature: bytes) -> str:
    """What the file is, by its first bytes: an ASiC-E or ASiC-S container (a ZIP whose
    first entry is its mimetype), a PDF header, XML, else DER (CMS)."""
    from agent.verify.asics_verify import is_asic_s

    if is_asic(signature) or is_asic_s(signature):
        return "asic"
    head = signature[:1024].lstrip(b"\xef\xbb\xbf \t\r\n")
    if signature[:1024].find(b"%PDF-") != -1:
        return "pdf"
    if head.startswith(b"<"):
        return "xml"
    if head[:1] == b"\x30":
        return "cms"
    raise Unsupported("the file is neither a CMS signature, a PDF, an XML document nor an "
                      "ASiC container")


async def run_verify(job: KeylessJob, *, caps: Any, signature: bytes,
                     data: bytes | None = None, format: str | None = None) -> bytes:
    kind = format or detect_format(signature)
    if kind not in FORMATS:
        raise Unsupported(f"unknown signature format {kind!r}")
    structure = caps if isinstance(caps, StructureCaps) else StructureCaps()
    if kind == "cms":
        from agent.verify.cms_verify import verify_cms

        reports = await verify_cms(job, signature, data, max_verified_signatures(caps))
    elif kind == "pdf":
        if data is not None:
            raise Unsupported("a PDF carries what it signs: give no detached data")
        from agent.verify.pdf_verify import verify_pdf

        reports = await verify_pdf(job, signature, structure)
    elif kind == "asic":
        if data is not None:
            raise Unsupported("a container carries what it signs: give no detached data")
        from agent.verify.asic_verify import verify_asic
        from agent.verify.asics_verify import is_asic_s, verify_asic_s

        if is_asic_s(signature):
            reports = await verify_asic_s(job, signature, structure)
        else:
            reports = await verify_asic(job, signature, structure)
    else:
        from agent.verify.xml_verify import verify_xml

        reports = await verify_xml(job, signature, data, structure)
    return json.dumps({"format": kind, "signatures": [r.to_json() for r in reports]},
                      ensure_ascii=False).encode("utf-8")
