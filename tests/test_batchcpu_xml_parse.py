"""The one-call parse of ``parse_xml_counted`` (a document whose bytes keep it within the
caps) gives the tree the counting parse gives, and every document the counting parse
refuses is still refused, with the same error."""

from __future__ import annotations

import pytest
from lxml import etree

from agent.errors import TooLarge, Unsupported
from agent.formats.document_caps import StructureCaps, _count_xml, parse_xml_counted
from agent.formats.preview import indented_tree, indented_xml

INVOICE = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2" '
    'xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">'
    "<!-- issued by the portal --><cbc:ID>EFT2026000000001</cbc:ID>"
    "<cbc:Note>çay, şeker, ğ, ı, İ</cbc:Note>\n  <cbc:Amount>5</cbc:Amount></Invoice>")

SAME_TREE = [
    INVOICE.encode(),
    INVOICE.replace("UTF-8", "UTF-16").encode("utf-16"),  # no ASCII bytes: counted
    INVOICE.replace("UTF-8", "ISO-8859-9").encode("iso-8859-9"),
    b"<r><![CDATA[<a/>]]><?pi x?><a b='1'/></r>",
    b'<!DOCTYPE r [<!ATTLIST a xmlns:x CDATA "urn:u">]><r><a/></r>',  # a DTD: counted
]


def _counted(document: bytes, caps: StructureCaps) -> etree._Element:
    root: etree._Element = _count_xml(document, caps, keep=True)
    return root


@pytest.mark.parametrize("document", SAME_TREE)
def test_the_tree_is_the_counting_parse_s(document: bytes) -> None:
    caps = StructureCaps()
    fast, counted = parse_xml_counted(document, caps), _counted(document, caps)
    assert etree.tostring(fast.getroottree()) == etree.tostring(counted.getroottree())
    assert fast.getroottree().docinfo.encoding == counted.getroottree().docinfo.encoding
    # The batch's preview of that tree is the single document's preview of the bytes.
    if not fast.getroottree().docinfo.doctype:
        assert indented_tree(fast, 1 << 20, enveloped=True) == \
            indented_xml(document, 1 << 20, caps, enveloped=True)


def _refusal(document: bytes, caps: StructureCaps) -> str:
    with pytest.raises((TooLarge, Unsupported)) as counted:
        _counted(document, caps)
    with pytest.raises(type(counted.value)) as fast:
        parse_xml_counted(document, caps)
    assert str(fast.value) == str(counted.value)
    return str(fast.value)


def test_namespace_declarations_over_the_cap_are_refused() -> None:
    declared = "".join(f' xmlns:p{i}="urn:p{i}"' for i in range(65))
    assert "64 namespaces" in _refusal(f"<r{declared}/>".encode(), StructureCaps())


def test_namespaces_declared_by_a_dtd_s_defaults_are_counted() -> None:
    # One "xmlns" in the bytes, a declaration on each of 70 elements: the bytes do not
    # bound the count, so the document is counted as it is parsed.
    document = (b'<!DOCTYPE r [<!ATTLIST a xmlns:x CDATA "urn:u">]><r>' + b"<a/>" * 70
                + b"</r>")
    assert "64 namespaces" in _refusal(document, StructureCaps())


def test_elements_over_the_cap_are_refused() -> None:
    caps = StructureCaps(xml_elements=50)
    document = b"<r>" + b"<a/>" * 60 + b"</r>"
    assert len(document) > 4 * caps.xml_elements  # not parsed in one call
    assert "50 elements" in _refusal(document, caps)
    # Under the byte bound a document cannot hold more elements than the cap.
    small = b"<r>" + b"<a/>" * 48 + b"</r>"
    assert len(small) <= 4 * caps.xml_elements
    assert len(list(parse_xml_counted(small, caps).iter())) == 49


def test_malformed_documents_get_the_counting_parse_s_error() -> None:
    assert "not well-formed" in _refusal(b"<r><a></r>", StructureCaps())
    # A non-ASCII namespace name: libxml2's warning, the refusal that names it.
    assert "namespace" in _refusal('<r xmlns="urn:ə"/>'.encode(), StructureCaps())
