"""The PIN-management windows: change the PIN, unblock it with the PUK, and the result.

Only the person opens these (tray menu); no site asks, so the header names the agent and
says so where the other dialogs name the site.  Otherwise they are the other dialogs'
kind (``agent.ui.tk.dialogs.Dialog``): on top, disarmed for the first moments and after
every key press until quiet (``arming``), keyboard-usable (Tab in reading order, Return
in a field moves to the next one and, in the last, presses the primary button; Escape
cancels), no default button.  Fields show dots; what they held is wiped on close.
"""

from __future__ import annotations

import concurrent.futures
import time
import tkinter as tk
from collections.abc import Callable
from tkinter import ttk
from typing import NamedTuple, TypeVar

from agent.i18n import _
from agent.keystores.base import Secret
from agent.keystores.pkcs11.pin_management import PinState
from agent.pinmgmt.texts import length_rule, pin_notes, puk_notes
from agent.ui.tk.arming import Arming
from agent.ui.tk.dialogs import ARMING_DELAY, Dialog
from agent.ui.tk.style import WRAP

T = TypeVar("T")
AGENT_NAME = "imza-agent"
FIELD_LIMIT = 64  # characters a field takes when the token names no maximum


class PinPair(NamedTuple):
    """The answer of both forms: the current PIN (or the PUK), and the new PIN."""

    first: Secret
    new: Secret


class AgentDialog(Dialog[T]):
    """A ``Dialog`` whose header is the agent itself: the person opened it."""

    def __init__(self, root: tk.Misc, future: concurrent.futures.Future[T], timeout: float, *,
                 arming_delay: float = ARMING_DELAY) -> None:
        # Dialog.__init__'s steps, with the agent's header instead of the site's.
        self.future = future
        self.origin = AGENT_NAME
        self._deadline = time.monotonic() + timeout
        self._timer: str | None = None
        self._closed = False
        self.buttons: list[ttk.Button] = []
        win = self.win = tk.Toplevel(root, class_=self.window_class)
        win.withdraw()
        win.title(f"{self.title_text()} — {AGENT_NAME}")
        win.attributes("-topmost", True)
        win.resizable(False, False)
        win.protocol("WM_DELETE_WINDOW", self.cancel)
        win.bind("<Escape>", lambda _e: self.cancel())
        self.arming = Arming(win, arming_delay, self._arming_changed)
        outer = self.outer = ttk.Frame(win, padding=(18, 14))
        outer.pack(fill="both", expand=True)
        ttk.Label(outer, text=AGENT_NAME, style="Host.TLabel").pack(anchor="w")
        ttk.Label(outer, text=_("The agent's own window: you opened it, no website asked."),
                  style="Small.TLabel", wraplength=WRAP).pack(anchor="w")
        self.headline = ttk.Label(outer, text=self.headline_text(), style="Strong.TLabel",
                                  wraplength=WRAP, justify="left")
        self.headline.pack(anchor="w", fill="x", pady=(10, 8))
        self.body = ttk.Frame(outer)
        self.body.pack(fill="both", expand=True)
        ttk.Separator(outer).pack(fill="x", pady=(12, 8))
        footer = ttk.Frame(outer)
        footer.pack(fill="x")
        self.countdown = ttk.Label(footer, style="Small.TLabel")
        self.countdown.pack(side="left", anchor="w")
        self.button_row = ttk.Frame(footer)
        self.button_row.pack(side="right")
        self.first_focus = self.build()
        self.arming.guard(win)
        self._tick()
        self._present()
        self.arming.restart()

    def title_text(self) -> str:
        return self.headline_text()

    def note(self, text: str, style: str, gap: int = 6) -> ttk.Label | None:
        notice = getattr(self, "notice", None)
        if notice and text != notice and text in notice:
            return None  # said already, in the notice of the last attempt
        label = ttk.Label(self.body, text=text, style=style, wraplength=WRAP, justify="left")
        label.pack(anchor="w", fill="x", pady=(gap, 0))
        return label


