"""``sign.batch``: several documents (CMS, XML and PDF items, each with its name) signed
with one confirmation + PIN dialog listing every item, one login and one document
worker; all of them or none.

Each item is signed by its own method (``sign.cms``, ``sign.xml``, ``sign.pdf``) given the
batch's handle — its checks, its preview and its builder — which hands its document to
the batch (``agent.app.documents.sign_in_batch``) instead of signing it alone.

The journal gets one entry for the batch, as for ``sign.hashes``: one consent, one PIN
and one key use are one decision of the user's; the entry counts the items and holds the
SHA-256 of every signed digest together.
"""

from __future__ import annotations

import functools
from typing import Any

from agent.app.documents import BatchEntry, sign_in_batch
from agent.app.services import Services
from agent.app.signing import SigningRequest
from agent.errors import TooLarge, Unsupported
from agent.formats import available_formats
from agent.formats.isolation import document_workers
from agent.methods.common import bound, display_of
from agent.protocol.base import WireModel
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params import SignPdfParams
from agent.protocol.params_batch import (
    BatchResultItem,
    CmsBatchItem,
    PdfBatchItem,
    SignBatchParams,
    SignBatchResult,
    XmlBatchItem,
)
from agent.protocol.params_cms import SignCmsParams
from agent.protocol.params_xml import SignXmlParams

Item = CmsBatchItem | XmlBatchItem | PdfBatchItem


def check_batch_limits(items: list[Item], max_items: int, max_bytes: int) -> None:
    """TOO_LARGE, before any dialog, for a batch over ``max_items`` items or whose
    documents (every item's data, signature, XML or PDF) are over ``max_bytes``
    together."""
    if len(items) > max_items:
        raise TooLarge(f"a batch is at most {max_items} items", limit=max_items)
    total = sum(len(value) for item in items for value in _documents(item))
    if total > max_bytes:
        raise TooLarge(f"a batch's documents are over the limit of {max_bytes} bytes",
                       limit=max_bytes)


def _documents(item: Item) -> list[bytes]:
    return [value for value in item.__dict__.values() if isinstance(value, bytes)]


def _as_params(model: type[WireModel], item: Item, handle: str) -> Any:
    """The item as its method's params: the same values (already checked by the same
    model's validators), with the batch's handle."""
    values = {name: getattr(item, name) for name in model.model_fields}
    values.update(handle=handle, display=None)
    return model.model_construct(**values)


async def _sign_item(app: Services, ctx: CallContext, handle: str, item: Item) -> bytes:
    if isinstance(item, CmsBatchItem):
        from agent.methods.sign_cms import sign_cms

        return (await sign_cms(app, ctx, _as_params(SignCmsParams, item, handle))).cms
    if isinstance(item, XmlBatchItem):
        from agent.methods.sign_xml import sign_xml

        return (await sign_xml(app, ctx, _as_params(SignXmlParams, item, handle))).xml
    from agent.methods.sign_pdf import sign_pdf

    return (await sign_pdf(app, ctx, _as_params(SignPdfParams, item, handle))).pdf


async def sign_batch(app: Services, ctx: CallContext, params: SignBatchParams
                     ) -> SignBatchResult:
    limits = document_workers().limits
    check_batch_limits(params.items, limits.max_batch_items, limits.max_batch_bytes)
    offered = available_formats()
    for index, item in enumerate(params.items):
        if item.kind not in offered:
            raise Unsupported(f"{item.kind} documents cannot be signed here", item=index)
    request = SigningRequest(method="sign.batch", purpose="sign", handle=params.handle,
                             display=display_of(params.display))
    entries = [BatchEntry(item.name, functools.partial(_sign_item, app, ctx, params.handle,
                                                       item))
               for item in params.items]
    signed = await sign_in_batch(app.core, ctx, app.formats_config, request, entries)
    return SignBatchResult(results=[
        BatchResultItem.model_validate({"name": item.name, item.kind: document})
        for item, document in zip(params.items, signed, strict=True)])


def register(dispatcher: Dispatcher, app: Services) -> None:
    if available_formats():
        dispatcher.register("sign.batch", SignBatchParams, bound(app, sign_batch))
