"""What ``imza-agent doctor`` says about smart cards: the service state, each card by
name and module, and for a card whose ATR is unknown a report ready to send to support.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from agent.pcsc.atr import AtrDatabase, atr_hex, parse_atr
from agent.platform import current as current_platform

SUPPORT_HINT = ("Send this report to the agent's support so the card can be added; until "
                "then an administrator can map it in the config ([[pcsc.atr]], see "
                "docs/smartcards.md).")


def os_description() -> str:
    return current_platform().description()


def unknown_card_report(reader: str, atr: bytes, modules_tried: Iterable[str],
                        os_name: str | None = None) -> str:
    """Plain text a user can paste into a support ticket: nothing secret in it."""
    tried = list(modules_tried)
    lines = [
        "imza-agent: unknown smart card",
        f"ATR:     {atr_hex(atr)}",
        f"Reader:  {reader}",
        f"OS:      {os_name or os_description()}",
        "Modules tried:" + ("" if tried else " none (no PKCS#11 module is loaded)"),
        *(f"  - {m}" for m in tried),
    ]
    return "\n".join(lines)


def service_state(probe: Mapping[str, Any]) -> str:
    """"running", "not-running" (no pcscd / Windows service), or "unavailable" (no
    pyscard)."""
    if probe.get("available"):
        return "running"
    reason = str(probe.get("reason") or "")
    return "unavailable" if "pyscard" in reason else "not-running"


def card_rows(probe: Mapping[str, Any], db: AtrDatabase,
              modules: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per card in a reader: product and module, or an unknown-card report."""
    loaded = [str(m["path"]) for m in modules if m.get("loaded")]
    rows: list[dict[str, Any]] = []
    for reader in probe.get("readers") or ():
        if not reader.get("cardPresent") or not reader.get("atr"):
            continue
        atr, _ = parse_atr(reader["atr"])
        entry = db.match(atr)
        candidates = [str(p) for p in db.module_paths(entry)]
        installed = [p for p in candidates if p in loaded]
        row: dict[str, Any] = {
            "reader": reader["name"], "atr": atr_hex(atr), "known": entry is not None,
            "product": entry.name if entry else None,
            "source": entry.source if entry else None,
            "modules": installed, "report": None,
        }
        if entry is None:
            row["report"] = unknown_card_report(reader["name"], atr, loaded)
        rows.append(row)
    return rows


def doctor_details(probe: Mapping[str, Any], config: Any,
                   modules: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Keys the doctor adds to its ``pcsc`` section: ``service`` and ``cards``."""
    from agent.pcsc.service import atr_database

    return {"service": service_state(probe),
            "cards": card_rows(probe, atr_database(config), modules)}


def render_lines(pcsc: Mapping[str, Any]) -> list[str]:
    """The doctor's text for the ``cards`` rows (the reader lines come before), in the
    CLI's language; the JSON report keeps the English constants."""
    from agent.i18n import _

    lines: list[str] = []
    if pcsc.get("service") == "not-running":
        lines.append("  " + _("The smart card service is not running (start pcscd, or plug "
                              "in a reader on Windows)"))
    for card in pcsc.get("cards") or ():
        if card["known"]:
            module = ", ".join(card["modules"]) or _("its PKCS#11 module is not installed")
            lines.append("  " + _("Card in “{reader}”: {product} — {module}").format(
                reader=card["reader"], product=card["product"], module=module))
        else:
            lines.append("  " + _("Card in “{reader}”: UNKNOWN card.").format(
                reader=card["reader"]) + " " + _(
                "Send this report to the agent's support so the card can be added; until "
                "then an administrator can map it in the config ([[pcsc.atr]], see "
                "docs/smartcards.md)."))
            lines.extend("    " + line for line in card["report"].splitlines())
    return lines
