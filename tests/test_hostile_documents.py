"""Issue 11 §7: hostile documents sent to a real agent.  Each is refused with TOO_LARGE or
UNSUPPORTED before any dialog, in a worker process, while the agent keeps answering other
sites; a worker over its memory limit ends its request and the next document signs.

The documents are the ones of the report: a PDF of a few hundred bytes whose
cross-reference stream claims five million entries (16.7 s and 1.1 GiB in the daemon
before), a /Kids fan-out of 1,500 in 18 KB (7.5 s), and an XML document with 1,500
namespace declarations in 40 KB (9.3 s, cubic in the count).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from io import BytesIO

import pki_services
import pytest
from daemon import Daemon, b64, unb64
from pki_services import (
    ORIGIN,
    FormatsBed,
    bed_daemon,
    pin_dialogs,
    select_handle,
)
from testbed.pdf import classic_pdf

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon, pytest.mark.verifiers]

formats_bed = pki_services.formats_bed
formats_daemon = pki_services.formats_daemon

BYSTANDER = "https://bystander.example"
SIGNER = "FMT-rsa"  # the formats token's RSA identity (FormatsBed.serial("rsa"))
HANG = 30.0  # seconds after which an unanswered probe means the agent hangs


# --- the documents -------------------------------------------------------------------------

def xref_size_pdf(size: int = 5_000_000, name: bytes = b"/Size") -> bytes:
    """A tiny PDF whose only cross-reference is a stream claiming ``size`` entries."""
    out = BytesIO()
    out.write(b"%PDF-1.7\n")
    catalog = out.tell()
    out.write(b"1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n")
    pages = out.tell()
    out.write(b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n")
    rows = b"".join(b"\x01" + offset.to_bytes(2, "big") + b"\x00"
                    for offset in (catalog, pages))
    xref = out.tell()
    out.write(b"3 0 obj<</Type/XRef" + name + b" %d/W[1 2 1]/Root 1 0 R/Length %d>>stream\n"
              % (size, len(rows)))
    out.write(rows + b"\nendstream endobj\nstartxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


def kids_fanout_pdf(fanout: int = 1500) -> bytes:
    """A form field with ``fanout`` kids that are all one field, itself with ``fanout``
    kids that are all one field: 18 KB that a tree walk visits fanout² times."""
    return classic_pdf([
        b"<</Type/Catalog/Pages 2 0 R/AcroForm<</Fields[4 0 R]>>>>",
        b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
        b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]>>",
        b"<</T(a)/Kids[" + b"5 0 R " * fanout + b"]>>",
        b"<</T(b)/Kids[" + b"6 0 R " * fanout + b"]>>",
        b"<</T(c)/FT/Sig>>"])


def page_fanout_pdf(fanout: int = 1500) -> bytes:
    """A page tree whose root lists one page ``fanout`` times."""
    return classic_pdf([
        b"<</Type/Catalog/Pages 2 0 R>>",
        b"<</Type/Pages/Kids[" + b"3 0 R " * fanout + b"]/Count %d>>" % fanout,
        b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]>>"])


def namespace_xml(count: int = 1500) -> bytes:
    """About 40 KB: ``count`` namespaces declared on the root, each used by one child
    (signxml's canonicalisation of this takes time cubic in ``count``)."""
    declarations = " ".join(f'xmlns:n{i}="u:{i}"' for i in range(count))
    children = "".join(f"<n{i}:a/>" for i in range(count))
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Qaime {declarations}>{children}'
            "</Qaime>").encode()


def minimal_pdf() -> bytes:
    from test_formats_pdf import minimal_pdf as one_page

    return one_page()


# --- through the daemon --------------------------------------------------------------------

