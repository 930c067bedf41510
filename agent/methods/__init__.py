"""Method handlers, one module per method family; each exposes
``register(dispatcher, services)``.

The document methods are registered by name at start and their module imported at
their first call (``_DOCUMENT_METHODS``): their modules import the document stack
(document workers, jobs, network settings, ASiC, previews), which the daemon does not
need to answer its first page (issue 17, bar 6). A page sees the same methods either way
(``agent.info`` lists the dispatcher's names); the conditions below are those of each
module's own ``register`` (tests/test_methods_deferred.py holds them to it).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from agent.formats import available_formats
from agent.protocol.catalog import METHODS
from agent.protocol.dispatch import CallContext, Dispatcher

if TYPE_CHECKING:
    from agent.app.services import Services
    from agent.config import DocumentsConfig
    from agent.protocol.base import WireModel

# method → (module in agent.methods, its handler, the formats it needs: "any" = at least
# one, None = none).
_DOCUMENT_METHODS: dict[str, tuple[str, str, str | None]] = {
    "sign.cms": ("sign_cms", "sign_cms", "cms"),
    "sign.pdf": ("sign_pdf", "sign_pdf", "pdf"),
    "sign.xml": ("sign_xml", "sign_xml", "xml"),
    "sign.batch": ("sign_batch", "sign_batch", "any"),
    "signature.extend": ("signature_extend", "signature_extend", "any"),
    "sign.asic": ("sign_asic", "sign_asic", "asic"),
    "signature.verify": ("signature_verify", "signature_verify", None),
}


def register_all(dispatcher: Dispatcher, services: Services, *,
                 documents: DocumentsConfig | None = None) -> None:
    """Every method; ``documents``: the ``[documents]`` section the document workers get
    before the first document method runs (the daemon's; tests leave the defaults)."""
    from agent.methods import (
        auth_login,
        certificates_list,
        certificates_select,
        document_upload,
        info,
        sign_hash,
        tokens_subscribe,
    )

    for module in (info, certificates_select, certificates_list, sign_hash, auth_login,
                   tokens_subscribe, document_upload):
        module.register(dispatcher, services)
    formats = available_formats()
    loader = _DocumentStack(documents)
    for name, (module_name, function, needs) in _DOCUMENT_METHODS.items():
        if needs is None or (formats if needs == "any" else needs in formats):
            dispatcher.register(name, METHODS[name].params,
                                _deferred(services, loader, module_name, function))


class _DocumentStack:
    """Configures the document workers once, before the first document method's module
    is imported (it imports them)."""

    def __init__(self, documents: DocumentsConfig | None) -> None:
        self.documents = documents

    def ready(self) -> None:
        if self.documents is not None:
            from agent.formats.isolation import configure_document_workers

            configure_document_workers(self.documents)
            self.documents = None


def _deferred(services: Services, stack: _DocumentStack, module_name: str, function: str
              ) -> Callable[[CallContext, Any], Awaitable[WireModel]]:
    """A handler that imports ``agent.methods.<module_name>`` at its first call."""
    handler: Callable[[Services, CallContext, Any], Awaitable[WireModel]] | None = None

    async def call(ctx: CallContext, params: Any) -> WireModel:
        nonlocal handler
        if handler is None:
            stack.ready()
            module = importlib.import_module(f"agent.methods.{module_name}")
            handler = getattr(module, function)
        return await handler(services, ctx, params)

    return call
