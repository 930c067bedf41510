"""One signed item as the trusted window shows it: the view for its kind, and the agent's
own line under it (its size and SHA-256, which the core computed, not the page)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from agent.app.dialogs import Preview, PreviewKind
from agent.i18n import _
from agent.ui.page_text import page_line
from agent.ui.qt import a11y
from agent.ui.qt.preview.pdf import PdfUnreadable, PdfView
from agent.ui.qt.preview.text import shown_text, text_box
from agent.ui.qt.preview.xml import indented

NAME_LIMIT = 300


def preview_from_wire(item: dict[str, Any]) -> Preview:
    """``{kind, size, sha256, name, data_b64}`` from the pipe; unknown kinds show as binary."""
    try:
        kind = PreviewKind(str(item.get("kind")))
    except ValueError:
        kind = PreviewKind.BINARY
    try:
        data = base64.b64decode(str(item.get("data_b64") or ""), validate=True)
    except (binascii.Error, ValueError):
        data = b""
    if kind in (PreviewKind.PDF, PreviewKind.TEXT, PreviewKind.XML) and not data:
        kind = PreviewKind.BINARY  # nothing to show: say what it is instead
    name = item.get("name")
    return Preview(kind=kind, size=int(item.get("size") or 0),
                   sha256=str(item.get("sha256") or ""),
                   name=page_line(str(name), NAME_LIMIT) if name else None, data=data)


def item_title(preview: Preview, number: int) -> str:
    return preview.name or _("Item {n}").format(n=number)


def fingerprint(preview: Preview) -> str:
    if preview.kind is PreviewKind.HASH:
        return _("The site shows no document; only this fingerprint is signed: {sha256}"
                 ).format(sha256=preview.sha256)
    if preview.kind is PreviewKind.BINARY:
        return _("Binary data, {size} bytes, SHA-256 {sha256}").format(
            size=preview.size, sha256=preview.sha256)
    return _("{size} bytes, SHA-256 {sha256}").format(size=preview.size,
                                                      sha256=preview.sha256)


def _small(text: str) -> QLabel:
    widget = QLabel(text)
    widget.setWordWrap(True)
    widget.setObjectName("small")
    widget.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    a11y.name(widget, text)
    return widget


class ItemView(QWidget):
    """The view of one item: PDF pages, text, indented XML, or its description."""

    def __init__(self, preview: Preview, title: str) -> None:
        super().__init__()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.pdf: PdfView | None = None
        view: QWidget | None = None
        if preview.kind is PreviewKind.PDF:
            try:
                view = self.pdf = PdfView(preview.data, title)
            except PdfUnreadable:
                layout.addWidget(_small(_("This PDF cannot be shown; check it before "
                                          "signing.")))
        elif preview.kind is PreviewKind.TEXT:
            view = text_box(shown_text(preview.data), _("Text of {name}").format(name=title))
        elif preview.kind is PreviewKind.XML:
            view = text_box(indented(preview.data), _("XML of {name}").format(name=title),
                            monospace=True)
        self.view = view
        if view is not None:
            layout.addWidget(view)
            if preview.size > len(preview.data):
                layout.addWidget(_small(_("Only the first {shown} of {size} bytes are shown.")
                                        .format(shown=len(preview.data), size=preview.size)))
        layout.addWidget(_small(fingerprint(preview)))

    def release(self) -> None:
        if self.pdf is not None:
            self.pdf.close_document()
