"""The per-file bounds of verification, from the document workers' structure caps.

``[documents] max_verified_signatures`` (agent/config.py): how many signatures of one
file (CMS SignerInfos, PDF signature fields, XML ds:Signature elements, the signatures of
an ASiC-E container) are verified; a file with more is refused, since each costs path
building and network fetches.  Read with a ``getattr`` fallback (as
agent/formats/asic_caps.py does) until the setting reaches ``StructureCaps``."""

from __future__ import annotations

from typing import Any

DEFAULT_MAX_VERIFIED_SIGNATURES = 32


def max_verified_signatures(caps: Any) -> int:
    return int(getattr(caps, "verified_signatures", DEFAULT_MAX_VERIFIED_SIGNATURES))
