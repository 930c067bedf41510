"""Unblock the PIN with the PUK, and choose a new PIN.  The last PUK try is never spent
by a key press alone: it takes a checked box too."""

from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QPushButton

from agent.i18n import _
from agent.ui.qt import a11y
from agent.ui.qt.dialogs.base import label
from agent.ui.qt.dialogs.pin_form import PinForm


class PinUnblockDialog(PinForm):
    kind = "pin_unblock"
    answer_keys = ("puk_b64", "new_b64")
    confirm: QCheckBox | None = None

    def title_text(self) -> str:
        return _("Unblock PIN")

    def headline_text(self) -> str:
        return _("Unblock the PIN of “{token}”").format(token=self.token)

    def first_label(self) -> str:
        return _("PUK")

    def primary_text(self) -> str:
        return _("Unblock")

    def notes(self) -> None:
        self.body.addWidget(label(_(
            "Enter the PUK (or the security officer PIN) that came with your token, and "
            "choose a new PIN. Every wrong PUK uses up a try.")))
        last = _("LAST PUK TRY: if this PUK is wrong, the PUK is blocked for good and "
                 "only your certificate issuer can help.")
        if self.args.get("final_try") and last not in str(self.args.get("notice") or ""):
            self.body.addWidget(label(last, "danger"))

    def extra(self) -> None:
        if not self.args.get("final_try"):
            return
        box = self.confirm = QCheckBox(_("I know this is the last PUK try."))
        a11y.name(box, box.text())
        box.toggled.connect(lambda _on: self.refresh())
        self.body.addWidget(box)

    def enabled(self, button: QPushButton) -> bool:
        if button is getattr(self, "primary", None) and self.confirm is not None \
                and not self.confirm.isChecked():
            return False
        return super().enabled(button)
