"""The PIN-management forms (change the PIN, unblock it with the PUK): three hidden
fields, the token's length rule, and a primary button that works once the new PIN fits
the rule and both copies agree.

Only the person opens these (tray menu); no site asks, so the header names the agent.
Return in a field moves to the next one and, in the last, presses the primary button.
What the fields held is wiped as soon as it is encoded, and on close.
"""

from __future__ import annotations

import base64
from typing import Any, ClassVar

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QLineEdit, QPushButton, QWidget

from agent.i18n import _
from agent.ui.qt import a11y
from agent.ui.qt.dialogs.base import Dialog, label
from agent.ui.qt.dialogs.site import SiteName

FIELD_LIMIT = 64  # characters a field takes when the token names no maximum


def length_rule(low: int, high: int) -> str | None:
    """The token's length rule for a new PIN, e.g. "4–8 characters", "4 characters"."""
    if low and high and low == high:
        return _("{n} characters").format(n=low)
    if low and high:
        return _("{min}–{max} characters").format(min=low, max=high)
    if low:
        return _("at least {min} characters").format(min=low)
    if high:
        return _("at most {max} characters").format(max=high)
    return None


def token_name(token: Any) -> str:
    """"label (serial)", or the label alone: never an empty "()"."""
    token = token if isinstance(token, dict) else {}
    name = str(token.get("label") or "").strip()
    serial = str(token.get("serial") or "").strip()
    if name and serial:
        return f"{name} ({serial})"
    return name or serial


class PinForm(Dialog):
    answer_keys: ClassVar[tuple[str, str]] = ("old_b64", "new_b64")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.entries: list[QLineEdit] = []
        super().__init__(*args, **kwargs)

    def site_of(self, args: dict[str, Any]) -> SiteName | None:
        return None

    @property
    def token(self) -> str:
        return token_name(self.args.get("token"))

    def first_label(self) -> str:
        raise NotImplementedError

    def primary_text(self) -> str:
        raise NotImplementedError

    def notes(self) -> None:
        """What the token says about the tries, above the fields."""

    def extra(self) -> None:
        """More, under the fields (the unblock form's last-try confirmation)."""

    @property
    def limits(self) -> tuple[int, int]:
        return int(self.args.get("min_len") or 0), int(self.args.get("max_len") or 0)

    def build(self) -> QWidget:
        self.entries = []
        token = self.args.get("token")
        reader = str(token.get("reader") or "") if isinstance(token, dict) else ""
        if reader:
            self.body.addLayout(self.fact_grid([(_("Reader"), reader)]))
        for key, look in (("error", "danger"), ("notice", "warning")):
            if self.args.get(key):
                self.body.addWidget(label(str(self.args[key]), look))
        self.notes()
        grid = QGridLayout()
        low, high = self.limits
        rule = length_rule(low, high)
        for row, text in enumerate((self.first_label(), _("New PIN"), _("New PIN again"))):
            grid.addWidget(label(text, "headline", wrap=False), row, 0)
            entry = QLineEdit()
            entry.setEchoMode(QLineEdit.EchoMode.Password)
            entry.setContextMenuPolicy(Qt.ContextMenuPolicy.NoContextMenu)
            entry.setMaxLength(FIELD_LIMIT if row == 0 else high or FIELD_LIMIT)
            a11y.name(entry, text, _("New PIN: {rule}").format(rule=rule)
                      if rule and row else None)
            entry.textChanged.connect(lambda _t: self.refresh())
            entry.returnPressed.connect(lambda i=row: self._next(i))
            grid.addWidget(entry, row, 1)
            self.entries.append(entry)
        self.body.addLayout(grid)
        if rule:
            self.body.addWidget(label(_("New PIN: {rule}").format(rule=rule), "small"))
        self.mismatch = label("", "warning")
        self.body.addWidget(self.mismatch)
        self.extra()
        self.primary = self.add_button(self.primary_text(), self._submit)
        self.add_button(_("Cancel"), self.cancel)
        return self.entries[0]

    def _fits(self, size: int) -> bool:
        low, high = self.limits
        return size > 0 and not (low and size < low) and not (high and size > high)

    def enabled(self, button: QPushButton) -> bool:
        if button is not getattr(self, "primary", None) or len(self.entries) < 3:
            return True
        first, new, again = self.entries
        return bool(first.displayText()) and self._fits(len(new.displayText())) \
            and new.text() == again.text()

    def refresh(self) -> None:
        if len(self.entries) == 3 and hasattr(self, "mismatch"):
            new, again = self.entries[1].text(), self.entries[2].text()
            differs = bool(again) and not new.startswith(again)
            text = _("The two new PINs differ.") if differs else ""
            self.mismatch.setText(text)
            self.mismatch.setVisible(bool(text))
            a11y.name(self.mismatch, text)
        super().refresh()

    def _next(self, index: int) -> None:
        if index + 1 < len(self.entries):
            self.entries[index + 1].setFocus()
        else:
            self._submit()

    def _submit(self) -> None:
        if not self.arming.armed or self.done or not self.enabled(self.primary):
            return
        first, new = (bytearray(e.text().encode("utf-8")) for e in self.entries[:2])
        self._clear()
        answer = {self.answer_keys[0]: base64.b64encode(first).decode("ascii"),
                  self.answer_keys[1]: base64.b64encode(new).decode("ascii")}
        first[:] = bytes(len(first))  # the answer holds its own copies
        new[:] = bytes(len(new))
        self.finish(answer)

    def _clear(self) -> None:
        for entry in self.entries:
            entry.setText("")
            entry.setModified(False)
            entry.clear()

    def on_close(self) -> None:
        self._clear()
