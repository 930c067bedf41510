"""Cheap structural caps, checked before a format library does its expensive work.

A few hundred hostile bytes can make pyHanko or signxml spend seconds and gigabytes: a
cross-reference that claims five million entries, a page or form-field tree whose
``/Kids`` point to the same node a thousand times (a DAG that explodes when walked),
XML namespace declarations by the thousand (signxml's time grows with their square
times the elements).  These checks find such documents in time linear in their size
and refuse them with TOO_LARGE (or UNSUPPORTED when the structure is not a tree at
all).  They run inside the document
worker, whose CPU and memory limits remain the backstop for whatever they miss.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from agent.errors import TooLarge, Unsupported


@dataclass(frozen=True)
class StructureCaps:
    """The ``[documents]`` caps on a document's structure (see agent/config.py)."""

    xref_entries_per_kib: int = 512
    xref_entries_slack: int = 4096
    pdf_objects: int = 1_000_000
    page_tree_nodes: int = 100_000
    page_tree_depth: int = 64
    form_fields: int = 10_000
    xml_namespace_declarations: int = 64
    xml_elements: int = 100_000
    container_files: int = 100
    container_entries: int = 1000
    container_unpacked_bytes: int = 256 * 1024 * 1024
    container_ratio: int = 100
    container_name_bytes: int = 255
    verified_signatures: int = 32


# --- PDF: what the raw bytes declare ---------------------------------------------------

# A PDF name token; "#xx" escapes are decoded before comparing (/S#69ze is /Size).
_NAME = re.compile(rb"/([^\x00\t\n\x0c\r ()<>\[\]{}/%]*)")
# Whitespace and comments, possessively: no backtracking on long runs of either.
_GAP = rb"(?:[\x00\t\n\x0c\r ]|%[^\r\n]*+)*+"
_INTEGER = re.compile(_GAP + rb"([+-]?\d++)(?:\.\d*+)?(" + _GAP + rb"\d++" + _GAP + rb"R)?")
_ARRAY_START = re.compile(_GAP + rb"\[")
_ARRAY_INTEGER = re.compile(_GAP + rb"([+-]?\d++)(?:\.\d*+)?")
# Not preceded by a letter ("startxref"): checked after the match, since a look-behind
# first would keep the regex engine from scanning for the literal quickly.
_XREF_KEYWORD = re.compile(rb"xref(?=[\x00\t\n\x0c\r ])")
# One line of a classic cross-reference table: "start count" or "offset gen n|f".
_XREF_LINE = re.compile(rb"[\x00\t\n\x0c\r ]*+(\d++)[ \t]++(\d++)(?:[ \t]++([nf]))?")


def _spelled(word: str) -> bytes:
    """A regex for the name ``word`` as a PDF may write it: each character as itself or as
    a ``#xx`` escape (either case of hex digit)."""
    parts = []
    for char in word:
        hex_digits = "".join(f"[{d.lower()}{d.upper()}]" if d.isalpha() else d
                             for d in f"{ord(char):02x}")
        parts.append(f"(?:{re.escape(char)}|#{hex_digits})")
    return "".join(parts).encode("ascii")


# Only the names the cap reads (/Size, /Index), ending where a name ends. A document of
# binary streams holds a "/" every few hundred bytes: matching every name there and
# decoding it in Python cost seconds for 50 MB; this leaves the scan to the regex engine.
_SIZE_OR_INDEX = re.compile(rb"/(" + _spelled("Size") + rb"|" + _spelled("Index")
                            + rb")(?![^\x00\t\n\x0c\r ()<>\[\]{}/%])")


