"""The ``args`` of each dialog kind (docs/ui-process.md), from the dialog port's types.

Field names are the dataclasses' own (snake_case), enums by value, bytes as base64: the
UI process reads exactly what the core decided to show, nothing it has to work out.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from agent.app.dialogs import (
    CertificateChoice,
    ConsentRequest,
    ExtendRequest,
    PinRequest,
    Preview,
)
from agent.errors import PinStatus
from agent.ui.ui_wire import b64

if TYPE_CHECKING:
    from agent.keystores.pkcs11.pin_management import PinState
    from agent.pinmgmt.use_case import ManagedToken


def consent(request: ConsentRequest) -> dict[str, Any]:
    return {"origin": request.origin, "permissions": list(request.permissions)}


def certificate(choice: CertificateChoice) -> dict[str, Any]:
    return dataclasses.asdict(choice)


def pick(origin: str, purpose: str, choices: list[CertificateChoice],
         filtered: bool) -> dict[str, Any]:
    return {"origin": origin, "purpose": purpose,
            "choices": [certificate(c) for c in choices], "filtered": filtered}


def pin_status(status: PinStatus | None) -> dict[str, Any] | None:
    return None if status is None else dataclasses.asdict(status)


def preview(item: Preview) -> dict[str, Any]:
    return {"kind": item.kind.value, "size": item.size, "sha256": item.sha256,
            "name": item.name, "data_b64": b64(item.data)}


def pin(request: PinRequest) -> dict[str, Any]:
    return {"origin": request.origin, "action": request.action,
            "certificate": certificate(request.certificate),
            "pin": pin_status(request.pin), "count": request.count,
            "display_text": request.display_text, "document_name": request.document_name,
            "retry": pin_status(request.retry), "password": request.password,
            "signed_fields": [[name.value, value] for name, value in request.signed_fields],
            "previews": [preview(p) for p in request.previews]}


def extend(request: ExtendRequest) -> dict[str, Any]:
    """``extend``: the confirmation of ``signature.extend`` (no certificate, no PIN)."""
    return {"origin": request.origin, "format": request.format, "level": request.level,
            "signatures": request.signatures,
            "document_name": request.document_name, "display_text": request.display_text,
            "previews": [preview(p) for p in request.previews]}


def pin_locked(origin: str, token_label: str, unlock: str) -> dict[str, Any]:
    return {"origin": origin, "token_label": token_label, "unlock": unlock}


def pin_form(item: ManagedToken, state: PinState, *, unblock: bool,
             error: str | None) -> dict[str, Any]:
    """``pin_change`` / ``pin_unblock``: the token, its length rule, what its flags say
    about the tries (``notice``) and why the last try failed (``error``)."""
    from agent.pinmgmt.texts import pin_notes, puk_notes

    notes = puk_notes(state) if unblock else pin_notes(state)
    token = item.token
    args: dict[str, Any] = {
        "token": {"label": token.label, "serial": token.serial or None, "reader": None},
        "min_len": state.pin.min_length, "max_len": state.pin.max_length,
        "notice": " ".join(notes) or None, "error": error}
    if unblock:
        args["final_try"] = state.puk_final_try
    return args


def message(title: str, text: str, *, error: bool) -> dict[str, Any]:
    return {"title": title, "text": text, "level": "error" if error else "info"}
