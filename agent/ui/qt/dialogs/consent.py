"""May this site use the agent at all: allow once, always, deny, or block it for good."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QWidget

from agent.i18n import N_, _
from agent.ui.qt.dialogs.base import Dialog, label

PERMISSION_TEXT = {
    "select": N_("see your certificates and let you choose one"),
    "sign": N_("ask you to sign with your certificate"),
    "auth": N_("ask you to log in with your certificate"),
    "tokens": N_("see when a token is inserted or removed"),
    "list": N_("list your certificates without asking"),
}


class ConsentDialog(Dialog):
    kind = "consent"

    def title_text(self) -> str:
        return _("Permission")

    def headline_text(self) -> str:
        return _("This website asks to use your electronic signature.")

    def build(self) -> QWidget:
        self.body.addWidget(label(_("If you allow it, the website may:")))
        for permission in self.args.get("permissions", []):
            text = PERMISSION_TEXT.get(str(permission))
            self.body.addWidget(label("•  " + (_(text) if text else str(permission)),
                                      name=_(text) if text else str(permission)))
        self.body.addWidget(label(_("Nothing is signed without your PIN."), "small"))
        self.add_button(_("Allow once"), lambda: self.finish("once"))
        self.add_button(_("Always allow"), lambda: self.finish("always"))
        deny = self.add_button(_("Deny"), lambda: self.finish("deny"))
        # Blocking lasts: on its own line under the answers, after them in the Tab
        # order, and never where the focus starts.
        row = QHBoxLayout()
        self.block = self.add_button(_("Block this site"), lambda: self.finish("block"), row)
        host = self.site.unicode if self.site else ""
        row.addWidget(label(_("Every request from {site} will be refused from now on.")
                            .format(site=host), "small"), 1)
        self.outer.addLayout(row)
        # The focus starts on Deny: whatever key lands here first can only refuse.
        return deny
