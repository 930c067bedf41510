"""Where an enveloped XAdES signature goes, what it covers, and which existing signatures
a change to the document would break.

Co-signers.  The enveloped-signature transform removes only the signature that holds it,
so a second signature added to a document signed that way changes what the first one
covers.  Every same-document reference the agent writes therefore also carries the XPath
transform ``not(ancestor-or-self::ds:Signature)`` (as the EU's DSS does for parallel
signatures): it takes every signature out of what is digested, so signatures added later
leave it intact.  Its output is the same as the enveloped transform's for a document with
one signature, so verifiers that only know the enveloped transform (signxml) still check
a first signature; xmlsec1 and xadesjs run the XPath transform.  Before the document is
changed (a new signature, unsigned properties added to one), ``signatures_broken_by``
finds the signatures that cover the changed place without such an exclusion: the change
is then refused rather than made.
"""

from __future__ import annotations

import hashlib
from typing import Any

from lxml import etree

from agent.errors import Unsupported
from agent.protocol.params_xml import check_namespaces, check_references, placement_steps

DS = "http://www.w3.org/2000/09/xmldsig#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
XPATH_TRANSFORM = "http://www.w3.org/TR/1999/REC-xpath-19991116"
XPATH_FILTER2 = "http://www.w3.org/2002/06/xmldsig-filter2"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
# The expression of our XPath transform, with ``ds`` bound on its element.
NO_SIGNATURES = "not(ancestor-or-self::ds:Signature)"
ID_ATTRIBUTES = ("Id", "ID")
_SIGNATURE = f"{{{DS}}}Signature"


def find_parent(root: etree._Element, placement: dict[str, Any] | None) -> etree._Element:
    """The one element ``placement["parent"]`` selects (the document element without a
    placement); Unsupported when it selects none or several, or one inside a signature."""
    if placement is None:
        if root.tag == _SIGNATURE:
            raise Unsupported("the document is a signature; sign the document it signs")
        return root
    xpath = str(placement.get("parent", ""))
    namespaces = dict(placement.get("namespaces") or {})
    try:
        placement_steps(xpath)  # the safe subset, checked again here: see params_xml
        check_namespaces(namespaces)
    except ValueError as exc:
        raise Unsupported(f"placement.parent: {exc}") from None
    try:
        found = root.getroottree().xpath(xpath, namespaces=namespaces)
    except etree.XPathEvalError as exc:  # an undeclared prefix
        raise Unsupported(f"placement.parent cannot be evaluated: {exc}; declare every "
                          "prefix it uses in placement.namespaces") from None
    assert isinstance(found, list)
    if len(found) != 1:
        raise Unsupported(f"placement.parent selects {len(found)} elements; it must select "
                          "exactly one")
    parent = found[0]
    assert isinstance(parent, etree._Element)
    if parent.tag == _SIGNATURE or any(a.tag == _SIGNATURE for a in parent.iterancestors()):
        raise Unsupported("placement.parent selects an element of a signature")
    return parent


def find_by_id(root: etree._Element, value: str) -> list[etree._Element]:
    found = root.xpath("//*[@Id=$v or @ID=$v]", v=value)
    assert isinstance(found, list)
    return [e for e in found if isinstance(e, etree._Element)]


def resolve_references(root: etree._Element, references: list[str] | None
                       ) -> list[tuple[str, etree._Element | None]]:
    """Each reference and the element it covers (None: the whole document)."""
    references = [""] if references is None else list(references)
    try:
        check_references(references)
    except ValueError as exc:
        raise Unsupported(f"references: {exc}") from None
    resolved: list[tuple[str, etree._Element | None]] = []
    for reference in references:
        if reference == "":
            resolved.append((reference, None))
            continue
        found = find_by_id(root, reference[1:])
        if len(found) != 1:
            raise Unsupported(f"reference {reference} names {len(found)} elements (Id or ID "
                              "attribute); it must name exactly one")
        element = found[0]
        if element.tag == _SIGNATURE or any(a.tag == _SIGNATURE
                                            for a in element.iterancestors()):
            raise Unsupported(f"reference {reference} names an element of a signature")
        resolved.append((reference, element))
    return resolved


def without_signatures(root: etree._Element) -> etree._ElementTree:
    """A copy of the document with every ds:Signature element taken out (their tails,
    text of the parent, stay): what ``not(ancestor-or-self::ds:Signature)`` keeps."""
    copy = etree.ElementTree(etree.fromstring(
        etree.tostring(root, encoding="utf-8"),
        parser=etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)))
    for signature in list(copy.getroot().iter(_SIGNATURE)):
        if any(a.tag == _SIGNATURE for a in signature.iterancestors()):
            continue  # goes with its outer signature
        remove_keeping_tail(signature)
    return copy


def element_path(element: etree._Element) -> list[int]:
    """Where an element is, as child positions from the document element (lxml's
    ``getpath`` names prefixes, which a copy's evaluation may not know)."""
    path = []
    node = element
    while (parent := node.getparent()) is not None:
        path.append(parent.index(node))
        node = parent
    return path[::-1]


def follow(root: etree._Element, path: list[int]) -> etree._Element:
    node = root
    for position in path:
        node = node[position]
    return node


