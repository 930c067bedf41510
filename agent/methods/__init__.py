"""Method handlers, one module per method family; each exposes
``register(dispatcher, services)``."""

from __future__ import annotations

from agent.app.services import Services
from agent.protocol.dispatch import Dispatcher


def register_all(dispatcher: Dispatcher, services: Services) -> None:
    from agent.methods import (
        auth_login,
        certificates_list,
        certificates_select,
        info,
        sign_asic,
        sign_batch,
        sign_cms,
        sign_hash,
        sign_pdf,
        sign_xml,
        signature_extend,
        signature_verify,
        tokens_subscribe,
    )

    for module in (info, certificates_select, certificates_list, sign_hash, auth_login,
                   tokens_subscribe, sign_cms, sign_pdf, sign_xml, sign_batch, signature_extend,
                   sign_asic, signature_verify):
        module.register(dispatcher, services)
