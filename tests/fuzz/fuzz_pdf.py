"""atheris target: what ``sign.pdf`` does with the page's PDF before the PIN
(``build_pades_here``, the function a document worker runs: the structural caps,
pyHanko's incremental writer, the stamp's page, the field, the prepared signature), for
any bytes.  It stops when the key is asked for.

Fine: the project's errors (AgentError: TOO_LARGE, UNSUPPORTED, ...), which is all a
page may see.  Anything else is a crash: the document worker would answer it INTERNAL
(tests/test_fuzz_findings.py has what this found).  So is an input that takes longer than
``-timeout`` or more than ``-rss_limit_mb``: the worker's CPU and memory limits are the
backstop, the structural caps should refuse first.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import harness

from fuzz.frames import minimal_pdf

with harness.instrumented():
    from agent.errors import AgentError
    from agent.formats.document_caps import StructureCaps
    from agent.formats.pades import Stamp, build_pades_here
    from fuzz.documents import ReachedTheKey, stopping_job  # imports agent.formats

logging.disable(logging.CRITICAL)  # pyHanko warns about every broken file
JOB = stopping_job()
CAPS = StructureCaps()
# The first byte picks how the page asked (invisible, a stamp on a page, a named field).
STAMPS = (None, Stamp(page=1, box=(10, 10, 200, 60), text="ok"),
          Stamp(page=-1, box=(0, 0, 14400, 14400)))


async def _build(pdf: bytes, mode: int) -> None:
    await build_pades_here(JOB, pdf, "B-B", reason="fuzz", location=None,
                           field_name="Sig1" if mode & 4 else None,
                           stamp=STAMPS[mode % len(STAMPS)], caps=CAPS)


def test_one(data: bytes) -> None:
    if not data:
        return
    try:
        asyncio.run(_build(data[1:], data[0]))
    except (ReachedTheKey, AgentError):
        pass
    except Exception as exc:
        harness.unexpected(exc)


def seeds() -> list[bytes]:
    documents = [minimal_pdf(1), minimal_pdf(3), minimal_pdf(2, xref_stream=True),
                 minimal_pdf(1).replace(b"/Count 1", b"/Count 1000000"),
                 minimal_pdf(1, xref_stream=True).replace(b"/Size 5", b"/Size 5000000")]
    return [bytes([mode]) + doc for doc in documents for mode in (0, 1, 4)]


if __name__ == "__main__":
    harness.fuzz(test_one, seeds)
    sys.exit(0)
