"""What every trusted window shares: the header (the asking site first and large, or the
agent itself), the headline, a body, the countdown and the buttons; arming; answering once.

Keyboard: Tab moves in reading order, Return or space press the focused button, Escape
cancels.  No window-wide default button: Return grants nothing unless the person moved to
a button first (the PIN field's own Return is the one exception, in the PIN dialog).
Keys and clicks count only once the dialog is armed (``arming``); until then the buttons
look greyed.  The window is raised and kept on top but never takes the keyboard by force:
grabbing the focus from where the person types would send their next keys, meant for the
page, to this dialog.

A dialog calls ``answer`` or ``cancel`` once, then closes.  ``dismiss`` (the daemon's
``close``: timeout, the page went away) closes it without either.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QCloseEvent, QKeyEvent
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLayout,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from agent.i18n import _
from agent.ui.qt import a11y
from agent.ui.qt.dialogs.arming import Arming
from agent.ui.qt.dialogs.site import SiteName, site_name

AGENT_NAME = "imza-agent"
WARN_SECONDS = 20  # the countdown turns into a warning for its last seconds
GRACE_MS = 5000  # after 0:00 the daemon's own timeout closes us; this is the fallback
WIDTH = 540  # texts wrap at the window's width, long translations never clip

RUN = 24
ZWSP = "\u200b"
_LONG_RUN = re.compile(r"\S{" + str(RUN + 1) + ",}")

Answer = Callable[[object], None]
Cancel = Callable[[], None]


@dataclass(frozen=True)
class DialogSettings:
    """What the daemon's ``hello`` set for every dialog."""

    language: str = "en"
    theme: str = "auto"
    arming_ms: int = 500
    timeout_s: float = 120.0

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> DialogSettings:
        """From the ``hello`` frame's fields; a missing or null one keeps its default."""
        default = cls()
        return cls(language=str(values.get("language") or default.language),
                   theme=str(values.get("theme") or default.theme),
                   arming_ms=int(values.get("arming_ms") or default.arming_ms),
                   timeout_s=float(values.get("timeout_s") or default.timeout_s))


def clock(seconds: int) -> str:
    return f"{seconds // 60}:{seconds % 60:02d}"


def wrappable(text: str) -> str:
    """``text`` with a zero-width space in every run of more than ``RUN`` characters
    without a space: Qt wraps lines only between words, and a long host name or file
    name would otherwise run past the window's edge, where its end (the part that says
    whose it is) cannot be seen.  Only the drawn text has them; accessible names do not."""
    return _LONG_RUN.sub(lambda m: ZWSP.join(
        m.group(0)[i:i + RUN] for i in range(0, len(m.group(0)), RUN)), text)


def label(text: str, role: str = "", *, wrap: bool = True, name: str | None = None) -> QLabel:
    """A text label; ``role`` picks its look in the theme (small, key, warning, ...).
    Plain text only: what a page sent must never be read as markup."""
    widget = QLabel(wrappable(text) if wrap else text)
    widget.setTextFormat(Qt.TextFormat.PlainText)
    widget.setWordWrap(wrap)
    if role:
        widget.setObjectName(role)
    a11y.name(widget, name or text)
    return widget


