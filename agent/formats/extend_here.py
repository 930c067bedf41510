"""Inside a document worker: ``signature.extend`` — a signature raised to a higher
baseline level without its key, dispatched by format:

* ``pdf``: ``agent.formats.pades_extend`` (a document time-stamp, a DSS, an archive
  document time-stamp);
* ``cms``: ``agent.formats.cades_extend`` (the CMS work's);
* ``xml``: ``agent.formats.xades_extend`` (the XML work's).

Each returns the whole extended signature in the format it was given in.

Before the user is asked, the daemon runs this with ``describe``: the document is read
(each PDF signature checked intact) and only the number of signatures comes back, as
JSON — a malformed or tampered document is refused before any dialog, and the dialog
says how many signatures it extends.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from agent.errors import AgentError, Unsupported
from agent.formats.document_caps import StructureCaps
from agent.formats.job import KeylessJob

log = logging.getLogger(__name__)

# The levels of each format as the protocol names them (agent/protocol/params_extend.py).
LEVELS = {"cms": ("T", "LT", "LTA"), "pdf": ("B-T", "B-LT", "B-LTA"),
          "xml": ("B-T", "B-LT", "B-LTA")}


async def run_extend(job: KeylessJob, *, caps: Any, format: str, signature: bytes,
                     level: str, data: bytes | None = None, describe: bool = False
                     ) -> bytes:
    """The extended signature; ``Unsupported`` for a document that is not a signature of
    ``format`` this agent can extend, NETWORK when a service fails.  ``describe``: only
    ``{"signatures": n}`` (JSON), the document read but nothing asked of any service."""
    if level not in LEVELS.get(format, ()):
        raise Unsupported(f"level {level} is not one of {format}'s levels")
    structure = caps if isinstance(caps, StructureCaps) else StructureCaps()
    if describe:
        count = signature_count(format, signature, structure)
        return json.dumps({"signatures": count}).encode("ascii")
    if format == "pdf":
        from agent.formats.pades_extend import extend_pades_here

        return await extend_pades_here(job, signature, level, caps=structure)
    if format == "cms":
        return await _extend_cms(job, signature, level, data)
    if format == "xml":
        return await _extend_xml(job, signature, level, data, structure)
    raise Unsupported(f"signatures of format {format!r} cannot be extended")


def signature_count(fmt: str, signature: bytes, caps: StructureCaps) -> int:
    """How many signatures the document holds (at least one, else UNSUPPORTED)."""
    if fmt == "pdf":
        from agent.formats.pades_extend import read_state

        try:
            return len(read_state(signature, caps).signers)
        except AgentError:
            raise
        except Exception as exc:  # pyHanko reports malformed input in many ways
            log.warning("PDF refused for extension: %s", type(exc).__name__)
            raise Unsupported("the document could not be processed as a signed PDF"
                              ) from None
    if fmt == "cms":
        cms_digest_algorithm(signature)  # a SignedData with a signer we can hash for
        from asn1crypto import cms

        try:
            return len(cms.ContentInfo.load(signature)["content"]["signer_infos"])
        except Exception:  # read once already by cms_digest_algorithm; kept safe
            raise Unsupported("the signature could not be read as a CMS SignedData"
                              ) from None
    return _xml_signature_count(signature, caps)


def _xml_signature_count(document: bytes, caps: StructureCaps) -> int:
    from lxml import etree

    from agent.formats.document_caps import check_xml_structure

    check_xml_structure(document, caps)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False)
    try:
        root = etree.fromstring(document, parser=parser)
    except (etree.LxmlError, ValueError) as exc:
        log.warning("XML refused for extension: %s", type(exc).__name__)
        raise Unsupported("the document could not be read as XML") from None
    count = sum(1 for _ in root.iter(f"{{{_DS}}}Signature"))
    if not count:
        raise Unsupported("the document has no signature to extend")
    return count


_DS = "http://www.w3.org/2000/09/xmldsig#"


async def _extend_cms(job: KeylessJob, signature: bytes, level: str,
                      data: bytes | None) -> bytes:
    try:
        from agent.formats.cades_extend import extend_cades_here
    except ImportError:
        raise Unsupported("extending CMS signatures is not available yet") from None
    digest_algorithm = cms_digest_algorithm(signature)
    data_digest = hashlib.new(digest_algorithm, data).digest() if data is not None else None
    extended: bytes = await extend_cades_here(job, signature, level, data_digest,
                                              digest_algorithm)
    return extended


def cms_digest_algorithm(signature: bytes) -> str:
    """The first signer's digest algorithm ("sha256", ...): what the detached content is
    hashed with for the CMS work (its archive time-stamp covers that hash)."""
    from asn1crypto import cms

    try:
        content = cms.ContentInfo.load(signature, strict=True)
        if content["content_type"].native != "signed_data":
            raise ValueError("not SignedData")
        signers = content["content"]["signer_infos"]
        name = str(signers[0]["digest_algorithm"]["algorithm"].native)
    except AgentError:
        raise
    except Exception as exc:  # asn1crypto reports malformed input in many ways
        log.warning("CMS refused: %s", type(exc).__name__)
        raise Unsupported("the signature could not be read as a CMS SignedData") from None
    if name not in ("sha256", "sha384", "sha512"):
        raise Unsupported(f"digest algorithm {name} is not supported")
    return name


async def _extend_xml(job: KeylessJob, signature: bytes, level: str,
                      data: bytes | None, caps: StructureCaps) -> bytes:
    try:
        from agent.formats.xades_extend import extend_xades_here
    except ImportError:
        raise Unsupported("extending XAdES signatures is not available yet") from None
    extended: bytes = await extend_xades_here(job, signature, level, data, caps=caps)
    return extended
