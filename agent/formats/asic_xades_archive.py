"""XAdES B-LTA for a container's signature: the archive time-stamp (EN 319 132-1
§5.5.2, xadesv141:ArchiveTimeStamp) over each data file's bytes and the signature's
own parts, then the validation data of the TSA that signed it.

``agent.formats.xades_ltv`` computes the same input for a signature with one detached
document; a container's signature references several, so the input is gathered here,
in the same order with the same canonicalisation (exclusive C14N), reusing its pieces.
The files are hashed as they are read: the input is never held whole in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

from lxml import etree

from agent.formats.job import FormatJob
from agent.formats.timestamps import GuardedTimeStamper
from agent.formats.xades_ltv import (
    XADES141,
    add_timestamp_element,
    add_timestamp_validation_data,
    c14n,
    gather_validation_data,
    qualifying_properties,
    reference_octets,
    unsigned_signature_properties,
)

DS = "http://www.w3.org/2000/09/xmldsig#"
# A data file's bytes in chunks, by its reference's URI.
FileChunks = Callable[[str], Iterable[bytes]]


def archive_digest(root: etree._Element, signature: etree._Element, chunks: FileChunks,
                   md: str) -> bytes:
    """The hash of the archive time-stamp's input: every reference's octets (a data
    file's bytes: its reference has no transform), SignedInfo, SignatureValue, KeyInfo,
    the unsigned signature properties so far and any other ds:Object."""
    digest = hashlib.new(md)
    signed_info = signature.find(f"{{{DS}}}SignedInfo")
    value = signature.find(f"{{{DS}}}SignatureValue")
    assert signed_info is not None and value is not None
    for reference in signed_info.iterfind(f"{{{DS}}}Reference"):
        uri = reference.get("URI", "")
        if uri.startswith("#"):
            digest.update(reference_octets(root, signature, reference, None))
        else:
            for chunk in chunks(uri):
                digest.update(chunk)
    digest.update(c14n(signed_info))
    digest.update(c14n(value))
    key_info = signature.find(f"{{{DS}}}KeyInfo")
    if key_info is not None:
        digest.update(c14n(key_info))
    for child in unsigned_signature_properties(signature):
        if isinstance(child.tag, str):
            digest.update(c14n(child))
    qualifying = qualifying_properties(signature)
    for obj in signature.iterfind(f"{{{DS}}}Object"):
        if qualifying.getparent() is not obj:
            digest.update(c14n(obj))
    return digest.digest()


async def add_archive_timestamp(job: FormatJob, session: Any, stamper: GuardedTimeStamper,
                                root: etree._Element, signature: etree._Element,
                                chunks: FileChunks, md: str) -> None:
    """B-LT → B-LTA, as ``sign.xml`` does it: the archive time-stamp, then its TSA's
    validation data (fetched after it) in xadesv141:TimeStampValidationData."""
    token = await stamper.async_timestamp(archive_digest(root, signature, chunks, md), md)
    sid = signature.get("Id", "Signature")
    add_timestamp_element(unsigned_signature_properties(signature), XADES141,
                          "ArchiveTimeStamp", token, f"{sid}-ArchiveTimeStamp1")
    data = await gather_validation_data(job.anchors, job.network, session, [], [], [token])
    add_timestamp_validation_data(signature, data, f"{sid}-ArchiveData1")
