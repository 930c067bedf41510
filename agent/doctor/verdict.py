"""The one verdict on the agent's health: what ``doctor`` prints under "Problems" and
what the tray's colour and tooltip say, from the same report keys.

Two levels of trouble: a *problem* keeps pages from being served as configured (a store
or module that failed, a port another program holds) and fails the doctor's exit code;
*attention* is worth a look but the agent works (the smart card service is not running,
a browser does not trust the agent's certificate yet).  The report may be the doctor's
full one or the subset the running daemon builds (agent/ui/tray_model.py): every key is
optional.
"""

from __future__ import annotations

from typing import Any, Literal

from agent.doctor.transports import _shown_reason as shown_reason
from agent.i18n import _

Level = Literal["ok", "attention", "problem"]


def findings(report: dict[str, Any]) -> list[tuple[Level, str]]:
    """Each thing wrong, worst kind first, as a sentence in the current language."""
    problems: list[str] = []
    reported = report.get("problems") or []
    for row in reported:
        problems.append(f"{row['source']}: {row['reason']}: {row['message']}")
    named = {str(row.get("source")) for row in reported}
    for module in report.get("modules") or []:
        if module.get("present") and not module.get("loaded") and module["path"] not in named:
            problems.append(_("PKCS#11 module {path} did not load: {error}").format(
                path=module["path"], error=module.get("error") or "?"))
    for transport, why in sorted((report.get("transports") or {}).get(
            "unavailable", {}).items()):
        problems.append(_("{reason}; pages cannot reach the agent over {transport}").format(
            reason=shown_reason(why), transport=transport))
    attention: list[str] = []
    if (report.get("pcsc") or {}).get("service") == "not-running":
        attention.append(_("The smart card service is not running"))
    trust = report.get("trust") or {}
    if trust.get("wssEnabled") and not trust.get("optedOut") and any(
            row.get("trusted") is False and not row.get("error")
            for row in trust.get("databases") or []):
        attention.append(_("Browsers do not trust the agent's certificate"))
    return ([("problem", text) for text in problems]
            + [("attention", text) for text in attention])


def verdict(report: dict[str, Any]) -> dict[str, Any]:
    """``{"level": "ok"|"attention"|"problem", "problems": [sentence, ...]}``."""
    found = findings(report)
    levels = {level for level, _text in found}
    level: Level = ("problem" if "problem" in levels else
                    "attention" if "attention" in levels else "ok")
    return {"level": level, "problems": [text for _level, text in found]}
