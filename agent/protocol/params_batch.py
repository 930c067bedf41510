"""``sign.batch`` parameters and result (kept apart: the batch work owns this file).

An item is the params of ``sign.cms``, ``sign.xml`` or ``sign.pdf`` without ``handle`` and
``display`` (the batch's), plus ``kind`` and ``name``.  The item models are those params
models themselves, subclassed: every field and check the single-document method has, the
item has too, and an item cannot carry a ``handle`` or ``display`` of its own.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from agent.protocol.base import WireModel
from agent.protocol.fields import B64Bytes, Handle, ShortText
from agent.protocol.params import Display, SignPdfParams
from agent.protocol.params_cms import SignCmsParams
from agent.protocol.params_xml import SignXmlParams

# What the params model accepts whatever the installation (-32602 past it): the limit a
# request meets first is ``[documents] max_batch_items``, as TOO_LARGE.
MAX_BATCH_ITEMS_CEILING = 1000

ITEM_NAME_HELP = ("The item's name as the confirmation dialog lists it, and as the "
                  "result gives it back.")


class CmsBatchItem(SignCmsParams):
    kind: Literal["cms"]
    name: ShortText = Field(description=ITEM_NAME_HELP)
    # The batch's, never an item's: only null is accepted, and the schema leaves them out.
    handle: SkipJsonSchema[None] = None  # type: ignore[assignment]
    display: SkipJsonSchema[None] = None


class XmlBatchItem(SignXmlParams):
    kind: Literal["xml"]
    name: ShortText = Field(description=ITEM_NAME_HELP)
    handle: SkipJsonSchema[None] = None  # type: ignore[assignment]
    display: SkipJsonSchema[None] = None


class PdfBatchItem(SignPdfParams):
    kind: Literal["pdf"]
    name: ShortText = Field(description=ITEM_NAME_HELP)
    handle: SkipJsonSchema[None] = None  # type: ignore[assignment]
    display: SkipJsonSchema[None] = None


BatchItem = Annotated[CmsBatchItem | XmlBatchItem | PdfBatchItem, Field(discriminator="kind")]


class SignBatchParams(WireModel):
    handle: Handle
    items: list[BatchItem] = Field(
        min_length=1, max_length=MAX_BATCH_ITEMS_CEILING,
        description="The documents, each signed as its method (`sign.cms`, `sign.xml`, "
                    "`sign.pdf`) would sign it, with one confirmation and one PIN. At most "
                    "`[documents] max_batch_items` (default 100), their documents together "
                    "at most `[documents] max_batch_bytes` (default 100 MiB).")
    display: Display | None = None


class BatchResultItem(WireModel):
    """One signed item: ``name`` and the member its kind's method answers with."""

    name: str
    cms: B64Bytes | None = Field(None, description="A `cms` item's signature.")
    xml: B64Bytes | None = Field(None, description="An `xml` item's signed document.")
    pdf: B64Bytes | None = Field(None, description="A `pdf` item's signed PDF.")


class SignBatchResult(WireModel):
    results: list[BatchResultItem] = Field(description="In the items' order.")
