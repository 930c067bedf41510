"""The agent's own windows: consent, certificate picker, PIN (with the signing
confirmation), PIN locked.

Every dialog runs on the Tk thread, stays on top, names the asking site first and large,
shows page-supplied text only as plain text, and is fully usable from the keyboard
(Tab moves in reading order, Return takes the focused button or the default action,
Escape cancels).  A dialog reports once through its future and then destroys itself.
"""

from __future__ import annotations

import concurrent.futures
import math
import time
import tkinter as tk
from collections.abc import Callable
from tkinter import ttk
from typing import Generic, NamedTuple, TypeVar
from urllib.parse import urlsplit

from agent.app.dialogs import CertificateChoice, ConsentAnswer, ConsentRequest, PinRequest
from agent.errors import PinStatus, UserCancelled, UserTimeout
from agent.i18n import N_, _
from agent.keystores.base import PIN_PAD, Credential, Secret
from agent.ui.tk.style import WRAP

T = TypeVar("T")  # what a dialog answers

# Buttons stay inert this long after a dialog appears, so a key pressed for the web page
# a moment earlier cannot answer the agent's question.
ARM_MS = 400
# Page text is capped by the core already; a second cap keeps the dialog bounded anyway.
PAGE_TEXT_LIMIT = 500
DEFAULT_PORTS = {"https": 443, "http": 80}

PERMISSION_TEXT = {
    "select": N_("see your certificates and let you choose one"),
    "sign": N_("ask you to sign with your certificate"),
    "auth": N_("ask you to log in with your certificate"),
    "tokens": N_("see when a token is inserted or removed"),
    "list": N_("list your certificates without asking"),
}
UNUSABLE_TEXT = {
    "expired": N_("expired"),
    "not_yet_valid": N_("not yet valid"),
}


def display_host(origin: str) -> str:
    """The host a person must recognise: no scheme, and the port only if unusual."""
    parts = urlsplit(origin)
    host = parts.hostname or origin
    if parts.port is not None and DEFAULT_PORTS.get(parts.scheme) != parts.port:
        host = f"{host}:{parts.port}"
    return host


