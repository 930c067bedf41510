"""Change the PIN: the current PIN, the new one twice."""

from __future__ import annotations

from agent.i18n import _
from agent.ui.qt.dialogs.pin_form import PinForm


class PinChangeDialog(PinForm):
    kind = "pin_change"
    answer_keys = ("old_b64", "new_b64")

    def title_text(self) -> str:
        return _("Change PIN")

    def headline_text(self) -> str:
        return _("Change the PIN of “{token}”").format(token=self.token)

    def first_label(self) -> str:
        return _("Current PIN")

    def primary_text(self) -> str:
        return _("Change PIN")
