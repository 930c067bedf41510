"""A document's text, whole: shown as plain characters in a read-only box that the
keyboard reaches (Tab) and scrolls (arrows, Page Up/Down), with a scroll bar when longer
than the box.  Invisible characters (bidi controls, zero-width ones) show as U+FFFD, so
the text cannot reorder or hide itself; line breaks and tabs stay."""

from __future__ import annotations

import unicodedata

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QPlainTextEdit

from agent.ui.page_text import REPLACEMENT
from agent.ui.qt import a11y

_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_KEPT = frozenset("\n\t")


def shown_text(data: bytes) -> str:
    """UTF-8 as a person may read it: undecodable bytes and hidden characters → U+FFFD."""
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    return "".join(ch if ch in _KEPT or unicodedata.category(ch) not in _HIDDEN
                   else REPLACEMENT for ch in text)


def text_box(text: str, name: str, *, monospace: bool = False, rows: int = 12
             ) -> QPlainTextEdit:
    box = QPlainTextEdit()
    box.setPlainText(text)  # plain characters, never markup
    box.setReadOnly(True)
    # Read-only, yet the caret moves so the keys scroll and a screen reader reads lines.
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByKeyboard
                                | Qt.TextInteractionFlag.TextSelectableByMouse)
    box.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
    box.setTabChangesFocus(True)  # Tab leaves the box: it is one stop in the Tab order
    box.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    box.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap if monospace
                        else QPlainTextEdit.LineWrapMode.WidgetWidth)
    if monospace:
        box.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
    lines = max(1, min(rows, text.count("\n") + 1 + len(text) // 70))
    box.setFixedHeight(box.fontMetrics().lineSpacing() * lines + 16)
    a11y.name(box, name)
    return box