class Dialog(QWidget):
    kind: ClassVar[str] = ""

    def __init__(self, args: dict[str, Any], settings: DialogSettings, answer: Answer,
                 cancel: Cancel) -> None:
        super().__init__(None, Qt.WindowType.Window | Qt.WindowType.WindowStaysOnTopHint)
        self.args = args
        self.settings = settings
        self._answer = answer
        self._cancel = cancel
        self.done = False
        self._stopped = False
        self.buttons: list[QPushButton] = []
        self.site: SiteName | None = self.site_of(args)
        self.setObjectName(f"imza-{self.kind}")
        self.setMinimumWidth(WIDTH)
        self.setMaximumWidth(WIDTH + 260)
        self._frame = QVBoxLayout(self)
        self._frame.setContentsMargins(0, 0, 0, 0)
        self.content: QWidget | None = None
        self._populate()
        self.arming = Arming(self, settings.arming_ms, self._arming_changed)
        self._arming_changed(False)
        self._deadline = time.monotonic() + settings.timeout_s
        self._warned = False
        self._timer = QTimer(self)
        self._timer.setInterval(1000)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)  # one tick, one second
        self._timer.timeout.connect(self._tick)
        self._grace = QTimer(self)
        self._grace.setSingleShot(True)
        self._grace.timeout.connect(self.cancel)
        self._tick()
        self._timer.start()

    def _populate(self) -> None:
        """Build every widget in the current language, inside one content widget that
        ``retranslate`` can replace whole."""
        self.buttons = []
        content = QWidget(self)
        outer = self.outer = QVBoxLayout(content)
        outer.setContentsMargins(18, 14, 18, 14)
        self._header()
        self.headline = label(self.headline_text(), "headline")
        outer.addWidget(self.headline)
        self.body = QVBoxLayout()
        self.body.setSpacing(6)
        outer.addLayout(self.body)
        outer.addStretch(1)  # spare height goes here, not between the lines
        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        outer.addWidget(line)
        # The countdown on a line of its own: its warning may take two lines.
        self.countdown = label("", "small", wrap=True)
        outer.addWidget(self.countdown)
        footer = QHBoxLayout()
        footer.addStretch(1)
        self.button_row = QHBoxLayout()
        footer.addLayout(self.button_row)
        outer.addLayout(footer)
        self.first_focus = self.build()
        self._frame.addWidget(content)
        self.content = content
        self.setWindowTitle(self.window_title())
        a11y.name(self, self.windowTitle(), self._summary())

    def retranslate(self) -> None:
        """Draw the dialog again in the current language (the tray changed it).  What
        was typed is wiped, not carried over: the person types it again; the countdown
        goes on and the dialog is disarmed again, as for any change under the keys."""
        if self.done or self.content is None:
            return
        self.on_close()
        old = self.content
        self._frame.removeWidget(old)
        old.hide()
        old.deleteLater()
        self._warned = False
        self._populate()
        self._tick()
        self.fit()
        self.first_focus.setFocus(Qt.FocusReason.OtherFocusReason)
        self.arming.restart()
        self._arming_changed(False)

    # --- for subclasses --------------------------------------------------------------

    def site_of(self, args: dict[str, Any]) -> SiteName | None:
        """The asking site; None for the agent's own windows."""
        return site_name(str(args.get("origin", "")))

    def title_text(self) -> str:
        raise NotImplementedError

    def headline_text(self) -> str:
        raise NotImplementedError

    def build(self) -> QWidget:
        """Fill ``self.body`` and the buttons; return the widget that gets the focus."""
        raise NotImplementedError

    def enabled(self, button: QPushButton) -> bool:
        """Whether an armed button may be pressed now (a subclass may hold one back)."""
        return True

    def on_close(self) -> None:
        """Last chance to wipe what the dialog holds."""

    def timed_out(self) -> None:
        """0:00: the daemon's own timeout closes us (``dismiss``); if it does not, cancel."""
        self._grace.start(GRACE_MS)

    def countdown_text(self, seconds: int) -> str:
        return _("Closes in {time}").format(time=clock(seconds))

    def warning_text(self, seconds: int) -> str:
        return _("Only {time} left: then this window closes and the request is refused."
                 ).format(time=clock(seconds))

    # --- pieces ----------------------------------------------------------------------

    def window_title(self) -> str:
        host = f" — {self.site.unicode}" if self.site else ""
        return f"{AGENT_NAME} — {self.title_text()}{host}"

    def _header(self) -> None:
        if self.site is None:
            self.host_label = label(AGENT_NAME, "host", name=AGENT_NAME)
            self.outer.addWidget(self.host_label)
            self.outer.addWidget(label(
                _("The agent's own window: you opened it, no website asked."), "small"))
            return
        site = self.site
        self.host_label = label(site.unicode, "host",
                                name=_("Website: {site}").format(site=site.unicode))
        self.outer.addWidget(self.host_label)
        self.ascii_label: QLabel | None = None
        if site.ascii:
            text = _("Internationalised name; the browser reported it as {ascii}").format(
                ascii=site.ascii)
            self.ascii_label = label(text, "warning")
            self.outer.addWidget(self.ascii_label)
        self.outer.addWidget(label(site.origin, "small",
                                   name=_("Origin: {origin}").format(origin=site.origin)))

    def _summary(self) -> str:
        who = self.site.unicode if self.site else AGENT_NAME
        return f"{who}. {self.headline.text()}"

    def add_button(self, text: str, command: Callable[[], object],
                   row: QLayout | None = None) -> QPushButton:
        button = QPushButton(text)
        a11y.name(button, text)
        button.setAutoDefault(True)  # Return presses the focused button, no other one
        button.setDefault(False)
        button.clicked.connect(lambda: self._press(command))
        (row or self.button_row).addWidget(button)
        self.buttons.append(button)
        return button

    def fact_grid(self, rows: list[tuple[str, str]], role: str = "key") -> QGridLayout:
        grid = QGridLayout()
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(2)
        for index, (key, value) in enumerate(rows):
            grid.addWidget(label(key, role), index, 0, Qt.AlignmentFlag.AlignTop)
            grid.addWidget(label(value, name=f"{key}: {value}"), index, 1)
        grid.setColumnStretch(1, 1)
        return grid

    def _press(self, command: Callable[[], object]) -> None:
        if self.arming.armed and not self.done:
            command()

    def _arming_changed(self, armed: bool) -> None:
        """Buttons look pressable only while the dialog is armed."""
        if self.done:
            return
        for button in self.buttons:
            button.setProperty("armed", armed)
            style = button.style()
            style.unpolish(button)
            style.polish(button)
        self.refresh()

    def refresh(self) -> None:
        """Enable or hold back the buttons (``enabled``) after an input changed."""
        for button in self.buttons:
            button.setEnabled(self.enabled(button))

    def _tick(self) -> None:
        # A tick a little early must not show the same second twice.
        remaining = math.ceil(self._deadline - time.monotonic() - 0.05)
        if remaining <= 0:
            self._timer.stop()
            self.countdown.setText(self.countdown_text(0))
            self.timed_out()
            return
        if remaining <= WARN_SECONDS:
            text = self.warning_text(remaining)
            if not self._warned:
                self._warned = True
                self.countdown.setObjectName("countdownWarning")
                self.countdown.style().unpolish(self.countdown)
                self.countdown.style().polish(self.countdown)
        else:
            text = self.countdown_text(remaining)
        self.countdown.setText(text)
        a11y.name(self.countdown, text)
        if self._warned:
            a11y.describe(self.countdown, _("This window closes soon."))

    def fit(self) -> None:
        """Tall enough for every wrapped line at the window's width (Qt sizes a window
        by its widest line, not by the height its wrapped labels need)."""
        self.adjustSize()
        needed = self._frame.heightForWidth(self.width())
        if needed > self.height():
            self.resize(self.width(), needed)

    def present(self) -> None:
        self.fit()
        self.show()
        self.raise_()
        self.first_focus.setFocus(Qt.FocusReason.OtherFocusReason)
        self.arming.restart()

    # --- ending ----------------------------------------------------------------------

    def finish(self, value: object) -> None:
        if self.done:
            return
        self._stop()
        self._answer(value)
        self._close()

    def cancel(self) -> None:
        if self.done:
            return
        self._stop()
        self._cancel()
        self._close()

    def dismiss(self) -> None:
        """Close without answering: the daemon no longer waits for this dialog."""
        self._stop()
        self._close()

    def _stop(self) -> None:
        self.done = True
        if self._stopped:
            return
        self._stopped = True
        self._timer.stop()
        self._grace.stop()
        self.arming.stop()
        self.on_close()

    def _close(self) -> None:
        self.hide()
        self.deleteLater()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape:
            self.cancel()
            return
        super().keyPressEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.cancel()  # the window manager's close: the person refused
        self._stop()  # a PIN pad prompt answered already, yet holds what it shows
        super().closeEvent(event)
