"""The PIN is locked: what happened and how to unlock it.  Closing is the only answer."""

from __future__ import annotations

from PySide6.QtWidgets import QWidget

from agent.i18n import _
from agent.ui.qt.dialogs.base import Dialog, label


class PinLockedDialog(Dialog):
    kind = "pin_locked"

    def title_text(self) -> str:
        return _("PIN locked")

    def headline_text(self) -> str:
        return _("The PIN is locked.")

    def build(self) -> QWidget:
        token = str(self.args.get("token_label") or "")
        self.body.addWidget(label(_(
            "Too many wrong PINs were entered for “{token}”. It cannot sign or log in "
            "until it is unlocked.").format(token=token)))
        if self.args.get("unlock") == "PUK":
            # The agent unblocks it itself (agent/pinmgmt): say where, not "the vendor's tool".
            how = _("To unlock it with the PUK code (or the security officer PIN): "
                    "“Unblock PIN…” in the agent's tray menu, or imza-agent pin unblock "
                    "in a terminal. If you do not have the code, call your certificate "
                    "issuer's help line.")
        else:
            how = _("To unlock it, call your certificate issuer's help line.")
        self.body.addWidget(label(how))
        return self.add_button(_("Close"), lambda: self.finish(None))

    def cancel(self) -> None:
        self.finish(None)  # nothing to refuse: closing is the answer