def _decode_name(raw: bytes) -> bytes:
    if b"#" not in raw:
        return raw
    return re.sub(rb"#([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), raw)


def declared_xref_entries(pdf: bytes) -> int:
    """The largest number of cross-reference entries any part of the file claims: a
    trailer's or xref stream's ``/Size``, the counts of an xref stream's ``/Index``, or
    the subsection counts of a classic xref table."""
    largest = 0
    for match in _SIZE_OR_INDEX.finditer(pdf):
        name = _decode_name(match.group(1))
        if name == b"Size":
            value = _INTEGER.match(pdf, match.end())
            if value is None:
                continue
            if value.group(2):  # an indirect /Size: no honest writer makes one
                raise Unsupported("the PDF's cross-reference size is an indirect object")
            largest = max(largest, int(value.group(1)))
        elif name == b"Index" and _ARRAY_START.match(pdf, match.end()):
            largest = max(largest, _index_total(pdf, _ARRAY_START.match(pdf, match.end())))
    for keyword in _XREF_KEYWORD.finditer(pdf):
        if pdf[keyword.start() - 1:keyword.start()].isalpha():
            continue
        largest = max(largest, _xref_table_total(pdf, keyword.end()))
    return largest


def _index_total(pdf: bytes, start: re.Match[bytes] | None) -> int:
    """Sum of the counts (every second number) of an ``/Index [first count ...]``."""
    assert start is not None
    total, position, numbers = 0, start.end(), 0
    while (number := _ARRAY_INTEGER.match(pdf, position)) is not None:
        if numbers % 2 == 1:
            total += max(0, int(number.group(1)))
        numbers += 1
        position = number.end()
    return total


def _xref_table_total(pdf: bytes, position: int) -> int:
    """Sum of the subsection counts of the classic xref table starting at ``position``."""
    total = 0
    while (line := _XREF_LINE.match(pdf, position)) is not None:
        if line.group(3) is None:
            total += int(line.group(2))
        position = line.end()
    return total


def check_pdf_bytes(pdf: bytes, caps: StructureCaps) -> None:
    """Refuse a PDF whose cross-reference claims more entries than its size can hold
    (the 363-byte file claiming five million) before any parser allocates for them."""
    declared = declared_xref_entries(pdf)
    allowed = min(caps.pdf_objects,
                  caps.xref_entries_per_kib * len(pdf) // 1024 + caps.xref_entries_slack)
    if declared > allowed:
        raise TooLarge(f"the PDF declares {declared} objects, more than its size allows "
                       f"({allowed})")


# --- PDF: trees, walked with a bound -----------------------------------------------------

def _reference(item: Any) -> tuple[int, int] | None:
    reference = getattr(item, "reference", None)
    if reference is None:
        return None
    return int(reference.idnum), int(reference.generation)


def _resolved(item: Any) -> Any:
    get_object = getattr(item, "get_object", None)
    return get_object() if get_object is not None else item


def _walk_tree(top: Any, *, what: str, max_nodes: int, max_depth: int,
               strict: bool = False) -> int:
    """Count the nodes under ``top`` (each a dictionary whose ``/Kids`` lists its
    children) without ever visiting more than ``max_nodes``; a node reached twice makes
    the structure a graph that a library's walk would repeat, exponentially.  ``strict``
    (the page tree): every node a dictionary, ``/Kids`` an array, ``/Count`` a number,
    as pyHanko assumes without checking."""
    seen: set[tuple[int, int]] = set()
    stack: list[tuple[Any, int]] = [(top, 1)]
    count = 0
    while stack:
        item, depth = stack.pop()
        reference = _reference(item)
        if reference is not None:
            if reference in seen:
                raise Unsupported(f"the PDF's {what} reaches one node twice")
            seen.add(reference)
        count += 1
        if count > max_nodes:
            raise TooLarge(f"the PDF's {what} has more than {max_nodes} nodes")
        node = _resolved(item)
        if strict and not isinstance(node, dict):
            raise Unsupported(f"the PDF's {what} has a node that is not a dictionary")
        kids = node.get("/Kids") if isinstance(node, dict) else None
        if strict and not isinstance(_resolved(node.get("/Count", 0)), int):
            raise Unsupported(f"the PDF's {what} has a /Count that is not a number")
        if kids is None:
            continue
        if depth >= max_depth:
            raise TooLarge(f"the PDF's {what} is more than {max_depth} levels deep")
        kids = _resolved(kids)
        if not isinstance(kids, list):
            if strict:
                raise Unsupported(f"the PDF's {what} has /Kids that are not an array")
            continue
        if count + len(stack) + len(kids) > max_nodes:
            raise TooLarge(f"the PDF's {what} has more than {max_nodes} nodes")
        stack.extend((kid, depth + 1) for kid in _raw_items(kids))
    return count


def _raw_items(array: list[Any]) -> list[Any]:
    """The array's items as written: references stay references (pyHanko's
    ``ArrayObject`` resolves on indexing; ``raw_get`` keeps the reference)."""
    raw_get = getattr(array, "raw_get", None)
    if raw_get is None:
        return list(array)
    return [raw_get(i) for i in range(len(array))]


def _raw_value(dictionary: Any, key: str) -> Any:
    raw_get = getattr(dictionary, "raw_get", None)
    if raw_get is None:
        return dictionary.get(key)
    try:
        return raw_get(key)
    except KeyError:
        return None


def check_pdf_trees(root: Any, caps: StructureCaps) -> None:
    """The page tree and the form-field tree of a parsed PDF (its catalog ``root``, a
    pyHanko dictionary), each walked with a bound before pyHanko walks them unbounded."""
    if not isinstance(root, dict):
        raise Unsupported("the PDF's catalog is not a dictionary")
    pages = _raw_value(root, "/Pages")
    if pages is None:
        raise Unsupported("the PDF has no page tree")
    _walk_tree(pages, what="page tree", max_nodes=caps.page_tree_nodes,
               max_depth=caps.page_tree_depth, strict=True)
    form = _resolved(_raw_value(root, "/AcroForm"))
    fields = _resolved(_raw_value(form, "/Fields")) if isinstance(form, dict) else None
    if isinstance(fields, list):
        if len(fields) > caps.form_fields:
            raise TooLarge(f"the PDF has more than {caps.form_fields} form fields")
        total = 0
        seen_tops: set[tuple[int, int]] = set()
        for top in _raw_items(fields):
            reference = _reference(top)
            if reference is not None:
                if reference in seen_tops:
                    raise Unsupported("the PDF's form-field tree reaches one node twice")
                seen_tops.add(reference)
            total += _walk_tree(top, what="form-field tree",
                                max_nodes=caps.form_fields - total,
                                max_depth=caps.page_tree_depth)


# --- XML ----------------------------------------------------------------------------------

def check_xml_structure(document: bytes, caps: StructureCaps) -> None:
    """One streaming pass that counts namespace declarations and elements, with the same
    parser settings as the signing parse (no entities, no network, no huge trees)."""
    _count_xml(document, caps, keep=False)


def parse_xml_counted(document: bytes, caps: StructureCaps) -> Any:
    """The document's root element, parsed as the signing parse does (the same settings;
    comments kept) in the pass that counts it against ``caps``: a document is parsed once,
    not counted and then parsed.  The tree stops growing where a cap is passed, so it is
    never larger than the one a passed check would let the signing parse build."""
    root = _parse_within_caps(document, caps)
    if root is not None:
        return root
    return _count_xml(document, caps, keep=True)


# Encodings in which every ASCII character is its own byte: there a namespace declaration
# is an attribute whose name is the bytes "xmlns" (names cannot come from references).
_ASCII_ENCODINGS = re.compile(r"(?:UTF-?8|US-ASCII|ASCII|ISO-8859-\d+|WINDOWS-125\d)",
                              re.IGNORECASE)


def _parse_within_caps(document: bytes, caps: StructureCaps) -> Any:
    """The document parsed in one call, when its bytes alone keep it within ``caps``;
    None when they do not show it (then it is counted as it is parsed).  Counting is a
    Python step per element and declaration (libxml2's events): for a few-KiB invoice,
    twice the parse itself, and a batch parses a hundred.

    Every element takes at least four bytes (``<a/>``), so a document of at most four
    bytes per allowed element cannot pass the element cap while it is parsed.  Its
    namespace declarations are at most its occurrences of ``xmlns`` when its encoding
    writes ASCII as ASCII and it has no DTD (whose attribute defaults can declare a
    namespace on every element): both known only after the parse, which the element
    bound keeps small, and a document that fails them is parsed again, counted."""
    from lxml import etree

    if len(document) > 4 * caps.xml_elements \
            or document.count(b"xmlns") > caps.xml_namespace_declarations:
        return None
    etree.clear_error_log()  # see xml_syntax_refusal
    try:
        root = etree.fromstring(document, parser=_signing_parser())
    except etree.XMLSyntaxError:
        return None  # the counted parse says why, as it always has
    info = root.getroottree().docinfo
    if info.internalDTD is not None or info.externalDTD is not None \
            or not _ASCII_ENCODINGS.fullmatch(info.encoding or "UTF-8"):
        return None
    return root


def _signing_parser() -> Any:
    """The parser settings of ``_count_xml`` (and the signing parse), comments kept.  A
    new parser each time: an lxml parser keeps state between documents."""
    from lxml import etree

    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           huge_tree=False, remove_blank_text=False)


def _count_xml(document: bytes, caps: StructureCaps, *, keep: bool) -> Any:
    from lxml import etree

    declarations = elements = 0
    etree.clear_error_log()  # see xml_syntax_refusal
    events = etree.iterparse(BytesIO(document), events=("start-ns", "end"),
                             resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False, remove_blank_text=False)
    try:
        for event, node in events:
            if event == "start-ns":
                declarations += 1
                if declarations > caps.xml_namespace_declarations:
                    raise TooLarge("the XML document declares more than "
                                   f"{caps.xml_namespace_declarations} namespaces")
            else:
                elements += 1
                if elements > caps.xml_elements:
                    raise TooLarge(f"the XML document has more than {caps.xml_elements} "
                                   "elements")
                if not keep:
                    node.clear(keep_tail=True)  # the tree itself is not needed here
    except etree.XMLSyntaxError as exc:
        raise xml_syntax_refusal(exc) from exc
    return events.root if keep else None


NAMESPACE_IRI_REFUSED = ("the document's namespace names must be ASCII URIs: XML "
                         "canonicalisation (libxml2) cannot sign a namespace IRI with "
                         "non-ASCII letters")


def xml_syntax_refusal(exc: Exception) -> Unsupported:
    """What to tell a page whose XML libxml2 refused.  A namespace name with non-ASCII
    letters (an IRI) is well-formed XML, but libxml2 takes it for an invalid URI and its
    canonicalisation cannot render it: say that, not "not well-formed" (issue 14, D7)."""
    # lxml's log is per thread, not per parse: it also holds what earlier work in this
    # process logged (a schema check, an XPath, a batch's previous item).  Only the
    # parser's own entries speak for this document.
    errors = [e for e in getattr(exc, "error_log", None) or []
              if getattr(e, "domain_name", "") in ("PARSER", "NAMESPACE")]
    if errors and all(getattr(e, "type_name", "") == "WAR_NS_URI" for e in errors):
        return Unsupported(NAMESPACE_IRI_REFUSED)
    return Unsupported("the document is not well-formed XML")
