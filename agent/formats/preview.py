"""What the trusted window can show of a document the page sends: what kind of content it
is (PDF, text, other bytes), and for XML the indented text of what a XAdES signature
covers.

The XML is parsed again for its preview, in a process of its own
(``python -m agent.formats.preview``) under the document workers' limits and structural
caps (``agent.formats.isolation``): the daemon never parses a page's XML, and a document
that would take too long or too much memory costs only its preview (the dialog then
shows its size and SHA-256), never the daemon's event loop.  The parser settings are the
signing parse's: no entities, no DTD, no network, no huge trees.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import agent
from agent.formats.document_caps import StructureCaps

if TYPE_CHECKING:  # a preview process has no use for the document workers' machinery
    from agent.formats.isolation import WorkerLimits

log = logging.getLogger(__name__)

Sniffed = Literal["pdf", "text", "binary"]

PDF_MAGIC = b"%PDF-"
# A document too large to show is still named for its kind: judged by its first bytes.
SNIFF_PREFIX = 64 * 1024
# "Mostly printable": this share of characters may be controls or invisible formatting.
MAX_INVISIBLE_SHARE = 0.02
# C0/C1 controls other than tab, line breaks and form feed, and the invisible format
# characters that reorder or hide text (bidi controls, zero-width ones, BOM).
_INVISIBLE = re.compile(
    "[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\ufeff\ufff9-\ufffb]")
DS = "http://www.w3.org/2000/09/xmldsig#"
_MODULE = "agent.formats.preview"
EXIT_REFUSED = 1


def sniff(data: bytes, *, whole: bool = True) -> Sniffed:
    """``pdf`` when it starts as a PDF does; ``text`` when it is UTF-8 with no NUL and
    mostly printable characters; else ``binary``.  ``whole=False`` judges a document
    that will not be shown by its first ``SNIFF_PREFIX`` bytes."""
    if data.startswith(PDF_MAGIC):
        return "pdf"
    sample = data if whole else data[:SNIFF_PREFIX]
    try:
        # Not final for a prefix: a character cut at its end is not an error.
        text = codecs.getincrementaldecoder("utf-8")().decode(
            sample, final=whole or len(sample) == len(data))
    except UnicodeDecodeError:
        return "binary"
    if "\x00" in text:
        return "binary"
    allowed = len(text) * MAX_INVISIBLE_SHARE
    # A byte-order mark in front is how some editors write UTF-8, not hidden text.
    invisible = -1 if text.startswith("\ufeff") else 0
    for _ in _INVISIBLE.finditer(text):  # no copy of a large text; stops when it is clear
        invisible += 1
        if invisible > allowed:
            return "binary"
    return "text"


# --- XML: in the preview process --------------------------------------------------------

def indented_xml(document: bytes, limit: int, caps: StructureCaps, *,
                 enveloped: bool) -> bytes | None:
    """UTF-8 text of what the signature covers, indented; the unindented text when the
    indentation would pass ``limit`` bytes; None when even that does not fit.

    Comments are left out: the signature's canonical form (C14N without comments) does
    not cover them, so a comment must not look like signed text.  For an enveloped
    signature signxml puts the signature where a ``ds:Signature Id="placeholder"``
    stands, which is therefore not covered either."""
    from lxml import etree

    from agent.formats.document_caps import check_xml_structure

    check_xml_structure(document, caps)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False, remove_blank_text=False, remove_comments=True)
    root = etree.fromstring(document, parser=parser)
    return _indented(root.getroottree(), limit, enveloped=enveloped)


def indented_tree(parsed: Any, limit: int, *, enveloped: bool) -> bytes | None:
    """``indented_xml`` of a document the caller parsed with comments
    (``parse_xml_counted``, a batch's worker): the same text, made from a copy of its tree
    with the comments taken out, not from a second parse.  ``parsed`` is not changed.
    The text as it is (the fallback) is serialised only when the indented one is over
    ``limit``: a batch's invoices never are, and it was a third of the preview's time."""
    if parsed.getroottree().docinfo.doctype:  # the signing parse refuses these too
        return None
    indented = _indented_text(_shown_copy(parsed, enveloped=enveloped))
    if len(indented) <= limit:
        return indented
    plain: bytes = _plain_text(_shown_copy(parsed, enveloped=enveloped))
    return plain if len(plain) <= limit else None


def _shown_copy(parsed: Any, *, enveloped: bool) -> Any:
    """A copy of the parsed document's tree as the preview shows it: no comments (as
    ``remove_comments``), no signature placeholder."""
    import copy

    from lxml import etree

    tree = copy.deepcopy(parsed.getroottree())
    etree.strip_elements(tree, etree.Comment, with_tail=False)  # as remove_comments
    if enveloped:
        _drop_placeholder(tree.getroot())
    return tree


def _drop_placeholder(root: Any) -> None:
    for placeholder in root.iter(f"{{{DS}}}Signature"):
        if placeholder.get("Id") == "placeholder":
            parent = placeholder.getparent()
            if parent is not None:
                parent.remove(placeholder)
            break


def _plain_text(tree: Any) -> bytes:
    from lxml import etree

    text: bytes = etree.tostring(tree, encoding="utf-8")
    return text


def _indented_text(tree: Any) -> bytes:
    """The tree indented (in place) and serialised."""
    from lxml import etree

    etree.indent(tree, space="  ")
    text: bytes = etree.tostring(tree, encoding="utf-8")
    return text


def _indented(tree: Any, limit: int, *, enveloped: bool) -> bytes | None:
    root = tree.getroot()
    if tree.docinfo.doctype:  # the signing parse refuses these too
        return None
    if enveloped:
        _drop_placeholder(root)
    plain = _plain_text(tree)
    indented = _indented_text(tree)
    for text in (indented, plain):
        if len(text) <= limit:
            return text
    return None


def main(argv: list[str]) -> int:
    """``python -m agent.formats.preview CPU_S MEMORY_MB LIMIT NAMESPACES ELEMENTS MODE``:
    the document on stdin, its preview on stdout; exit 1 when there is none."""
    from agent.formats.worker import apply_limits

    cpu, memory, limit, namespaces, elements = (int(a) for a in argv[1:6])
    apply_limits(cpu, memory)  # before a byte of the document is read
    document = sys.stdin.buffer.read()
    caps = StructureCaps(xml_namespace_declarations=namespaces, xml_elements=elements)
    try:
        text = indented_xml(document, limit, caps, enveloped=argv[6] == "enveloped")
    except Exception:  # not well-formed, over the caps, out of memory: no preview
        return EXIT_REFUSED
    if text is None:
        return EXIT_REFUSED
    sys.stdout.buffer.write(text)
    sys.stdout.buffer.flush()
    return 0


# --- XML: the daemon's side ----------------------------------------------------------------

def _env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(agent.__file__).resolve().parent.parent)  # this very package
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env["MALLOC_ARENA_MAX"] = "2"  # as for document workers: RLIMIT_AS counts arenas
    return env


async def _read_capped(stream: asyncio.StreamReader, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    total = 0
    while chunk := await stream.read(1 << 16):
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def indented_xml_isolated(document: bytes, limit: int, limits: WorkerLimits, *,
                      enveloped: bool) -> bytes | None:
    """``indented_xml`` in a preview process; None when it gives none in time."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", _MODULE, str(limits.cpu_seconds), str(limits.memory_mb),
        str(limit), str(limits.caps.xml_namespace_declarations),
        str(limits.caps.xml_elements), "enveloped" if enveloped else "detached",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, env=_env())
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    async def feed() -> None:
        with contextlib.suppress(ConnectionError):
            stdin.write(document)
            await stdin.drain()
            stdin.close()

    async def run() -> bytes | None:
        _, text = await asyncio.gather(feed(), _read_capped(stdout, limit))
        if text is None:  # more than it may say: not a preview (killed below)
            return None
        return text if await proc.wait() == 0 else None

    try:
        return await asyncio.wait_for(run(), limits.prepare_timeout)
    except TimeoutError:
        log.warning("an XML preview took over %.0f s; shown without its text",
                    limits.prepare_timeout)
        return None
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