class PinForm(AgentDialog[PinPair]):
    """Three hidden fields (the current PIN or the PUK, the new PIN, the new PIN again)
    and the token's length rule.  The primary button works once the new PIN fits the
    rule and both copies agree."""

    def __init__(self, root: tk.Misc, future: concurrent.futures.Future[PinPair],
                 token_name: str, state: PinState, timeout: float, *,
                 notice: str | None = None, arming_delay: float = ARMING_DELAY) -> None:
        self.token_name = token_name
        self.state = state
        self.notice = notice
        self.entries: list[ttk.Entry] = []
        self.mismatch: ttk.Label | None = None
        super().__init__(root, future, timeout, arming_delay=arming_delay)

    def first_label(self) -> str:
        raise NotImplementedError

    def primary_text(self) -> str:
        raise NotImplementedError

    def notes(self) -> None:
        """What the token says about the tries, above the fields."""

    def build(self) -> tk.Widget:
        if self.notice:
            self.note(self.notice, "Danger.TLabel", gap=0)
        self.notes()
        grid = ttk.Frame(self.body)
        grid.pack(anchor="w", fill="x", pady=(10, 0))
        limit = self.state.pin.max_length or FIELD_LIMIT
        labels = (self.first_label(), _("New PIN"), _("New PIN again"))
        for row, text in enumerate(labels):
            ttk.Label(grid, text=text, style="Strong.TLabel").grid(
                row=row, column=0, sticky="w", padx=(0, 10), pady=3)
            cap = FIELD_LIMIT if row == 0 else limit
            check = (self.win.register(lambda proposed, cap=cap: len(proposed) <= cap), "%P")
            entry = ttk.Entry(grid, show="•", width=24, validate="key", validatecommand=check)
            entry.grid(row=row, column=1, sticky="w", pady=3)
            entry.bind("<KeyRelease>", lambda _e: self._update())
            for key in ("<Return>", "<KP_Enter>"):
                entry.bind(key, self._next_handler(row))
            self.entries.append(entry)
        rule = length_rule(self.state.pin)
        if rule:
            ttk.Label(self.body, text=_("New PIN: {rule}").format(rule=rule),
                      style="Small.TLabel", wraplength=WRAP).pack(anchor="w", pady=(4, 0))
        self.mismatch = ttk.Label(self.body, text="", style="Warning.TLabel", wraplength=WRAP)
        self.mismatch.pack(anchor="w", pady=(2, 0))
        self.extra()
        self.primary = self.add_button(self.primary_text(), self._submit)
        self.add_button(_("Cancel"), self.cancel)
        return self.entries[0]

    def extra(self) -> None:
        """More, under the fields (the unblock form's last-try confirmation)."""

    def _fits(self, size: int) -> bool:
        pin = self.state.pin
        return size > 0 and not (pin.min_length and size < pin.min_length) and not (
            pin.max_length and size > pin.max_length)

    def enabled(self, button: ttk.Button) -> bool:
        if button is not getattr(self, "primary", None) or len(self.entries) < 3:
            return True
        first, new, again = (e.get() for e in self.entries)
        return bool(first) and self._fits(len(new.encode("utf-8"))) and new == again

    def _update(self) -> None:
        if self.mismatch is not None and len(self.entries) == 3:
            new, again = self.entries[1].get(), self.entries[2].get()
            differs = bool(again) and not new.startswith(again)
            self.mismatch.configure(text=_("The two new PINs differ.") if differs else "")
        if self.armed and not self._closed:
            self.primary.state(["!disabled"] if self.enabled(self.primary) else ["disabled"])

    def _next_handler(self, index: int) -> Callable[[tk.Event[tk.Misc]], str]:
        return lambda _event: self._next(index)

    def _next(self, index: int) -> str:
        if index + 1 < len(self.entries):
            self.entries[index + 1].focus_set()
        else:
            self._submit()
        return "break"

    def _submit(self) -> None:
        if not self.armed or self._closed or not self.enabled(self.primary):
            return
        first, new = (bytearray(e.get().encode("utf-8")) for e in self.entries[:2])
        for entry in self.entries:
            entry.delete(0, "end")
        answer = PinPair(Secret(first), Secret(new))
        first[:] = bytes(len(first))  # the Secrets hold their own copies
        new[:] = bytes(len(new))
        self.finish(answer)

    def on_close(self) -> None:
        for entry in self.entries:
            entry.delete(0, "end")


class ChangePinDialog(PinForm):
    window_class = "ImzaPinChange"

    def headline_text(self) -> str:
        return _("Change the PIN of “{token}”").format(token=self.token_name)

    def title_text(self) -> str:
        return _("Change PIN")

    def first_label(self) -> str:
        return _("Current PIN")

    def primary_text(self) -> str:
        return _("Change PIN")

    def notes(self) -> None:
        for text in pin_notes(self.state):
            self.note(text, "Danger.TLabel" if self.state.pin.final_try else "Warning.TLabel")


class UnblockPinDialog(PinForm):
    window_class = "ImzaPinUnblock"

    def headline_text(self) -> str:
        return _("Unblock the PIN of “{token}”").format(token=self.token_name)

    def title_text(self) -> str:
        return _("Unblock PIN")

    def first_label(self) -> str:
        return _("PUK")

    def primary_text(self) -> str:
        return _("Unblock")

    def notes(self) -> None:
        self.note(_("Enter the PUK (or the security officer PIN) that came with your token, "
                    "and choose a new PIN. Every wrong PUK uses up a try."), "TLabel", gap=0)
        for text in puk_notes(self.state):
            self.note(text, "Danger.TLabel" if self.state.puk_final_try else "Warning.TLabel")

    def extra(self) -> None:
        self.confirm: tk.BooleanVar | None = None
        if not self.state.puk_final_try:
            return
        # The last PUK try is never spent by a key press alone: it takes this box too.
        self.confirm = tk.BooleanVar(self.win, value=False)
        box = ttk.Checkbutton(self.body, variable=self.confirm, command=self._update,
                              text=_("I know this is the last PUK try."))
        box.pack(anchor="w", pady=(6, 0))

    def enabled(self, button: ttk.Button) -> bool:
        confirm = getattr(self, "confirm", None)
        if button is getattr(self, "primary", None) and confirm is not None \
                and not confirm.get():
            return False
        return super().enabled(button)

    def on_close(self) -> None:
        super().on_close()
        self.confirm = None  # a Tk variable is freed on the Tk thread


class PinResultDialog(AgentDialog[None]):
    """What came of it, or why nothing can be done here; one Close button."""

    window_class = "ImzaPinResult"

    def __init__(self, root: tk.Misc, future: concurrent.futures.Future[None], title: str,
                 message: str, timeout: float, *, danger: bool = False,
                 arming_delay: float = ARMING_DELAY) -> None:
        self.title = title
        self.message = message
        self.danger = danger
        super().__init__(root, future, timeout, arming_delay=arming_delay)

    def headline_text(self) -> str:
        return self.title

    def build(self) -> tk.Widget:
        self.note(self.message, "Danger.TLabel" if self.danger else "TLabel", gap=0)
        return self.add_button(_("Close"), lambda: self.finish(None))

    def cancel(self) -> None:
        self.finish(None)
