"""``document.upload``: announce a document sent as binary WebSocket frames.

The WebSocket transport answers it itself, before the connection's next frame is read
(agent/transport/session.py), because the upload lives on the connection and its bytes
may follow the request at once. A request reaches this handler only where that did not
happen: on the browser extension's transport, which carries text only, or when the
frame's ``method`` was not among its first 512 characters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.errors import Unsupported
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params_upload import DocumentUploadParams, DocumentUploadResult

if TYPE_CHECKING:
    from agent.app.services import Services


async def document_upload(ctx: CallContext, params: DocumentUploadParams
                          ) -> DocumentUploadResult:
    if ctx.transport == "extension":
        raise Unsupported("uploads are for WebSocket connections; on this transport send "
                          "the document as base64 in the request")
    raise Unsupported('write "method" before "params" in a document.upload request')


def register(dispatcher: Dispatcher, app: Services) -> None:
    dispatcher.register("document.upload", DocumentUploadParams, document_upload)
