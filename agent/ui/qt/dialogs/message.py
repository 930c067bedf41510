"""A message of the agent's own (the result of a PIN change, why nothing can be done):
its title, its text, and Close."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QWidget

from agent.i18n import _
from agent.ui.qt.dialogs.base import Dialog, label
from agent.ui.qt.dialogs.site import SiteName


class MessageDialog(Dialog):
    kind = "message"

    def site_of(self, args: dict[str, Any]) -> SiteName | None:
        return None

    def title_text(self) -> str:
        return str(self.args.get("title") or _("Message"))

    def headline_text(self) -> str:
        return self.title_text()

    def build(self) -> QWidget:
        error = self.args.get("level") == "error"
        self.body.addWidget(label(str(self.args.get("text") or ""), "danger" if error else ""))
        return self.add_button(_("Close"), lambda: self.finish(None))

    def cancel(self) -> None:
        self.finish(None)
