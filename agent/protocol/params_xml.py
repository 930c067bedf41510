"""``sign.xml`` parameters (kept apart: the XML work owns this file).

``placement.parent`` is an XPath 1.0 expression, but only a safe subset of it: a plain
absolute location path of child steps (``/``), the first of which may be a descendant
step (``//``), each a name test (``prefix:local``, ``local`` or ``*``) with at most one
positional predicate ``[n]``.  No functions, no other axes, no other predicates, and one
descendant step at most (from several, each context node would walk its subtree again):
evaluating such a path costs one walk of the document plus one pass over the selected
nodes' children per step, whatever the page writes (``placement_steps`` is the grammar;
the document worker checks it again before it evaluates the path).
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import Field, field_validator, model_validator

from agent.protocol.base import WireModel
from agent.protocol.enums import HashAlgorithm
from agent.protocol.fields import B64Document, Handle, TsaUrl
from agent.protocol.params import TSA_URL_HELP, Display

# Bounds on what a page may send (each checked by tests/test_xades_placement.py).
MAX_PLACEMENT_XPATH = 512        # characters of placement.parent
MAX_PLACEMENT_STEPS = 32         # location steps in placement.parent
MAX_PLACEMENT_NAMESPACES = 16    # prefixes in placement.namespaces
MAX_NAMESPACE_IRI = 1024         # characters of one namespace name
MAX_POSITION = 100_000           # the largest [n] in a step
MAX_REFERENCES = 16              # entries of ``references``
MAX_REFERENCE_ID = 128           # characters of one ``#id``

_NCNAME = r"[A-Za-z_][\w.\-]*"
_STEP = re.compile(rf"(?:(?P<prefix>{_NCNAME}):)?(?P<local>{_NCNAME}|\*)"
                   r"(?:\[(?P<position>[1-9][0-9]{0,5})\])?")
_PREFIX = re.compile(_NCNAME)
_REFERENCE = re.compile(rf"#{_NCNAME}")


def placement_steps(xpath: str) -> list[tuple[str, str | None, str, int | None]]:
    """The steps of a placement path as (axis "/" or "//", prefix, local name or "*",
    position); ValueError when the path is not in the safe subset."""
    if len(xpath) > MAX_PLACEMENT_XPATH:
        raise ValueError(f"must be at most {MAX_PLACEMENT_XPATH} characters")
    if not xpath.startswith("/"):
        raise ValueError("must be an absolute location path (start with /)")
    steps: list[tuple[str, str | None, str, int | None]] = []
    rest = xpath
    while rest:
        axis = "//" if rest.startswith("//") else "/"
        if axis == "//" and steps:
            raise ValueError("only the first step may be a descendant step (//)")
        rest = rest[len(axis):]
        match = _STEP.match(rest)
        if match is None:
            raise ValueError("only child (/) and descendant (//) steps with a name, * and an "
                             "optional [n] are allowed: no functions, axes or other predicates")
        position = match.group("position")
        if position is not None and int(position) > MAX_POSITION:
            raise ValueError(f"a position must be at most {MAX_POSITION}")
        steps.append((axis, match.group("prefix"), match.group("local"),
                      int(position) if position else None))
        rest = rest[match.end():]
        if rest and not rest.startswith("/"):
            raise ValueError("only child (/) and descendant (//) steps with a name, * and an "
                             "optional [n] are allowed: no functions, axes or other predicates")
        if len(steps) > MAX_PLACEMENT_STEPS:
            raise ValueError(f"must have at most {MAX_PLACEMENT_STEPS} steps")
    return steps


def check_namespaces(namespaces: dict[str, str]) -> None:
    """ValueError unless ``namespaces`` is a small map of NCName prefixes to non-empty
    namespace names."""
    if len(namespaces) > MAX_PLACEMENT_NAMESPACES:
        raise ValueError(f"at most {MAX_PLACEMENT_NAMESPACES} prefixes")
    for prefix, iri in namespaces.items():
        if not _PREFIX.fullmatch(prefix) or prefix.lower().startswith("xml"):
            raise ValueError("prefixes must be XML names not starting with 'xml'")
        if not iri or len(iri) > MAX_NAMESPACE_IRI or not iri.isprintable() \
                or any(ch.isspace() for ch in iri):
            raise ValueError(f"namespace names must be 1 to {MAX_NAMESPACE_IRI} printable "
                             "characters without spaces")


def check_references(references: list[str]) -> None:
    if not references:
        raise ValueError("give at least one reference (\"\" is the whole document)")
    if len(references) > MAX_REFERENCES:
        raise ValueError(f"at most {MAX_REFERENCES} references")
    if len(set(references)) != len(references):
        raise ValueError("references must not repeat")
    for reference in references:
        if reference != "" and not (_REFERENCE.fullmatch(reference)
                                    and len(reference) <= MAX_REFERENCE_ID + 1):
            raise ValueError("a reference is \"\" (the whole document) or \"#\" and the Id "
                             f"of an element (an XML name of at most {MAX_REFERENCE_ID} "
                             "characters)")


class XadesLevel(StrEnum):
    B_B = "B-B"
    B_T = "B-T"
    B_LT = "B-LT"
    B_LTA = "B-LTA"


class XmlMode(StrEnum):
    ENVELOPED = "enveloped"
    DETACHED = "detached"


class XmlPlacement(WireModel):
    """Where an enveloped signature goes: the last child of the one element ``parent``
    selects (UBL e-invoices: ``ext:ExtensionContent``)."""

    parent: str = Field(
        ..., min_length=1, max_length=MAX_PLACEMENT_XPATH,
        description="XPath 1.0 location path selecting exactly one element, in a safe "
                    "subset: child (/) steps of names (prefix:local, local, *) with an "
                    "optional position [n], the first of which may be a descendant (//) "
                    "step; no functions, axes or other predicates. A name without a "
                    "prefix has no namespace (XPath 1.0): a default namespace needs a "
                    "prefix in `namespaces`. Example: "
                    "/inv:Invoice/ext:UBLExtensions/ext:UBLExtension/ext:ExtensionContent")
    namespaces: dict[str, str] = Field(
        default_factory=dict,
        description=f"The prefixes `parent` uses (at most {MAX_PLACEMENT_NAMESPACES}): "
                    "prefix → namespace name.")

    @field_validator("parent")
    @classmethod
    def _safe_xpath(cls, value: str) -> str:
        placement_steps(value)
        return value

    @field_validator("namespaces")
    @classmethod
    def _small_namespace_map(cls, value: dict[str, str]) -> dict[str, str]:
        check_namespaces(value)
        return value


class SignXmlParams(WireModel):
    handle: Handle
    xml: B64Document
    level: XadesLevel
    mode: XmlMode
    tsa_url: TsaUrl | None = Field(None, description=TSA_URL_HELP)
    display: Display | None = None
    digest_algorithm: HashAlgorithm | None = Field(
        None, description="The signature's digest; absent: as strong as the key (P-384: "
                          "SHA-384, P-521: SHA-512, else SHA-256). `agent.info` "
                          "`digestAlgorithms` lists the choices.")
    placement: XmlPlacement | None = Field(
        None, description="Enveloped only: the element the signature goes into (as its last "
                          "child); absent: the document element.")
    references: list[str] | None = Field(
        None, max_length=MAX_REFERENCES,
        description="Enveloped only: what the signature covers, each \"\" (the whole "
                    "document, the default) or \"#\" and the Id (or ID) attribute of one "
                    "element. Every same-document reference excludes all ds:Signature "
                    "elements (an XPath transform), so later co-signers do not break it.")

    @field_validator("references")
    @classmethod
    def _plain_references(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            check_references(value)
        return value

    @model_validator(mode="after")
    def _enveloped_only(self) -> SignXmlParams:
        if self.mode is XmlMode.DETACHED and (self.placement is not None
                                              or self.references is not None):
            raise ValueError("placement and references apply to enveloped signatures only")
        return self
