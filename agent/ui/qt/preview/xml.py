"""XML as indented text.  Parsed without entities, DTDs or the network: the bytes are the
page's, and the preview must show what is there, not what a reference would fetch."""

from __future__ import annotations

from agent.ui.qt.preview.text import shown_text


def indented(data: bytes) -> str:
    """The document re-indented; as it came when it does not parse.

    lxml is imported here, not with the module: it comes with the ``formats`` extra, and
    an install without it (which signs no XML, so never sends an XML preview) must still
    draw every other dialog rather than fail to start the UI process."""
    try:
        from lxml import etree
    except ImportError:
        return shown_text(data)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False, remove_blank_text=True, remove_comments=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        return shown_text(data)
    etree.indent(root, space="  ")
    out: bytes = etree.tostring(root, encoding="utf-8", pretty_print=True)
    return shown_text(out)
