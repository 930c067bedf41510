"""Which certificate: one radio button per certificate, the unusable ones greyed.

Shown even when there is nothing to choose, so a page learns nothing about the
certificates without the person seeing it; then it can only be closed.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QButtonGroup, QRadioButton, QWidget

from agent.i18n import _
from agent.ui.qt import a11y
from agent.ui.qt.dialogs.base import Dialog, label
from agent.ui.qt.dialogs.certificate import certificate_facts, unusable_text


class PickerDialog(Dialog):
    kind = "pick"

    def title_text(self) -> str:
        return _("Choose a certificate")

    def headline_text(self) -> str:
        if self.args.get("purpose") == "auth":
            return _("This website asks you to choose a certificate to log in.")
        return _("This website asks you to choose a certificate for signing.")

    def choices(self) -> list[dict[str, Any]]:
        return [c for c in self.args.get("choices", []) if isinstance(c, dict)]

    def build(self) -> QWidget:
        self.group = QButtonGroup(self)
        self.group.setExclusive(True)
        self.rows: list[QRadioButton] = []
        choices = self.choices()
        if not choices:
            self.body.addWidget(label(
                _("No certificate matches what this site asks for.") if self.args.get(
                    "filtered") else _("No certificate found. Insert your token or card."),
                "headline"))
            return self.add_button(_("Close"), self.cancel)
        first: QRadioButton | None = None
        for index, choice in enumerate(choices):
            facts = certificate_facts(choice)
            holder = facts[0][1]
            details = [f"{key}: {value}" for key, value in facts[1:]]
            why = unusable_text(choice)
            if why:
                details.append(why)
            row = QRadioButton("\n".join([holder, *details]))
            a11y.name(row, holder + (f" — {why}" if why else ""), "; ".join(details))
            row.setEnabled(why is None)
            row.toggled.connect(lambda _on: self.refresh())
            self.group.addButton(row, index)
            self.body.addWidget(row)
            self.rows.append(row)
            if why is None and first is None:
                first = row
        if first is not None:
            first.setChecked(True)
        self.choose = self.add_button(_("Choose"), self._choose)
        cancel = self.add_button(_("Cancel"), self.cancel)
        return first or cancel

    def enabled(self, button: Any) -> bool:
        if button is not getattr(self, "choose", None):
            return True
        index = self.group.checkedId()
        choices = self.choices()
        return 0 <= index < len(choices) and bool(choices[index].get("usable", True))

    def _choose(self) -> None:
        if self.enabled(self.choose):
            self.finish(self.group.checkedId())
