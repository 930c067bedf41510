"""Names and descriptions for assistive technology (AT-SPI on Linux, UIA, VoiceOver).

Qt derives a role from the widget class (a password-mode QLineEdit is exposed with the
password-text role) but a name only from visible text, and a text box, an image or a list
has none.  Every control of the trusted window therefore gets its name here, and the tests
check that no focusable widget is left without one.
"""

from __future__ import annotations

from typing import TypeVar

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

W = TypeVar("W", bound=QWidget)


def name(widget: W, text: str, description: str | None = None) -> W:
    """Give ``widget`` the name a screen reader announces (and a longer description)."""
    widget.setAccessibleName(text)
    if description is not None:
        widget.setAccessibleDescription(description)
    return widget


def describe(widget: QWidget, description: str) -> None:
    """Change what a screen reader says about ``widget`` (Qt sends the change event)."""
    if widget.accessibleDescription() != description:
        widget.setAccessibleDescription(description)


def focusable(root: QWidget) -> list[QWidget]:
    """The widgets inside ``root`` that the keyboard can reach."""
    return [w for w in root.findChildren(QWidget)
            if w.focusPolicy() & Qt.FocusPolicy.TabFocus and w.isVisibleTo(root)
            and w.isEnabled()]


def unnamed(root: QWidget) -> list[QWidget]:
    """Focusable widgets with no accessible name: each one is a defect."""
    return [w for w in focusable(root) if not w.accessibleName().strip()]
