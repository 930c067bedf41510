"""Light and dark colours for the agent's windows, and a focus mark that always shows.

The palette is set on the application (Fusion style, so every platform draws the same
widgets); ``auto`` follows the desktop's colour scheme as Qt reports it.  HiDPI needs
nothing here: Qt 6 scales by the screen's device pixel ratio on its own, and the PDF
preview renders its pages at that ratio.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

THEMES = ("auto", "light", "dark")


@dataclass(frozen=True)
class Colours:
    window: str
    base: str
    text: str
    muted: str
    button: str
    focus: str  # the focus ring: strong against both the window and a button
    warning: str
    danger: str
    site_tint: str  # the area holding what the page sent, so it never passes for ours
    site_edge: str


LIGHT = Colours(window="#f4f4f4", base="#ffffff", text="#1a1a1a", muted="#555555",
                button="#e8e8e8", focus="#0b57d0", warning="#9a3b00", danger="#b00020",
                site_tint="#fff6e0", site_edge="#c89b3c")
DARK = Colours(window="#202124", base="#2b2c2f", text="#ececec", muted="#b0b0b0",
               button="#3a3b3e", focus="#8ab4f8", warning="#ffb870", danger="#ff8a80",
               site_tint="#3a3020", site_edge="#c89b3c")

_applied: str | None = None


def is_dark(theme: str) -> bool:
    if theme == "dark":
        return True
    if theme == "light":
        return False
    hints = QGuiApplication.styleHints()
    return bool(hints is not None and hints.colorScheme() == Qt.ColorScheme.Dark)


def colours(theme: str | None = None) -> Colours:
    return DARK if is_dark(theme or _applied or "auto") else LIGHT


def palette(c: Colours) -> QPalette:
    pal = QPalette()
    role = QPalette.ColorRole
    for r, value in ((role.Window, c.window), (role.Base, c.base),
                     (role.AlternateBase, c.window), (role.Text, c.text),
                     (role.WindowText, c.text), (role.Button, c.button),
                     (role.ButtonText, c.text), (role.ToolTipBase, c.base),
                     (role.ToolTipText, c.text), (role.Highlight, c.focus),
                     (role.HighlightedText, c.base), (role.PlaceholderText, c.muted),
                     (role.Link, c.focus)):
        pal.setColor(r, QColor(value))
    for r in (role.Text, role.WindowText, role.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, r, QColor(c.muted))
    return pal


def style_sheet(c: Colours) -> str:
    """A 2-pixel focus ring on everything the keyboard reaches, and the site's area."""
    return f"""
QPushButton {{ background: {c.button}; color: {c.text}; border: 1px solid {c.muted};
  border-radius: 4px; padding: 5px 14px; min-height: 1.4em; }}
QPushButton:focus {{ border: 2px solid {c.focus}; padding: 4px 13px; }}
QPushButton:disabled, QPushButton[armed="false"] {{ color: {c.muted}; }}
QLineEdit, QPlainTextEdit, QListWidget, QScrollArea {{ border: 1px solid {c.muted}; }}
QLineEdit:focus, QPlainTextEdit:focus, QListWidget:focus, QScrollArea:focus
  {{ border: 2px solid {c.focus}; }}
QRadioButton, QCheckBox {{ border: 2px solid transparent; border-radius: 3px; padding: 2px; }}
QRadioButton:focus, QCheckBox:focus {{ border: 2px solid {c.focus}; }}
QGroupBox#siteArea {{ background: {c.site_tint}; border: 2px solid {c.site_edge};
  border-radius: 4px; padding: 6px; }}
QLabel#siteTitle {{ color: {c.warning}; font-weight: bold; }}
QLabel#host {{ font-size: 18pt; font-weight: bold; }}
QLabel#headline {{ font-weight: bold; }}
QLabel#small, QLabel#key {{ color: {c.muted}; }}
QLabel#warning {{ color: {c.warning}; font-weight: bold; }}
QLabel#danger, QLabel#countdownWarning {{ color: {c.danger}; font-weight: bold; }}
"""


_following = False  # connected to the desktop's colour scheme changes


def _paint(app: QApplication, theme: str) -> None:
    c = colours(theme)
    app.setStyle("Fusion")
    app.setPalette(palette(c))
    app.setStyleSheet(style_sheet(c))


def apply_theme(app: QApplication, theme: str) -> None:
    """Colour the whole application; cheap to call again with the same theme.  With
    ``auto`` the windows follow the desktop when it switches between light and dark."""
    global _applied, _following
    if theme not in THEMES:
        theme = "auto"
    if _applied == theme:
        return
    _applied = theme
    _paint(app, theme)
    hints = QGuiApplication.styleHints()
    if not _following and hints is not None:
        _following = True
        hints.colorSchemeChanged.connect(
            lambda _scheme: _paint(app, "auto") if _applied == "auto" else None)
