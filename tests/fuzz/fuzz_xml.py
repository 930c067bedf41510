"""atheris target: what ``sign.xml`` does with the page's XML before the PIN
(``build_xades_here``, the function a document worker runs: the structural caps in one
streaming pass, the hardened lxml parse, signxml's canonicalisation and signed info), for
any bytes.  It stops when the key is asked for.

Fine: the project's errors (AgentError: TOO_LARGE, UNSUPPORTED, ...), which is all a
page may see.  Anything else is a crash (the document worker would answer it INTERNAL);
so is an input that takes longer than ``-timeout`` or more than ``-rss_limit_mb``
(canonicalisation is cubic in namespace declarations: the caps must refuse such a
document first).
"""

from __future__ import annotations

import asyncio
import logging
import sys

import harness

from fuzz.frames import XML_SEEDS

with harness.instrumented():
    from agent.errors import AgentError
    from agent.formats.document_caps import StructureCaps
    from agent.formats.xades import build_xades_here
    from fuzz.documents import ReachedTheKey, stopping_job  # imports agent.formats

logging.disable(logging.CRITICAL)
JOB = stopping_job()
CAPS = StructureCaps()


def test_one(data: bytes) -> None:
    if not data:
        return
    mode = "detached" if data[0] & 1 else "enveloped"
    try:
        asyncio.run(build_xades_here(JOB, data[1:], "B-B", mode, caps=CAPS))
    except (ReachedTheKey, AgentError):
        pass
    except Exception as exc:
        harness.unexpected(exc)


def seeds() -> list[bytes]:
    many_namespaces = b"<r " + b" ".join(b'xmlns:n%d="urn:%d"' % (i, i)
                                         for i in range(300)) + b"/>"
    nested = b"<a>" * 300 + b"</a>" * 300
    documents = [*XML_SEEDS, many_namespaces, nested,
                 b'<!DOCTYPE r [<!ENTITY e "x">]><r>&e;</r>',
                 b'<r xmlns:xi="http://www.w3.org/2001/XInclude">'
                 b'<xi:include href="/etc/passwd"/></r>']
    return [bytes([mode]) + doc for doc in documents for mode in (0, 1)]


if __name__ == "__main__":
    harness.fuzz(test_one, seeds)
    sys.exit(0)
