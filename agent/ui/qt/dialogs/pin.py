"""The confirmation + PIN dialog: which site asks, what is signed (the previews), with
which certificate, and the PIN for it.

Everything the page sent (the document name, the strings that go into the signature, its
text, the documents themselves) sits in one tinted frame titled as coming from the site,
never among the agent's own facts.  Return in the PIN field signs, once the dialog is
armed and the PIN is long enough; it is the only default action of any dialog.  With a
PIN pad there is no field: after the button the window stays as the reader's prompt,
with its own countdown, until the daemon closes it.
"""

from __future__ import annotations

import base64
import time
from typing import Any, NamedTuple

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from agent.i18n import N_, _
from agent.ui.page_text import page_block, page_line
from agent.ui.qt import a11y
from agent.ui.qt.dialogs.base import Dialog, clock, label
from agent.ui.qt.dialogs.certificate import certificate_facts
from agent.ui.qt.preview import preview_area, previews_from_wire, release
from agent.ui.qt.preview.text import text_box

PAGE_LINE_LIMIT = 300
PAGE_TEXT_LIMIT = 2000
FIELD_LIMIT = 64  # characters the PIN field takes when the token names no maximum
PIN_PAD_SECONDS = 120

SIGNED_FIELD_TEXT = {
    "reason": N_("Reason"),
    "location": N_("Location"),
    "stamp_text": N_("Stamp text"),
    "field_name": N_("Signature field name"),
}


class Status(NamedTuple):
    """PinStatus from the pipe (snake_case as dataclasses.asdict, or camelCase as_dict)."""

    count_low: bool
    final_try: bool
    pin_pad: bool
    min_length: int
    max_length: int

    @classmethod
    def of(cls, raw: Any) -> Status:
        raw = raw if isinstance(raw, dict) else {}

        def get(snake: str, camel: str) -> Any:
            return raw.get(snake, raw.get(camel))

        return cls(bool(get("count_low", "countLow")), bool(get("final_try", "finalTry")),
                   bool(get("pin_pad", "pinPad")), int(get("min_length", "minLength") or 0),
                   int(get("max_length", "maxLength") or 0))


def length_hint(pin: Status) -> str | None:
    low, high = pin.min_length, pin.max_length
    if low and high and low == high:
        return _("{n} characters").format(n=low)
    if low and high:
        return _("From {min} to {max} characters").format(min=low, max=high)
    if low:
        return _("At least {min} characters").format(min=low)
    return None


def pin_notices(args: dict[str, Any]) -> list[tuple[str, str]]:
    """(text, look): a wrong PIN or password, then what the token's flags say.  PKCS#11
    reports no count of tries left, only "low" and "final try", so neither do we."""
    notices: list[tuple[str, str]] = []
    retry = args.get("retry")
    if retry is not None:
        notices.append((_("Wrong password.") if args.get("password") else _("Wrong PIN."),
                        "warning"))
    status = Status.of(retry if retry is not None else args.get("pin"))
    if status.final_try:
        notices.append((_("Last try: if this PIN is wrong too, the token will be locked."),
                        "danger"))
    elif status.count_low:
        notices.append((_("Only a few tries are left."), "warning"))
    return notices


