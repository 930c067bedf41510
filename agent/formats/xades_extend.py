"""Extending XAdES signatures without their key (``signature.extend``, in a document
worker): B-T → B-LT → B-LTA, and the renewal of a B-LTA signature (the validation data of
its last archive time-stamp, then a new archive time-stamp) before that time-stamp's
certificate expires.

Every XAdES signature in the document is extended to ``level``; one already at or above
it is left as it is, except that ``B-LTA`` on a B-LTA signature renews it.  A signature
whose change would break another signature of the document (one covering it without
excluding later signatures, ``xades_placement.signatures_broken_by``) is refused before
any service is asked.  ``detached``: the signed document of a detached signature, which
its archive time-stamp covers.
"""

from __future__ import annotations

import logging

from lxml import etree

from agent.errors import AgentError, Unsupported
from agent.formats.document_caps import StructureCaps, check_xml_structure
from agent.formats.job import KeylessJob
from agent.formats.timestamps import GuardedTimeStamper
from agent.formats.xades_ltv import (
    XADES,
    XADES141,
    add_archive_timestamp,
    add_long_term_values,
    add_signature_timestamp,
    add_timestamp_validation_data,
    check_references,
    gather_validation_data,
    last_archive_timestamp_lacks_data,
    signature_digest,
    signature_level,
    signing_certificate,
    timestamp_tokens,
)
from agent.formats.xades_placement import DS, refuse_if_breaking

log = logging.getLogger(__name__)

EXTEND_LEVELS = ("B-T", "B-LT", "B-LTA")
# Bounds on a document from a page: each signature extended re-processes its references
# (a copy of the document each), so their numbers multiply the work.
MAX_SIGNATURES = 32
MAX_REFERENCES = 64
_ORDER = {"B-B": 0, "B-T": 1, "B-LT": 2, "B-LTA": 3}
# What lxml raises for a document it cannot process; MemoryError is TOO_LARGE.
_MALFORMED = (etree.LxmlError, ValueError, KeyError, TypeError, IndexError, RecursionError)


async def extend_xades_here(job: KeylessJob, xml: bytes, level: str, detached: bytes | None,
                            *, caps: StructureCaps | None = None) -> bytes:
    """The document with its XAdES signatures raised to ``level``."""
    if level not in EXTEND_LEVELS:
        raise Unsupported(f"XAdES level {level} is not one of {', '.join(EXTEND_LEVELS)}")
    if job.tsa_url is None:
        raise Unsupported("extending a signature needs a time-stamping service")
    check_xml_structure(xml, caps or StructureCaps())
    try:
        return await _extend(job, xml, level, detached)
    except AgentError:
        raise
    except _MALFORMED as exc:
        log.warning("XML refused: %s while extending", type(exc).__name__)
        raise Unsupported("the signature could not be processed as XML") from None


async def _extend(job: KeylessJob, xml: bytes, level: str, detached: bytes | None) -> bytes:
    from agent.formats.xades import _parse

    root = _parse(xml)
    signatures = [s for s in root.getroottree().iter(f"{{{DS}}}Signature")
                  if s.find(f"{{{DS}}}Object/{{{XADES}}}QualifyingProperties") is not None]
    if not signatures:
        raise Unsupported("the document has no XAdES signature")
    if len(signatures) > MAX_SIGNATURES:
        raise Unsupported(f"the document has more than {MAX_SIGNATURES} XAdES signatures")
    for signature in signatures:
        if len(signature.findall(f"{{{DS}}}SignedInfo/{{{DS}}}Reference")) > MAX_REFERENCES:
            raise Unsupported(f"a signature has more than {MAX_REFERENCES} references")
    todo = [s for s in signatures if _ORDER[signature_level(s)] < _ORDER[level]
            or (level == "B-LTA" and signature_level(s) == "B-LTA")]
    for signature in todo:
        refuse_if_breaking(root, signature, own=signature)
        signing_certificate(signature)  # readable before anything is asked
        # A signature that no longer matches its document is not extended: refused
        # before any service is asked (B-LTA needs a detached signature's data too).
        check_references(root, signature, detached)
        if level == "B-LTA" and detached is None:
            archive_references(root, signature)
    assert job.tsa_url is not None
    async with job.network.session() as session:
        stamper = GuardedTimeStamper(job.tsa_url, job.network, session)
        for signature in todo:
            await _extend_one(job, session, stamper, root, signature, level, detached)
    encoding = root.getroottree().docinfo.encoding or "UTF-8"
    out: bytes = etree.tostring(root.getroottree(), xml_declaration=True, encoding=encoding)
    return out


async def _extend_one(job: KeylessJob, session: object, stamper: GuardedTimeStamper,
                      root: etree._Element, signature: etree._Element, level: str,
                      detached: bytes | None) -> None:
    md = signature_digest(signature)
    current = signature_level(signature)
    if current == "B-B":
        await add_signature_timestamp(signature, stamper, md)
        current = "B-T"
    if level == "B-T":
        return
    if current == "B-T":
        tokens = timestamp_tokens(signature, "SignatureTimeStamp")
        signer, chain = signing_certificate(signature)
        data = await gather_validation_data(job.anchors, job.network, session, [signer],
                                            chain, tokens)
        add_long_term_values(signature, data)
        current = "B-LT"
    if level == "B-LT":
        return
    sid = signature.get("Id", "Signature")
    if current == "B-LTA" and last_archive_timestamp_lacks_data(signature):
        # The renewal: the last archive time-stamp's own validation data first, so the
        # new archive time-stamp covers it.
        last = timestamp_tokens(signature, "ArchiveTimeStamp", XADES141)[-1:]
        data = await gather_validation_data(job.anchors, job.network, session, [], [], last)
        add_timestamp_validation_data(signature, data, f"{sid}-ArchiveData{_count(signature)}")
    archive = await add_archive_timestamp(root, signature, stamper, md, detached)
    data = await gather_validation_data(job.anchors, job.network, session, [], [], [archive])
    add_timestamp_validation_data(signature, data, f"{sid}-ArchiveData{_count(signature)}")


def archive_references(root: etree._Element, signature: etree._Element) -> None:
    """Unsupported when an archive time-stamp would need data that was not given."""
    for reference in signature.iterfind(f"{{{DS}}}SignedInfo/{{{DS}}}Reference"):
        uri = reference.get("URI")
        if uri is None or not (uri == "" or uri.startswith("#")):
            raise Unsupported("the signature covers a detached document: give its data")


def _count(signature: etree._Element) -> int:
    return len(signature.findall(f".//{{{XADES141}}}ArchiveTimeStamp"))
