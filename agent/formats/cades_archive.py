"""CAdES B-LTA: the archive-time-stamp-v3 attribute and its ats-hash-index-v3 (ETSI EN
319 122-1 §5.5.3 and §5.5.2).

pyHanko archives PDFs with document time-stamps and has no CAdES archive time-stamp, so
this one is written with asn1crypto.  The time-stamp's message imprint is the hash of

1. ``SignedData.encapContentInfo.eContentType`` (its DER, tag and length included);
2. the hash of the signed content (the external data of a detached signature, the
   eContent's octets of an attached one), with the time-stamp's hash algorithm;
3. the SignerInfo's ``version``, ``sid``, ``digestAlgorithm``, ``signedAttrs`` (its [0]
   tag included), ``signatureAlgorithm`` and ``signature``, each as encoded;
4. the ``ATSHashIndexV3`` value put in the time-stamp token's unsigned attributes, which
   lists the hash of every ``CertificateChoices`` in ``SignedData.certificates``, of every
   ``RevocationInfoChoice`` in ``SignedData.crls`` and, per value, of each unsigned
   attribute of the SignerInfo (its ``attrType`` encoding followed by the value's).

What the index names is what the time-stamp protects: validation data added later (for
the next renewal) joins the lists without breaking an earlier archive time-stamp.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

from asn1crypto import algos, cms, core
from pyhanko.sign.ades.asn1_util import register_cms_attribute

from agent.formats.cades_order import AttributesInOrder

ARCHIVE_TIME_STAMP_V3 = "0.4.0.1733.2.4"  # id-aa-ets-archiveTimestampV3
ATS_HASH_INDEX_V3 = "0.4.0.1733.2.5"      # id-aa-ATSHashIndex-v3


# asn1crypto is untyped: its classes are Any to mypy.
class _Hashes(core.SequenceOf):  # type: ignore[misc]
    _child_spec = core.OctetString


class ATSHashIndexV3(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[str, Any, dict[str, Any]] | tuple[str, Any]]] = [
        ("hash_ind_algorithm", algos.DigestAlgorithm, {"default": {"algorithm": "sha256"}}),
        ("certificates_hash_index", _Hashes),
        ("crls_hash_index", _Hashes),
        ("unsigned_attr_values_hash_index", _Hashes),
    ]


register_cms_attribute(ARCHIVE_TIME_STAMP_V3, "archive_time_stamp_v3", cms.ContentInfo)
# Read back as ``Any``: with its DEFAULT algorithm left out, the first SEQUENCE of an
# index is the certificates' list, which asn1crypto (matching fields by tag) would take
# for the AlgorithmIdentifier.  We write indexes (``ATSHashIndexV3``), never parse them.
register_cms_attribute(ATS_HASH_INDEX_V3, "ats_hash_index_v3", core.Any)
# asn1crypto caches the name → OID map when it is first used: ours join it if it exists.
if cms.CMSAttributeType._reverse_map is not None:
    cms.CMSAttributeType._reverse_map.update({"archive_time_stamp_v3": ARCHIVE_TIME_STAMP_V3,
                                              "ats_hash_index_v3": ATS_HASH_INDEX_V3})

# The SignerInfo fields the imprint covers, in the standard's order.
_SIGNER_FIELDS = ("version", "sid", "digest_algorithm", "signed_attrs", "signature_algorithm",
                  "signature")


def hash_index(signed: cms.SignedData, signer_info: cms.SignerInfo,
               md: str) -> ATSHashIndexV3:
    """The ats-hash-index-v3 of one SignerInfo as the SignedData stands now."""
    def digest(data: bytes) -> bytes:
        return hashlib.new(md, data).digest()

    attribute_values = []
    for attribute in signer_info["unsigned_attrs"] or []:
        attr_type = attribute["type"].dump()
        attribute_values += [digest(attr_type + value.dump()) for value in attribute["values"]]
    index = {
        "certificates_hash_index": [digest(c.dump()) for c in signed["certificates"] or []],
        "crls_hash_index": [digest(c.dump()) for c in signed["crls"] or []],
        "unsigned_attr_values_hash_index": attribute_values,
    }
    if md != "sha256":  # DER leaves out a DEFAULT value
        index["hash_ind_algorithm"] = {"algorithm": md}  # type: ignore[assignment]
    return ATSHashIndexV3(index)


def archive_imprint(signed: cms.SignedData, signer_info: cms.SignerInfo, content_hash: bytes,
                    index: ATSHashIndexV3, md: str) -> bytes:
    """The message imprint of an archive-time-stamp-v3 over ``signer_info``;
    ``content_hash`` is the hash of the signed content with ``md``."""
    parts = [signed["encap_content_info"]["content_type"].dump(), content_hash]
    parts += [signer_info[name].dump() for name in _SIGNER_FIELDS]  # absent: b""
    parts.append(index.dump())
    return hashlib.new(md, b"".join(parts)).digest()


def with_hash_index(token: cms.ContentInfo, index: ATSHashIndexV3) -> cms.ContentInfo:
    """The time-stamp token with the index among its SignerInfo's unsigned attributes
    (they are not signed: the token's signature stays valid)."""
    token = cms.ContentInfo.load(token.dump())
    token_signer = token["content"]["signer_infos"][0]
    attributes = list(token_signer["unsigned_attrs"] or [])
    attributes.append(cms.CMSAttribute({"type": ATS_HASH_INDEX_V3,
                                        "values": [core.Any.load(index.dump())]}))
    token_signer["unsigned_attrs"] = AttributesInOrder(attributes)
    return token


def archive_time_stamps(signer_info: cms.SignerInfo) -> list[cms.ContentInfo]:
    """The SignerInfo's archive-time-stamp-v3 tokens, oldest first."""
    return [value for attribute in signer_info["unsigned_attrs"] or []
            if attribute["type"].native == "archive_time_stamp_v3"
            for value in attribute["values"]]


def add_unsigned(signer_info: cms.SignerInfo, attr_type: str, value: object) -> None:
    """A new unsigned attribute, after the ones already there (their encodings kept)."""
    attributes = list(signer_info["unsigned_attrs"] or [])
    attributes.append(cms.CMSAttribute({"type": attr_type, "values": [value]}))
    signer_info["unsigned_attrs"] = AttributesInOrder(attributes)
