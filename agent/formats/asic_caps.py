"""Bounds on ASiC-E containers and the rules for their entry names (EN 319 162-1).

Light on purpose (stdlib only): the daemon checks the names of the files a page sends
and reads the bounds before any worker starts; the worker checks a page's container
against the same bounds and names before it decompresses anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.container_names import MAX_NAME_CHARS, META_INF, name_problem

MIMETYPE = "application/vnd.etsi.asic-e+zip"
__all__ = ["MAX_NAME_CHARS", "META_INF", "MIMETYPE", "AsicLimits", "asic_limits",
           "name_problem"]


@dataclass(frozen=True)
class AsicLimits:
    """The ``[documents]`` bounds on containers (agent/config.py ``max_container_*``)."""

    files: int = 100                            # data files in one container
    entries: int = 1000                         # zip entries of a page's container
    unpacked_bytes: int = 256 * 1024 * 1024     # their uncompressed sizes, summed
    ratio: int = 100                            # uncompressed / compressed, per entry
    ratio_floor_bytes: int = 1024 * 1024        # entries smaller than this: any ratio
    name_bytes: int = 255                       # UTF-8 bytes of one entry name


def asic_limits(caps: Any) -> AsicLimits:
    """The bounds from the document workers' structure caps (``StructureCaps``), each
    falling back to its default while the setting is not there."""
    default = AsicLimits()
    return AsicLimits(
        files=int(getattr(caps, "container_files", default.files)),
        entries=int(getattr(caps, "container_entries", default.entries)),
        unpacked_bytes=int(getattr(caps, "container_unpacked_bytes", default.unpacked_bytes)),
        ratio=int(getattr(caps, "container_ratio", default.ratio)),
        name_bytes=int(getattr(caps, "container_name_bytes", default.name_bytes)))