def remove_keeping_tail(element: etree._Element) -> None:
    parent = element.getparent()
    assert parent is not None
    if element.tail:
        previous = element.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + element.tail
        else:
            parent.text = (parent.text or "") + element.tail
    parent.remove(element)


def covered_octets(root: etree._Element, element: etree._Element | None) -> bytes:
    """What a same-document reference with our transforms (enveloped, the XPath that
    excludes signatures, exclusive C14N) digests: the element (None: the document
    element) without signatures, exclusively canonicalised.  The document's own
    element is canonicalised, not the document node: libxml2 (xmlsec1), xadesjs and
    signxml agree on that for the documents a page sends (no top-level processing
    instructions, which are refused)."""
    if next(root.iter(_SIGNATURE), None) is None:
        target = root if element is None else element  # nothing to take out: no copy
    else:
        copy = without_signatures(root)
        target = copy.getroot() if element is None else \
            follow(copy.getroot(), element_path(element))
    octets: bytes = etree.tostring(target, method="c14n", exclusive=True,
                                   with_comments=False)
    return octets


def reference_digest(root: etree._Element, element: etree._Element | None, md: str) -> bytes:
    return hashlib.new(md, covered_octets(root, element)).digest()


def add_reference_transforms(reference: etree._Element) -> None:
    """enveloped-signature, the XPath excluding every signature, exclusive C14N."""
    transforms = etree.SubElement(reference, f"{{{DS}}}Transforms")
    etree.SubElement(transforms, f"{{{DS}}}Transform", Algorithm=ENVELOPED)
    xpath = etree.SubElement(etree.SubElement(transforms, f"{{{DS}}}Transform",
                                              Algorithm=XPATH_TRANSFORM),
                             f"{{{DS}}}XPath", nsmap={"ds": DS})
    xpath.text = NO_SIGNATURES
    etree.SubElement(transforms, f"{{{DS}}}Transform", Algorithm=EXC_C14N)


def _excludes_signatures(transforms: list[etree._Element]) -> bool:
    """Whether a reference's transforms take every ds:Signature out of what it covers:
    our XPath transform, or an XPath Filter 2.0 subtracting them (known forms only)."""
    for transform in transforms:
        algorithm = transform.get("Algorithm")
        for child in transform:
            text = "".join((child.text or "").split())
            if algorithm == XPATH_TRANSFORM and child.tag == f"{{{DS}}}XPath":
                for prefix, iri in child.nsmap.items():
                    if iri == DS and prefix and text == \
                            f"not(ancestor-or-self::{prefix}:Signature)":
                        return True
            if algorithm == XPATH_FILTER2 and child.get("Filter") == "subtract":
                for prefix, iri in child.nsmap.items():
                    if iri == DS and prefix and text in (f"//{prefix}:Signature",
                                                         f"/descendant::{prefix}:Signature"):
                        return True
    return False


excludes_signatures = _excludes_signatures  # public: agent/verify/xml_verify.py


def id_index(root: etree._Element) -> dict[str, list[etree._Element]]:
    """Every element by its Id and ID attributes, in one pass (one lookup per reference
    then, however many signatures and references a document has)."""
    index: dict[str, list[etree._Element]] = {}
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        for name in ID_ATTRIBUTES:
            value = element.get(name)
            if value is not None:
                index.setdefault(value, []).append(element)
    return index


def signatures_broken_by(root: etree._Element, changed: etree._Element,
                         own: etree._Element | None = None) -> list[str]:
    """The existing signatures (by Id, or position) a change at or under ``changed``
    would break: those with a same-document reference covering ``changed`` that does not
    exclude every signature.  ``own``: the signature being changed itself (its enveloped
    transform already takes it out of what it covers)."""
    broken: list[str] = []
    if next(root.getroottree().iter(_SIGNATURE), None) is None:
        return broken  # no signature to break (most documents: skip the Id index)
    place = {changed, *changed.iterancestors()}
    ids = id_index(root)
    for index, signature in enumerate(root.getroottree().iter(_SIGNATURE), start=1):
        if signature is own or signature in place:
            continue  # a signature's unsigned properties are outside its SignedInfo
        signed_info = signature.find(f"{{{DS}}}SignedInfo")
        for reference in (signed_info if signed_info is not None else []):
            if reference.tag != f"{{{DS}}}Reference":
                continue
            uri = reference.get("URI")
            transforms = reference.findall(f"{{{DS}}}Transforms/{{{DS}}}Transform")
            if uri is not None and uri != "" and not uri.startswith("#"):
                continue  # another file
            if uri in ("", "#xpointer(/)") or uri is None:
                covers = True
            else:
                name = uri[1:]
                if name.startswith("xpointer(id(") and name.endswith("))"):
                    name = name[len("xpointer(id("):-2].strip("'\"")
                covers = any(e in place for e in ids.get(name, ()))
            if covers and not _excludes_signatures(transforms):
                broken.append(signature.get("Id") or f"#{index}")
                break
    return broken


def refuse_if_breaking(root: etree._Element, changed: etree._Element,
                       own: etree._Element | None = None) -> None:
    broken = signatures_broken_by(root, changed, own)
    if broken:
        raise Unsupported(
            "the document has a signature that covers this place without excluding later "
            f"signatures ({', '.join(broken[:4])}): adding to it would break that signature")
