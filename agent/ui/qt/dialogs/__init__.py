"""The trusted windows of the UI process, one module per dialog; ``open_dialog`` is what
the UI process's main calls for a ``dialog`` frame (docs/ui-process.md).

A dialog calls ``answer(result)`` or ``cancel()`` once, then closes itself.  For the
daemon's ``close`` call ``dismiss()`` on the widget returned: it closes without calling
either.  The PIN dialog with a PIN pad answers ``{"pin_pad": true}`` and stays open as
the reader's prompt until dismissed (or its own two minutes are over).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from PySide6.QtWidgets import QApplication

from agent.i18n import LANGUAGES, current_language, set_language
from agent.ui.qt.dialogs.base import Dialog, DialogSettings
from agent.ui.qt.dialogs.consent import ConsentDialog
from agent.ui.qt.dialogs.extend import ExtendDialog
from agent.ui.qt.dialogs.message import MessageDialog
from agent.ui.qt.dialogs.picker import PickerDialog
from agent.ui.qt.dialogs.pin import PinDialog
from agent.ui.qt.dialogs.pin_change import PinChangeDialog
from agent.ui.qt.dialogs.pin_locked import PinLockedDialog
from agent.ui.qt.dialogs.pin_unblock import PinUnblockDialog
from agent.ui.qt.theme import apply_theme

__all__ = ["DIALOGS", "Dialog", "DialogSettings", "open_dialog"]

DIALOGS: dict[str, type[Dialog]] = {
    "consent": ConsentDialog,
    "pick": PickerDialog,
    "pin": PinDialog,
    "pin_locked": PinLockedDialog,
    "pin_change": PinChangeDialog,
    "pin_unblock": PinUnblockDialog,
    "message": MessageDialog,
    "extend": ExtendDialog,
}


def open_dialog(kind: str, args: dict[str, Any], settings: DialogSettings | Mapping[str, Any],
                answer: Callable[[object], None], cancel: Callable[[], None]) -> Dialog:
    """Build, show and return the dialog ``kind``; raises ValueError for an unknown kind.
    ``settings`` may also be the ``hello`` frame's fields as a mapping."""
    if not isinstance(settings, DialogSettings):
        settings = DialogSettings.of(settings)
    try:
        cls = DIALOGS[kind]
    except KeyError:
        raise ValueError(f"unknown dialog kind {kind!r}") from None
    if settings.language in LANGUAGES and settings.language != current_language():
        set_language(settings.language)
    app = QApplication.instance()
    if isinstance(app, QApplication):
        apply_theme(app, settings.theme)
    dialog = cls(args, settings, answer, cancel)
    dialog.present()
    return dialog
