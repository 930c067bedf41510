"""The daemon's entry points to the format builders: each hands its job to a document
worker (``agent.formats.isolation``), where pyHanko runs.

Kept apart from ``pades`` and ``cades`` so that the daemon never imports pyHanko for them:
its modules cost the daemon about 20 MB, for good, from the first document on.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.formats.job import FormatJob


@dataclass(frozen=True)
class Stamp:
    """A visible signature: a box on one page (1-based; negative counts from the end)
    showing the signer's name, the signing time and an optional line of ``text``."""

    page: int
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in PDF points
    text: str | None = None


async def build_pades(job: FormatJob, pdf: bytes, level: str, *, reason: str | None,
                      location: str | None, field_name: str | None,
                      stamp: Stamp | None = None,
                      digest_algorithm: str | None = None) -> bytes:
    """The signed PDF (``agent.formats.pades``), built in a document worker: the page's PDF
    is never parsed in the daemon."""
    from agent.formats.isolation import build_isolated

    return await build_isolated("pdf", job, {
        "pdf": pdf, "level": level, "reason": reason, "location": location,
        "field_name": field_name, "stamp": stamp, "digest_algorithm": digest_algorithm})


async def build_cades(job: FormatJob, data_digest: bytes, digest_algorithm: str,
                      level: str) -> bytes:
    """The detached CMS (``agent.formats.cades``) over ``data_digest``, the hash of the
    signed data with ``digest_algorithm`` ("sha256", "sha384", "sha512").

    Built in a document worker like the other formats: the page sends no document here,
    but the time-stamp and validation data parsed for T and LT come from services a page
    may name."""
    from agent.formats.isolation import build_isolated

    return await build_isolated("cms", job, {"data_digest": data_digest,
                                             "digest_algorithm": digest_algorithm,
                                             "level": level})