async def test_hostile_documents_are_refused_before_any_dialog(
        formats_daemon: Daemon) -> None:
    assert len(xref_size_pdf()) < 400
    assert 17_000 < len(kids_fanout_pdf()) < 19_000
    assert 35_000 < len(namespace_xml()) < 45_000
    mark = formats_daemon.transcript_mark()
    async with formats_daemon.client(ORIGIN) as client:
        handle = await select_handle(client, SIGNER)  # one select: they are rate limited

        async def refusal(method: str, params: dict[str, object]) -> str | None:
            error = await client.error(method, {"handle": handle, "level": "B-B", **params},
                                       timeout=HANG)
            return error.reason

        assert await refusal("sign.pdf", {"pdf": b64(xref_size_pdf())}) == "TOO_LARGE"
        # /S#69ze is /Size in PDF's name syntax: the cap reads names as the parser does.
        assert await refusal("sign.pdf",
                             {"pdf": b64(xref_size_pdf(name=b"/S#69ze"))}) == "TOO_LARGE"
        assert await refusal("sign.pdf", {"pdf": b64(kids_fanout_pdf())}) == "UNSUPPORTED"
        assert await refusal("sign.pdf", {"pdf": b64(page_fanout_pdf())}) == "UNSUPPORTED"
        assert await refusal("sign.xml", {"xml": b64(namespace_xml()),
                                          "mode": "enveloped"}) == "TOO_LARGE"
        assert pin_dialogs(formats_daemon, mark) == []
        # The agent still signs an honest document afterwards, with one dialog.
        signed = await client.call("sign.pdf", {"handle": handle, "level": "B-B",
                                                "pdf": b64(minimal_pdf())}, timeout=HANG)
    assert unb64(signed["pdf"]).startswith(minimal_pdf())
    assert len(pin_dialogs(formats_daemon, mark)) == 1


async def test_other_sites_are_answered_while_hostile_documents_are_processed(
        formats_daemon: Daemon) -> None:
    """Before, the daemon parsed in its event loop: a bystander's agent.info waited for the
    whole parse (here about 26 s for the first document).  Not a timing test: HANG only
    detects an agent that does not answer at all."""
    async with formats_daemon.client(ORIGIN) as attacker, \
            formats_daemon.client(BYSTANDER) as bystander:
        handle = await select_handle(attacker, SIGNER)
        attacks = [attacker.start("sign.pdf", {"handle": handle, "level": "B-B",
                                               "pdf": b64(xref_size_pdf())}),
                   attacker.start("sign.xml", {"handle": handle, "level": "B-B",
                                               "mode": "enveloped",
                                               "xml": b64(namespace_xml())})]
        info = await bystander.call("agent.info", timeout=HANG)
        assert info["protocol"] == 1
        replies = await asyncio.wait_for(asyncio.gather(*attacks), HANG)
    reasons = {reply["error"]["data"]["reason"] for reply in replies}
    # One interaction per origin: the second attack may be BUSY behind the first.
    assert reasons <= {"TOO_LARGE", "BUSY"} and "TOO_LARGE" in reasons, replies


@pytest.fixture(scope="module")
def tight_daemon(formats_bed: FormatsBed) -> Iterator[Daemon]:
    """An agent whose document workers get little memory and whose structural caps are
    off, so the size-bomb PDF reaches pyHanko and exhausts the worker's memory."""
    with bed_daemon(formats_bed, "imza-documents-", revocation="off",
                    config={"documents": {"worker_memory_mb": 256,
                                          "max_xref_entries_per_kib": 10_000_000,
                                          "max_xref_entries_slack": 100_000_000,
                                          "max_pdf_objects": 100_000_000}}) as daemon:
        yield daemon


async def test_worker_over_its_memory_limit_is_too_large_and_the_next_document_signs(
        tight_daemon: Daemon) -> None:
    mark = tight_daemon.transcript_mark()
    async with tight_daemon.client(ORIGIN) as client:
        handle = await select_handle(client, SIGNER)
        error = await client.error("sign.pdf", {"handle": handle, "level": "B-B",
                                                "pdf": b64(xref_size_pdf())}, timeout=HANG)
        # The worker's memory limit stopped it, not a cap ([documents] reached the agent).
        assert error.reason == "TOO_LARGE" and "memory" in error.error["message"], error
        assert pin_dialogs(tight_daemon, mark) == []
        signed = await client.call("sign.pdf", {"handle": handle, "level": "B-B",
                                                "pdf": b64(minimal_pdf())}, timeout=HANG)
    assert unb64(signed["pdf"]).startswith(minimal_pdf())
    assert len(pin_dialogs(tight_daemon, mark)) == 1