class PinDialog(Dialog):
    kind = "pin"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.entry: QLineEdit | None = None
        self.preview: QWidget | None = None
        self.site_area: QGroupBox | None = None
        self.waiting_reader = False
        super().__init__(*args, **kwargs)

    @property
    def auth(self) -> bool:
        return self.args.get("action") == "auth"

    def title_text(self) -> str:
        return _("Log in") if self.auth else _("Sign")

    def headline_text(self) -> str:
        if self.auth:
            return _("This website asks you to log in with your certificate.")
        return _("This website asks you to sign with your certificate.")

    def build(self) -> QWidget:
        args = self.args
        self.entry, self.preview, self.site_area = None, None, None
        previews = previews_from_wire(args.get("previews"))
        count = int(args.get("count") or 1)
        if not self.auth and count > 1 and len(previews) <= 1:
            self.body.addWidget(label(_("Items to sign: {n}").format(n=count), "headline"))
        self._site_area(previews)
        self.body.addWidget(label(_("Certificate"), "headline"))
        certificate = args.get("certificate")
        self.body.addLayout(self.fact_grid(certificate_facts(
            certificate if isinstance(certificate, dict) else {})))
        for text, look in pin_notices(args):
            self.body.addWidget(label(text, look))
        pin = Status.of(args.get("pin"))
        primary = _("Log in") if self.auth else _("Sign")
        if pin.pin_pad:
            self.pin_pad_note = label(_("This token has a PIN pad: after you press the "
                                        "button, enter the PIN on the reader."), "headline")
            self.body.addWidget(self.pin_pad_note)
            self.primary = self.add_button(primary, self._use_pin_pad)
            self.add_button(_("Cancel"), self.cancel)
            return self.primary
        row = QHBoxLayout()
        what = _("Password") if args.get("password") else _("PIN")
        row.addWidget(label(what, "headline", wrap=False))
        entry = self.entry = QLineEdit()
        entry.setEchoMode(QLineEdit.EchoMode.Password)
        entry.setMaxLength(pin.max_length or FIELD_LIMIT)
        entry.setContextMenuPolicy(Qt.ContextMenuPolicy.NoContextMenu)
        hint = length_hint(pin)
        a11y.name(entry, what, hint)
        entry.textChanged.connect(lambda _t: self.refresh())
        entry.returnPressed.connect(self._submit)
        row.addWidget(entry, 1)
        self.body.addLayout(row)
        if hint:
            self.body.addWidget(label(hint, "small"))
        self.primary = self.add_button(primary, self._submit)
        self.add_button(_("Cancel"), self.cancel)
        return entry

    def _site_area(self, previews: list[Any]) -> None:
        """The tinted frame with everything the page sent."""
        args = self.args
        rows: list[tuple[str, str]] = []
        if args.get("document_name"):
            rows.append((_("Document"), page_line(str(args["document_name"]),
                                                  PAGE_LINE_LIMIT)))
        for pair in args.get("signed_fields") or []:
            field, value = (pair.get("field"), pair.get("value")) if isinstance(pair, dict) \
                else (pair[0], pair[1])
            text = SIGNED_FIELD_TEXT.get(str(field))
            rows.append((_(text) if text else str(field), page_line(str(value),
                                                                    PAGE_LINE_LIMIT)))
        display = str(args.get("display_text") or "")
        if not rows and not display and not previews:
            return
        host = self.site.unicode if self.site else ""
        title = _("Sent by {site} — not checked by the agent").format(site=host)
        # A group without a title of its own: the heading is a label inside it, which
        # wraps, so a long host name is never cut off.
        area = self.site_area = QGroupBox()
        area.setObjectName("siteArea")
        a11y.name(area, title)
        inner = QVBoxLayout(area)
        self.site_title = label(title, "siteTitle")
        inner.addWidget(self.site_title)
        if rows:
            inner.addLayout(self.fact_grid(rows))
        if display:
            inner.addWidget(text_box(page_block(display, PAGE_TEXT_LIMIT),
                                     _("Text sent by {site}").format(site=host), rows=6))
        self.preview = preview_area(previews)
        if self.preview is not None:
            inner.addWidget(self.preview)
        self.body.addWidget(area)

    def enabled(self, button: QPushButton) -> bool:
        if self.entry is None or button is not getattr(self, "primary", None):
            return True
        # displayText: the dots, as many as characters, never a copy of the PIN itself
        pin = Status.of(self.args.get("pin"))
        return len(self.entry.displayText()) >= max(1, pin.min_length)

    def _submit(self) -> None:
        entry = self.entry
        if entry is None or not self.arming.armed or self.done \
                or not self.enabled(self.primary):
            return
        typed = bytearray(entry.text().encode("utf-8"))
        self._clear()
        encoded = base64.b64encode(typed).decode("ascii")
        typed[:] = bytes(len(typed))  # the answer holds its own copy; wipe ours
        self.finish({"pin_b64": encoded})

    def _clear(self) -> None:
        if self.entry is not None:
            self.entry.setText("")  # also drops the undo history
            self.entry.setModified(False)
            self.entry.clear()

    def _use_pin_pad(self) -> None:
        """The reader takes over: answer now and keep the window as the reader's prompt."""
        if self.done:
            return
        self.done = True
        self.waiting_reader = True
        self.arming.stop()
        self._answer({"pin_pad": True})
        for button in self.buttons:
            button.hide()
        self.pin_pad_note.hide()
        prompt = _("Enter the PIN on the reader's keypad.")
        self.headline.setText(prompt)
        a11y.name(self.headline, prompt)
        self._deadline = time.monotonic() + PIN_PAD_SECONDS
        self._warned = False
        self._tick()

    def countdown_text(self, seconds: int) -> str:
        if self.waiting_reader:
            return _("The reader waits {time}").format(time=clock(seconds))
        return super().countdown_text(seconds)

    def warning_text(self, seconds: int) -> str:
        if self.waiting_reader:
            return self.countdown_text(seconds)
        return super().warning_text(seconds)

    def timed_out(self) -> None:
        if self.waiting_reader:
            self.dismiss()

    def on_close(self) -> None:
        self._clear()
        release(self.preview)
