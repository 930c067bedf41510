"""When a dialog may take input: the guard against keyjacking.

A page can time its request so that the agent's dialog appears under keys the person is
pressing for the page (holding or hammering Return).  So a dialog starts disarmed and
arms only after ``delay_ms`` of quiet: every key press, click and focus change of the
window before then starts the wait again.  Once armed:

- a key that repeats (held down) disarms the dialog again;
- Return, Enter and space (the keys that press a button) do nothing until some key has
  been *released* after arming, so a key held through the arming never presses anything;
- other keys (Tab, typing the PIN, Escape) work at once; space types in a text field.

The guard is an application event filter that looks only at this dialog's widgets, so it
runs before any widget of the dialog sees the event and can swallow it.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QApplication, QLineEdit, QWidget

ACTIVATION_KEYS = frozenset({Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Space})
_MOUSE = frozenset({QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonRelease,
                    QEvent.Type.MouseButtonDblClick})
_WINDOW_FOCUS = frozenset({QEvent.Type.WindowActivate, QEvent.Type.WindowDeactivate})
# A press this soon after the same key went up is X's auto-repeat (which sends both at
# once), not a person: no hand lets a key go and presses it again within a millisecond.
REPEAT_GAP_MS = 1


class Arming(QObject):
    def __init__(self, window: QWidget, delay_ms: int,
                 on_change: Callable[[bool], None]) -> None:
        super().__init__(window)
        self.window = window
        self.on_change = on_change
        self.armed = False
        self.released = False  # a key went up since the dialog last armed
        self.restarts = 0  # how often the wait began again (for the tests)
        self._down: set[int] = set()
        # When each key last went up (the event's time, ms): X's auto-repeat sends a
        # release and a press at the same instant, and Qt does not always mark that pair
        # as repeats (it looks for the press only in what has already arrived).
        self._up_at: dict[int, int] = {}
        # A key event nobody takes travels up to the parents; each hop reaches the filter
        # again and must not count as a second press.
        self._last: tuple[QEvent.Type, int, QWidget] | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(max(1, delay_ms))
        self._timer.timeout.connect(self._arm)
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self)

    def restart(self) -> None:
        """Disarm, and arm again after the delay with no key press or focus change."""
        was_armed, self.armed, self.released = self.armed, False, False
        self.restarts += 1
        self._timer.start()
        if was_armed:
            self.on_change(False)

    def stop(self) -> None:
        self._timer.stop()
        self.armed = False
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)

    def _arm(self) -> None:
        self.armed, self.released = True, False
        self.on_change(True)

    def _ours(self, obj: QObject) -> QWidget | None:
        if isinstance(obj, QWidget) and obj.window() is self.window:
            return obj
        return None

    @staticmethod
    def _code(event: QKeyEvent) -> int:
        """Which physical key: the scan code where the platform gives one.  Qt names the
        same key differently going down and up when a modifier changes in between
        (Shift+Tab goes down as Backtab and up as Tab; Shift+1 as ! and 1), and a key seen
        down but never up would count as held from then on."""
        scan = event.nativeScanCode()
        if scan:
            return int(scan)
        key = event.key()
        return int(Qt.Key.Key_Tab if key == Qt.Key.Key_Backtab else key)

    def _propagated(self, kind: QEvent.Type, key: int, widget: QWidget) -> bool:
        last = self._last
        self._last = (kind, key, widget)
        return (last is not None and last[0] == kind and last[1] == key
                and last[2] is not widget and widget.isAncestorOf(last[2]))

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        widget = self._ours(obj)
        if widget is None:
            return False
        kind = event.type()
        if kind in _WINDOW_FOCUS and widget is self.window:
            self._down.clear()  # keys let go elsewhere are never seen going up here
            self.restart()
            return False
        if kind == QEvent.Type.FocusIn and not self.armed:
            self.restart()
            return False
        if kind in _MOUSE:
            return not self.armed
        if kind == QEvent.Type.KeyPress and isinstance(event, QKeyEvent):
            return self._press(widget, event)
        if kind == QEvent.Type.KeyRelease and isinstance(event, QKeyEvent):
            if self._propagated(kind, event.key(), widget):
                return False
            self._down.discard(self._code(event))
            if event.timestamp():  # 0: a synthetic event, with no time to compare
                self._up_at[self._code(event)] = event.timestamp()
            if self.armed and not event.isAutoRepeat():
                self.released = True
            return not self.armed
        if kind == QEvent.Type.ShortcutOverride:
            return not self.armed
        return False

    def _press(self, widget: QWidget, event: QKeyEvent) -> bool:
        key = event.key()
        if self._propagated(QEvent.Type.KeyPress, key, widget):
            return not self.armed
        code = self._code(event)
        up_at = self._up_at.get(code)
        repeat = (event.isAutoRepeat() or code in self._down
                  or (up_at is not None and event.timestamp() > 0
                      and 0 <= event.timestamp() - up_at <= REPEAT_GAP_MS))
        self._down.add(code)
        if not self.armed or repeat:
            self.restart()
            return True
        if key in ACTIVATION_KEYS and not self.released:
            return not (key == Qt.Key.Key_Space and isinstance(widget, QLineEdit))
        return False
