"""The certificate as the agent (never the page) describes it: holder, issuer, serial,
validity, token and reader.  Shared by the picker and the PIN dialog."""

from __future__ import annotations

from typing import Any

from agent.i18n import N_, _

UNUSABLE_TEXT = {
    "expired": N_("expired"),
    "not_yet_valid": N_("not yet valid"),
}


def _text(choice: dict[str, Any], key: str) -> str:
    value = choice.get(key)
    return "" if value is None else str(value)


def token_text(choice: dict[str, Any]) -> str:
    token = _text(choice, "token_label")
    return token + (f" ({_('demo')})" if choice.get("demo") else "")


def certificate_facts(choice: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows of (label, value); a row whose value is unknown is left out, never "()"."""
    rows = [(_("Holder"), _text(choice, "holder")), (_("Issuer"), _text(choice, "issuer"))]
    if _text(choice, "serial_hex"):
        rows.append((_("Serial number"), _text(choice, "serial_hex")))
    rows.append((_("Valid"), f"{_text(choice, 'not_before')} – {_text(choice, 'not_after')}"))
    rows.append((_("Token"), token_text(choice)))
    if _text(choice, "reader"):
        rows.append((_("Reader"), _text(choice, "reader")))
    return rows


def unusable_text(choice: dict[str, Any]) -> str | None:
    if choice.get("usable", True):
        return None
    reason = UNUSABLE_TEXT.get(_text(choice, "unusable_reason"), N_("not usable"))
    return _(reason)