def _plain(text: str, limit: int) -> str:
    text = "".join(ch for ch in text if ch.isprintable() or ch in "\n\t")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Dialog(Generic[T]):
    window_class = "ImzaDialog"

    def __init__(self, root: tk.Misc, future: concurrent.futures.Future[T], origin: str,
                 timeout: float) -> None:
        self.future = future
        self.origin = origin
        self._deadline = time.monotonic() + timeout
        self._timer: str | None = None
        self._closed = False
        self._armed = False
        self.buttons: list[ttk.Button] = []

        win = self.win = tk.Toplevel(root, class_=self.window_class)
        win.withdraw()
        host = display_host(origin)
        win.title(f"{host} — imza-agent")
        win.attributes("-topmost", True)
        win.resizable(False, False)
        win.protocol("WM_DELETE_WINDOW", self.cancel)
        win.bind("<Escape>", lambda _e: self.cancel())
        win.bind("<Return>", lambda _e: self._default())
        win.bind("<KP_Enter>", lambda _e: self._default())

        outer = ttk.Frame(win, padding=(18, 14))
        outer.pack(fill="both", expand=True)
        ttk.Label(outer, text=host, style="Host.TLabel", wraplength=WRAP).pack(anchor="w")
        ttk.Label(outer, text=origin, style="Small.TLabel", wraplength=WRAP).pack(anchor="w")
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
        self._tick()
        win.after(ARM_MS, self._arm)
        self._present()

    # --- for subclasses --------------------------------------------------------------

    def headline_text(self) -> str:
        raise NotImplementedError

    def build(self) -> tk.Widget:
        """Fill ``self.body`` and the buttons; return the widget that gets the focus."""
        raise NotImplementedError

    def default_action(self) -> None:
        """What Return does when the focus is not on a button."""

    def on_close(self) -> None:
        """Last chance to wipe what the dialog holds."""

    def countdown_text(self, seconds: int) -> str:
        return _("Closes in {time}").format(time=f"{seconds // 60}:{seconds % 60:02d}")

    # --- helpers ---------------------------------------------------------------------

    def add_button(self, text: str, command: Callable[[], object]) -> ttk.Button:
        button = ttk.Button(self.button_row, text=text, command=lambda: self._press(command),
                            state="disabled")
        button.pack(side="left", padx=(8, 0))

        def on_return(_event: tk.Event[tk.Misc]) -> str:
            button.invoke()
            return "break"  # the dialog's own Return binding must not run as well

        button.bind("<Return>", on_return)
        button.bind("<KP_Enter>", on_return)
        self.buttons.append(button)
        return button

    def fact_grid(self, parent: tk.Misc, rows: list[tuple[str, str]]) -> ttk.Frame:
        grid = ttk.Frame(parent)
        for row, (key, value) in enumerate(rows):
            ttk.Label(grid, text=key, style="Key.TLabel").grid(
                row=row, column=0, sticky="nw", padx=(0, 10), pady=1)
            ttk.Label(grid, text=value, wraplength=WRAP - 130, justify="left").grid(
                row=row, column=1, sticky="nw", pady=1)
        return grid

    def _press(self, command: Callable[[], object]) -> None:
        if self._armed and not self._closed:
            command()

    def _default(self) -> None:
        if self._armed and not self._closed:
            self.default_action()

    def _arm(self) -> None:
        if self._closed:
            return
        self._armed = True
        for button in self.buttons:
            if str(button.cget("state")) == "disabled" and self.enabled(button):
                button.state(["!disabled"])

    def enabled(self, button: ttk.Button) -> bool:
        """Whether an armed button may be pressed now (a subclass may hold one back)."""
        return True

    def _tick(self) -> None:
        remaining = math.ceil(self._deadline - time.monotonic())
        if remaining <= 0:
            self.fail(UserTimeout())
            return
        self.countdown.configure(text=self.countdown_text(remaining))
        self._timer = self.win.after(1000, self._tick)

    def _present(self) -> None:
        win = self.win
        win.update_idletasks()
        width, height = win.winfo_reqwidth(), win.winfo_reqheight()
        x = max(0, (win.winfo_screenwidth() - width) // 2)
        y = max(0, (win.winfo_screenheight() - height) // 3)
        win.geometry(f"+{x}+{y}")
        win.deiconify()
        win.lift()
        win.focus_force()
        self.first_focus.focus_set()

    # --- ending ----------------------------------------------------------------------

    def finish(self, value: T) -> None:
        if not self.future.done():
            self.future.set_result(value)
        self.close()

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)
        self.close()

    def cancel(self) -> None:
        self.fail(UserCancelled())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self.win.after_cancel(self._timer)
        self.on_close()
        self.win.destroy()


class ConsentDialog(Dialog[ConsentAnswer]):
    window_class = "ImzaConsent"

    def __init__(self, root: tk.Misc, future: concurrent.futures.Future[ConsentAnswer],
                 request: ConsentRequest, timeout: float) -> None:
        self.request = request
        super().__init__(root, future, request.origin, timeout)

    def headline_text(self) -> str:
        return _("This website asks to use your electronic signature.")

    def build(self) -> tk.Widget:
        ttk.Label(self.body, text=_("If you allow it, the website may:"),
                  wraplength=WRAP).pack(anchor="w")
        for permission in self.request.permissions:
            text = PERMISSION_TEXT.get(permission, permission)
            ttk.Label(self.body, text="•  " + _(text), wraplength=WRAP - 20,
                      justify="left").pack(anchor="w", padx=(10, 0))
        ttk.Label(self.body, text=_("Nothing is signed without your PIN."),
                  style="Small.TLabel", wraplength=WRAP).pack(anchor="w", pady=(8, 0))
        once = self.add_button(_("Allow once"), lambda: self.finish(ConsentAnswer.ONCE))
        self.add_button(_("Always allow"), lambda: self.finish(ConsentAnswer.ALWAYS))
        self.add_button(_("Deny"), lambda: self.finish(ConsentAnswer.DENY))
        return once

    def default_action(self) -> None:
        self.finish(ConsentAnswer.ONCE)


def certificate_facts(choice: CertificateChoice) -> list[tuple[str, str]]:
    token = choice.token_label + (f" ({_('demo')})" if choice.demo else "")
    return [(_("Holder"), choice.holder), (_("Issuer"), choice.issuer),
            (_("Valid"), f"{choice.not_before} – {choice.not_after}"), (_("Token"), token)]


class CertificatePicker(Dialog[int]):
    window_class = "ImzaPicker"

    def __init__(self, root: tk.Misc, future: concurrent.futures.Future[int], origin: str,
                 purpose: str, choices: list[CertificateChoice], timeout: float) -> None:
        self.purpose = purpose
        self.choices = choices
        super().__init__(root, future, origin, timeout)

    def headline_text(self) -> str:
        if self.purpose == "auth":
            return _("This website asks you to choose a certificate to log in.")
        return _("This website asks you to choose a certificate for signing.")

    def build(self) -> tk.Widget:
        self.selected = tk.IntVar(self.win, value=-1)
        self.rows: list[ttk.Radiobutton] = []
        for index, choice in enumerate(self.choices):
            lines = [choice.holder + (f"  ({_('demo')})" if choice.demo else ""),
                     f"{_('Issuer')}: {choice.issuer}",
                     f"{_('Token')}: {choice.token_label}",
                     f"{_('Valid')}: {choice.not_before} – {choice.not_after}"]
            if not choice.usable:
                reason = UNUSABLE_TEXT.get(choice.unusable_reason or "", N_("not usable"))
                lines[-1] += f"  — {_(reason)}"
            row = ttk.Radiobutton(self.body, text="\n".join(lines), value=index,
                                  variable=self.selected, command=self._update,
                                  state="normal" if choice.usable else "disabled")
            row.configure(style="TRadiobutton")
            row.pack(anchor="w", fill="x", pady=3)
            self._bind_arrows(row, index)
            # A row never changes the selection when Tab passes through it.
            self.rows.append(row)
        usable = [i for i, c in enumerate(self.choices) if c.usable]
        if usable:
            self.selected.set(usable[0])
        self.choose = self.add_button(_("Choose"), self._choose)
        self.add_button(_("Cancel"), self.cancel)
        return self.rows[usable[0]] if usable else self.buttons[-1]

    def _bind_arrows(self, row: ttk.Radiobutton, index: int) -> None:
        row.bind("<Down>", lambda _e: self._step(index, 1))
        row.bind("<Up>", lambda _e: self._step(index, -1))

    def _step(self, index: int, direction: int) -> str:
        i = index + direction
        while 0 <= i < len(self.choices):
            if self.choices[i].usable:
                self.selected.set(i)
                self.rows[i].focus_set()
                break
            i += direction
        return "break"

    def _update(self) -> None:
        if self._armed:
            self.choose.state(["!disabled"] if self.enabled(self.choose) else ["disabled"])

    def enabled(self, button: ttk.Button) -> bool:
        if button is not getattr(self, "choose", None):
            return True
        index = self.selected.get()
        return 0 <= index < len(self.choices) and self.choices[index].usable

    def _choose(self) -> None:
        if self.enabled(self.choose):
            self.finish(self.selected.get())

    def default_action(self) -> None:
        self._choose()


class PinNotice(NamedTuple):
    """One warning line of the PIN dialog."""

    text: str
    style: str  # ttk label style: Warning.TLabel or Danger.TLabel
    gap: int  # pixels above the line


def pin_notices(request: PinRequest) -> list[PinNotice]:
    """The PIN dialog's warnings: a wrong PIN or password, then what the token's flags
    say.  PKCS#11 reports no count of tries left, only "low" and "final try", so neither
    does the dialog."""
    notices: list[PinNotice] = []
    if request.retry is not None:
        wrong = _("Wrong password.") if request.password else _("Wrong PIN.")
        notices.append(PinNotice(wrong, "Warning.TLabel", 10))
    status = request.retry if request.retry is not None else request.pin
    if status.final_try:
        notices.append(PinNotice(
            _("Last try: if this PIN is wrong too, the token will be locked."),
            "Danger.TLabel", 6))
    elif status.count_low:
        notices.append(PinNotice(_("Only a few tries are left."), "Warning.TLabel", 6))
    return notices


class PinDialog(Dialog[Credential]):
    """What is signed, for which site, with which certificate, and the PIN for it.

    With a PIN pad the dialog has no field: after "Sign" it asks for the PIN on the
    reader and stays open (with its countdown) while the reader waits."""

    window_class = "ImzaPin"

    def __init__(self, root: tk.Misc, future: concurrent.futures.Future[Credential],
                 request: PinRequest, timeout: float) -> None:
        self.request = request
        self.entry: ttk.Entry | None = None
        super().__init__(root, future, request.origin, timeout)

    def headline_text(self) -> str:
        if self.request.action == "auth":
            return _("This website asks you to log in with your certificate.")
        return _("This website asks you to sign with your certificate.")

    def build(self) -> tk.Widget:
        request = self.request
        if request.action != "auth" and request.count > 1:
            ttk.Label(self.body, text=_("Items to sign: {n}").format(n=request.count),
                      style="Strong.TLabel", wraplength=WRAP).pack(anchor="w")
        if request.document_name:
            self.fact_grid(self.body, [(_("Document"), _plain(request.document_name, 120))]
                           ).pack(anchor="w", pady=(2, 0))
        if request.display_text:
            self._page_text(request.display_text)
        ttk.Label(self.body, text=_("Certificate"), style="Strong.TLabel").pack(
            anchor="w", pady=(8, 2))
        self.fact_grid(self.body, certificate_facts(request.certificate)).pack(anchor="w")
        self._warnings()
        primary = _("Log in") if request.action == "auth" else _("Sign")
        if request.pin.pin_pad:
            self.pin_pad_note = ttk.Label(
                self.body, style="Strong.TLabel", wraplength=WRAP, justify="left",
                text=_("This token has a PIN pad: after you press the button, enter the "
                       "PIN on the reader."))
            self.pin_pad_note.pack(anchor="w", pady=(10, 0))
            self.primary = self.add_button(primary, self._use_pin_pad)
            self.add_button(_("Cancel"), self.cancel)
            return self.primary
        field = ttk.Frame(self.body)
        field.pack(anchor="w", fill="x", pady=(10, 0))
        ttk.Label(field, text=_("Password") if request.password else _("PIN"),
                  style="Strong.TLabel").pack(side="left", padx=(0, 10))
        limit = request.pin.max_length or 64
        check = (self.win.register(lambda proposed: len(proposed) <= limit), "%P")
        self.entry = ttk.Entry(field, show="•", width=24, validate="key",
                               validatecommand=check)
        self.entry.pack(side="left")
        self.entry.bind("<KeyRelease>", lambda _e: self._update())
        hint = self._length_hint(request.pin)
        if hint:
            ttk.Label(self.body, text=hint, style="Small.TLabel", wraplength=WRAP).pack(
                anchor="w", pady=(2, 0))
        self.primary = self.add_button(primary, self._submit)
        self.add_button(_("Cancel"), self.cancel)
        return self.entry

    def _page_text(self, text: str) -> None:
        ttk.Label(self.body, text=_("Text from the website:"), style="Key.TLabel").pack(
            anchor="w", pady=(6, 2))
        shown = _plain(text, PAGE_TEXT_LIMIT)
        lines = sum(1 + len(line) // 60 for line in shown.splitlines() or [""])
        box = tk.Text(self.body, width=58, height=min(6, max(1, lines)), wrap="word",
                      relief="solid", borderwidth=1, background="#f6f6f6",
                      takefocus=0, font="TkDefaultFont", padx=6, pady=4)
        box.insert("1.0", shown)  # a Text widget shows characters, never markup
        box.configure(state="disabled")
        box.pack(anchor="w", fill="x")

    def _warnings(self) -> None:
        for notice in pin_notices(self.request):
            ttk.Label(self.body, text=notice.text, style=notice.style, wraplength=WRAP,
                      justify="left").pack(anchor="w", pady=(notice.gap, 0))

    @staticmethod
    def _length_hint(pin: PinStatus) -> str | None:
        if pin.min_length and pin.max_length:
            return _("From {min} to {max} characters").format(min=pin.min_length,
                                                              max=pin.max_length)
        if pin.min_length:
            return _("At least {min} characters").format(min=pin.min_length)
        return None

    def enabled(self, button: ttk.Button) -> bool:
        if self.entry is None or button is not getattr(self, "primary", None):
            return True
        return len(self.entry.get()) >= max(1, self.request.pin.min_length)

    def _update(self) -> None:
        if self._armed and not self._closed:
            self.primary.state(["!disabled"] if self.enabled(self.primary) else ["disabled"])

    def _submit(self) -> None:
        assert self.entry is not None
        if not self.enabled(self.primary):
            return
        typed = bytearray(self.entry.get().encode("utf-8"))
        self.entry.delete(0, "end")
        secret = Secret(typed)
        typed[:] = bytes(len(typed))  # Secret holds its own copy; wipe ours
        self.finish(secret)

    def default_action(self) -> None:
        if self.entry is not None:
            self._submit()
        else:
            self._use_pin_pad()

    def _use_pin_pad(self) -> None:
        """The reader takes over: answer now and keep the window as the reader's prompt."""
        if not self.future.done():
            self.future.set_result(PIN_PAD)
        for button in self.buttons:
            button.destroy()
        self.buttons.clear()
        self.headline.configure(text=_("Enter the PIN on the reader's keypad."))
        self.pin_pad_note.pack_forget()  # the headline now says it
        self._deadline = time.monotonic() + self.pin_pad_seconds

    pin_pad_seconds = 120.0

    def countdown_text(self, seconds: int) -> str:
        if self.future.done() and not self._closed:  # waiting for the reader
            return _("The reader waits {time}").format(
                time=f"{seconds // 60}:{seconds % 60:02d}")
        return super().countdown_text(seconds)

    def cancel(self) -> None:
        if self.future.done():  # the reader's prompt: closing it cancels nothing more
            self.close()
        else:
            super().cancel()

    def on_close(self) -> None:
        if self.entry is not None:
            self.entry.delete(0, "end")


class PinLockedDialog(Dialog[None]):
    window_class = "ImzaPinLocked"

    def __init__(self, root: tk.Misc, future: concurrent.futures.Future[None], origin: str,
                 token_label: str, unlock: str, timeout: float) -> None:
        self.token_label = token_label
        self.unlock = unlock
        super().__init__(root, future, origin, timeout)

    def headline_text(self) -> str:
        return _("The PIN is locked.")

    def build(self) -> tk.Widget:
        ttk.Label(self.body, wraplength=WRAP, justify="left", text=_(
            "Too many wrong PINs were entered for “{token}”. It cannot sign or log in "
            "until it is unlocked.").format(token=self.token_label)).pack(anchor="w")
        if self.unlock == "PUK":
            how = _("To unlock it, enter the PUK code (or the security officer PIN) in the "
                    "token's management program. If you do not have it, call your "
                    "certificate issuer's help line.")
        else:
            how = _("To unlock it, call your certificate issuer's help line.")
        ttk.Label(self.body, text=how, wraplength=WRAP, justify="left").pack(
            anchor="w", pady=(8, 0))
        return self.add_button(_("Close"), lambda: self.finish(None))

    def default_action(self) -> None:
        self.finish(None)

    def cancel(self) -> None:
        self.finish(None)  # nothing to refuse: closing is the answer
