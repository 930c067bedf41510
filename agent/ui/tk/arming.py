"""When a dialog may take input: the guard against keyjacking.

A page can time its request so that the agent's dialog appears under keys the person is
pressing for the page (holding or hammering Return).  So a dialog starts disarmed and
arms only after ``delay`` seconds of quiet: every key press and every focus change of
the window before then starts the wait again.  Once armed:

- a key that repeats (held down, the keyboard's auto-repeat) disarms the dialog again;
- Return, keypad Enter and space — the keys that press a button — do nothing until some
  key has been *released* after arming, so a key held down through the arming never
  presses anything, even on systems that send no release between repeats;
- other keys (Tab, typing the PIN, Escape) work at once.

While disarmed every key is swallowed before any widget sees it.  The guard is a Tk
bind tag put in front of every widget of the dialog, so it runs before the widgets' own
bindings and can stop them.
"""

from __future__ import annotations

import itertools
import tkinter as tk
from collections.abc import Callable

# The keys that press the focused button (ttk buttons take space, the dialogs Return).
ACTIVATION_KEYS = frozenset({"Return", "KP_Enter", "space", "KP_Space"})
# ...of which these only type in a text field (a password may start with a space).
TYPED_KEYS = frozenset({"space", "KP_Space"})

_tags = itertools.count(1)


class Arming:
    def __init__(self, win: tk.Toplevel, delay: float,
                 on_change: Callable[[bool], None]) -> None:
        self.win = win
        self.delay_ms = max(1, round(delay * 1000))
        self.on_change = on_change
        self.armed = False
        self.released = False  # a key went up since the dialog last armed
        self.restarts = 0  # how often the wait began again (for the tests)
        self._timer: str | None = None
        self._down: set[int] = set()  # keycodes seen going down and not yet up
        self._last_release: tuple[int, int] | None = None  # keycode, X time
        self.tag = f"ImzaArming{next(_tags)}"
        # The Tcl commands bind_class makes (on the root) are deleted in stop():
        # unbind_class does not, and each would keep this dialog alive until the root goes.
        self._commands = [win.bind_class(self.tag, "<KeyPress>", self._on_press),
                          win.bind_class(self.tag, "<KeyRelease>", self._on_release)]
        # Bound on the toplevel, these also hear its widgets' focus moves; _on_focus
        # keeps only the window's own (the keyboard coming to or leaving the dialog).
        win.bind("<FocusIn>", self._on_focus, add="+")
        win.bind("<FocusOut>", self._on_focus, add="+")

    def guard(self, widget: tk.Misc) -> None:
        """Put the guard in front of ``widget`` and everything inside it."""
        tags = widget.bindtags()
        if self.tag not in tags:
            widget.bindtags((self.tag, *tags))
        for child in widget.winfo_children():
            self.guard(child)

    def restart(self) -> None:
        """Disarm, and arm again after ``delay`` seconds with no key press or focus change."""
        if self._timer is not None:
            self.win.after_cancel(self._timer)
        was_armed, self.armed, self.released = self.armed, False, False
        self.restarts += 1
        self._timer = self.win.after(self.delay_ms, self._arm)
        if was_armed:
            self.on_change(False)

    def stop(self) -> None:
        if self._timer is not None:
            self.win.after_cancel(self._timer)
            self._timer = None
        self.armed = False
        self.win.unbind_class(self.tag, "<KeyPress>")
        self.win.unbind_class(self.tag, "<KeyRelease>")
        root = self.win.nametowidget(".")  # bind_class registers its commands on the root
        for command in self._commands:
            root.deletecommand(command)
        self._commands = []

    def _arm(self) -> None:
        self._timer = None
        self.armed, self.released = True, False
        self.on_change(True)

    def _on_press(self, event: tk.Event[tk.Misc]) -> str | None:
        code = int(event.keycode)
        # X reports auto-repeat as a release and a press with the same timestamp; other
        # systems send presses only, for a key already down.
        repeat = code in self._down or self._last_release == (code, int(event.time))
        self._down.add(code)
        if not self.armed or repeat:
            self.restart()
            return "break"
        if event.keysym in ACTIVATION_KEYS and not self.released \
                and not (event.keysym in TYPED_KEYS and isinstance(event.widget, tk.Entry)):
            return "break"
        return None

    def _on_release(self, event: tk.Event[tk.Misc]) -> None:
        code = int(event.keycode)
        self._down.discard(code)
        self._last_release = (code, int(event.time))
        if self.armed:
            self.released = True  # undone at once if a repeat press follows

    def _on_focus(self, event: tk.Event[tk.Misc]) -> None:
        if event.widget is not self.win:
            return  # Tab within the dialog: that key press was seen already
        self._down.clear()  # keys let go elsewhere are never seen going up here
        self.restart()
