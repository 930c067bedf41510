"""The agent's own windows: consent, certificate picker, PIN (with the signing
confirmation), PIN locked.

Every dialog runs on the Tk thread, stays on top, names the asking site first and large,
and is fully usable from the keyboard (Tab moves in reading order, Return or space press
the focused button, Return in the PIN field submits it, Escape cancels).  No dialog has a
default button: Return grants nothing unless the person moved to the button first.  Keys
count only once the dialog is armed (``agent.ui.tk.arming``).

What a page sent (document name, its text, the strings it has signed) appears only in a
tinted, framed area titled as coming from the site, never among the agent's own facts
(the site, the certificate, the token), and always as plain characters with anything
invisible shown as U+FFFD (``agent.ui.page_text``).  A dialog reports once through its
future and then destroys itself.
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

from agent.app.dialogs import (
    CertificateChoice,
    ConsentAnswer,
    ConsentRequest,
    PinRequest,
    SignedField,
)
from agent.config import UiConfig
from agent.errors import PinStatus, UserCancelled, UserTimeout
from agent.i18n import N_, _
from agent.keystores.base import PIN_PAD, Credential, Secret
from agent.ui.page_text import page_block, page_line
from agent.ui.tk.arming import Arming
from agent.ui.tk.style import SITE_TINT, WRAP

T = TypeVar("T")  # what a dialog answers

# Seconds a dialog ignores input after it appears, restarted by every key press and focus
# change before then ([ui] arming_delay; see agent.ui.tk.arming).
ARMING_DELAY: float = UiConfig.model_fields["arming_delay"].default
# Page text is capped by the core already (and single lines by the protocol at 256
# characters); these second caps keep the dialog bounded anyway, above the first ones so
# that a signed string is never cut short on screen.
PAGE_LINE_LIMIT = 300
PAGE_TEXT_LIMIT = 2000
PAGE_TEXT_ROWS = 6  # the page's text box shows this many lines at most, then scrolls
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
SIGNED_FIELD_TEXT = {
    SignedField.REASON: N_("Reason"),
    SignedField.LOCATION: N_("Location"),
    SignedField.STAMP_TEXT: N_("Stamp text"),
    SignedField.FIELD_NAME: N_("Signature field name"),
}


def display_host(origin: str) -> str:
    """The host a person must recognise: no scheme, and the port only if unusual."""
    parts = urlsplit(origin)
    host = parts.hostname or origin
    if parts.port is not None and DEFAULT_PORTS.get(parts.scheme) != parts.port:
        host = f"{host}:{parts.port}"
    return host


class Dialog(Generic[T]):
    window_class = "ImzaDialog"

    def __init__(self, root: tk.Misc, future: concurrent.futures.Future[T], origin: str,
                 timeout: float, *, arming_delay: float = ARMING_DELAY) -> None:
        self.future = future
        self.origin = origin
        self._deadline = time.monotonic() + timeout
        self._timer: str | None = None
        self._closed = False
        self.buttons: list[ttk.Button] = []

        win = self.win = tk.Toplevel(root, class_=self.window_class)
        win.withdraw()
        host = display_host(origin)
        win.title(f"{host} — imza-agent")
        win.attributes("-topmost", True)
        win.resizable(False, False)
        win.protocol("WM_DELETE_WINDOW", self.cancel)
        win.bind("<Escape>", lambda _e: self.cancel())
        # No window-wide Return: a key meant for the page must find nothing to grant.
        self.arming = Arming(win, arming_delay, self._arming_changed)

        outer = self.outer = ttk.Frame(win, padding=(18, 14))
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
        self.arming.guard(win)
        self._tick()
        self._present()
        self.arming.restart()

    @property
    def armed(self) -> bool:
        return self.arming.armed

    # --- for subclasses --------------------------------------------------------------

    def headline_text(self) -> str:
        raise NotImplementedError

    def build(self) -> tk.Widget:
        """Fill ``self.body`` and the buttons; return the widget that gets the focus."""
        raise NotImplementedError

    def on_close(self) -> None:
        """Last chance to wipe what the dialog holds."""

    def countdown_text(self, seconds: int) -> str:
        return _("Closes in {time}").format(time=f"{seconds // 60}:{seconds % 60:02d}")

    # --- helpers ---------------------------------------------------------------------

    def add_button(self, text: str, command: Callable[[], object],
                   parent: tk.Misc | None = None) -> ttk.Button:
        button = ttk.Button(self.button_row if parent is None else parent, text=text,
                            command=lambda: self._press(command), state="disabled")
        button.pack(side="left", padx=(8, 0) if parent is None else (0, 8))

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
        if self.armed and not self._closed:
            command()

    def _arming_changed(self, armed: bool) -> None:
        """Buttons look and act pressable only while the dialog is armed."""
        if self._closed:
            return
        for button in self.buttons:
            button.state(["!disabled"] if armed and self.enabled(button) else ["disabled"])

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
        # Raised and kept on top, but the keyboard is never taken by force: grabbing the
        # focus from the window the person is typing in sends their next keys, meant for
        # the page, to this dialog — keyjacking.  The window manager gives the focus, or
        # the person clicks the dialog; focus_set only names the widget that gets the
        # keys once the window has them (and every focus change restarts the arming).
        win.lift()
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
        self.arming.stop()
        self.on_close()
        self.win.destroy()


class ConsentDialog(Dialog[ConsentAnswer]):
    window_class = "ImzaConsent"

    def __init__(self, root: tk.Misc, future: concurrent.futures.Future[ConsentAnswer],
                 request: ConsentRequest, timeout: float, *,
                 arming_delay: float = ARMING_DELAY) -> None:
        self.request = request
        super().__init__(root, future, request.origin, timeout, arming_delay=arming_delay)

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
        self.add_button(_("Allow once"), lambda: self.finish(ConsentAnswer.ONCE))
        self.add_button(_("Always allow"), lambda: self.finish(ConsentAnswer.ALWAYS))
        deny = self.add_button(_("Deny"), lambda: self.finish(ConsentAnswer.DENY))
        # Blocking lasts: it sits on its own line under the answers, after them in the
        # Tab order, and is never where the focus starts.
        row = ttk.Frame(self.outer)
        row.pack(fill="x", pady=(10, 0))
        self.block = self.add_button(_("Block this site"),
                                     lambda: self.finish(ConsentAnswer.BLOCK), parent=row)
        ttk.Label(row, style="Small.TLabel", wraplength=WRAP - 150, justify="left",
                  text=_("Every request from {site} will be refused from now on.").format(
                      site=display_host(self.origin))).pack(side="left", anchor="w")
        # The focus starts on Deny: whatever key lands here first can only refuse.
        return deny


def certificate_facts(choice: CertificateChoice) -> list[tuple[str, str]]:
    token = choice.token_label + (f" ({_('demo')})" if choice.demo else "")
    return [(_("Holder"), choice.holder), (_("Issuer"), choice.issuer),
            (_("Valid"), f"{choice.not_before} – {choice.not_after}"), (_("Token"), token)]


class CertificatePicker(Dialog[int]):
    window_class = "ImzaPicker"

    def __init__(self, root: tk.Misc, future: concurrent.futures.Future[int], origin: str,
                 purpose: str, choices: list[CertificateChoice], timeout: float, *,
                 filtered: bool = False, arming_delay: float = ARMING_DELAY) -> None:
        self.purpose = purpose
        self.choices = choices
        self.filtered = filtered
        super().__init__(root, future, origin, timeout, arming_delay=arming_delay)

    def headline_text(self) -> str:
        if self.purpose == "auth":
            return _("This website asks you to choose a certificate to log in.")
        return _("This website asks you to choose a certificate for signing.")

    def build(self) -> tk.Widget:
        self.selected = tk.IntVar(self.win, value=-1)
        self.rows: list[ttk.Radiobutton] = []
        if not self.choices:
            # Shown all the same, so a page learns nothing without the person seeing it.
            self.message = ttk.Label(
                self.body, wraplength=WRAP, justify="left", style="Strong.TLabel",
                text=_("No certificate matches what this site asks for.") if self.filtered
                else _("No certificate found. Insert your token or card."))
            self.message.pack(anchor="w")
            return self.add_button(_("Close"), self.cancel)
        for index, choice in enumerate(self.choices):
            lines = [choice.holder + (f"  ({_('demo')})" if choice.demo else ""),
                     f"{_('Issuer')}: {choice.issuer}",
                     f"{_('Token')}: {choice.token_label}"
                     + (f" — {choice.reader}" if choice.reader else ""),
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
            # A row never changes the selection when Tab passes through it, and Return
            # on a row does nothing: choosing takes the Choose button.
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
        if self.armed:
            self.choose.state(["!disabled"] if self.enabled(self.choose) else ["disabled"])

    def enabled(self, button: ttk.Button) -> bool:
        if button is not getattr(self, "choose", None):
            return True
        index = self.selected.get()
        return 0 <= index < len(self.choices) and self.choices[index].usable

    def _choose(self) -> None:
        if self.enabled(self.choose):
            self.finish(self.selected.get())

    def on_close(self) -> None:
        # A Tk variable must be freed on the Tk thread: the dialog object itself may be
        # dropped later on another one (the asyncio side keeps it while it waits).
        del self.selected


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
                 request: PinRequest, timeout: float, *,
                 arming_delay: float = ARMING_DELAY) -> None:
        self.request = request
        self.entry: ttk.Entry | None = None
        self.site_area: ttk.Labelframe | None = None
        self.page_text: tk.Text | None = None
        self.page_scrollbar: ttk.Scrollbar | None = None
        super().__init__(root, future, request.origin, timeout, arming_delay=arming_delay)

    def headline_text(self) -> str:
        if self.request.action == "auth":
            return _("This website asks you to log in with your certificate.")
        return _("This website asks you to sign with your certificate.")

    def build(self) -> tk.Widget:
        request = self.request
        if request.action != "auth" and request.count > 1:
            ttk.Label(self.body, text=_("Items to sign: {n}").format(n=request.count),
                      style="Strong.TLabel", wraplength=WRAP).pack(anchor="w")
        self._site_area()
        ttk.Label(self.body, text=_("Certificate"), style="Strong.TLabel").pack(
            anchor="w", pady=(8, 2))
        # The agent's own facts: from the certificate and the token, never from the page.
        self.facts = self.fact_grid(self.body, certificate_facts(request.certificate))
        self.facts.pack(anchor="w")
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
        self.entry.bind("<Return>", self._submit_key)
        self.entry.bind("<KP_Enter>", self._submit_key)
        hint = self._length_hint(request.pin)
        if hint:
            ttk.Label(self.body, text=hint, style="Small.TLabel", wraplength=WRAP).pack(
                anchor="w", pady=(2, 0))
        self.primary = self.add_button(primary, self._submit)
        self.add_button(_("Cancel"), self.cancel)
        return self.entry

    def _site_area(self) -> None:
        """Everything the page sent, in one tinted frame titled with the site's name:
        the document name, each string that goes into the signature (labelled by the
        agent), and the page's text in a scrolling box."""
        request = self.request
        rows: list[tuple[str, str]] = []
        if request.document_name:
            rows.append((_("Document"), page_line(request.document_name, PAGE_LINE_LIMIT)))
        for field, value in request.signed_fields:
            label = SIGNED_FIELD_TEXT.get(field)
            rows.append((_(label) if label else str(field), page_line(value, PAGE_LINE_LIMIT)))
        if not rows and not request.display_text:
            return
        area = self.site_area = ttk.Labelframe(self.body, style="Site.TLabelframe")
        # The title as a label of its own, so that a long host name wraps.
        title = ttk.Label(area, style="SiteTitle.TLabel", wraplength=WRAP - 20,
                          justify="left", text=_("Sent by {site} — not checked by the agent")
                          .format(site=display_host(self.origin)))
        area.configure(labelwidget=title)
        area.pack(anchor="w", fill="x", pady=(6, 2))
        if rows:
            grid = ttk.Frame(area, style="Site.TFrame")
            for row, (key, value) in enumerate(rows):
                ttk.Label(grid, text=key, style="SiteKey.TLabel").grid(
                    row=row, column=0, sticky="nw", padx=(0, 10), pady=1)
                ttk.Label(grid, text=value, style="Site.TLabel", wraplength=WRAP - 150,
                          justify="left").grid(row=row, column=1, sticky="nw", pady=1)
            grid.pack(anchor="w", fill="x")
        if request.display_text:
            self._page_text(area, page_block(request.display_text, PAGE_TEXT_LIMIT))

    def _page_text(self, area: ttk.Labelframe, shown: str) -> None:
        """A read-only box that takes the focus with Tab (arrows and Page keys scroll it)
        and shows a scrollbar whenever the text is longer than the box."""
        frame = ttk.Frame(area, style="Site.TFrame")
        frame.pack(anchor="w", fill="x", pady=(4, 2))
        lines = sum(1 + len(line) // 56 for line in shown.splitlines() or [""])
        box = self.page_text = tk.Text(
            frame, width=54, height=min(PAGE_TEXT_ROWS, max(1, lines)), wrap="word",
            relief="solid", borderwidth=1, background="white", takefocus=1,
            highlightthickness=2, highlightcolor="#3b6ea5", highlightbackground=SITE_TINT,
            font="TkDefaultFont", padx=6, pady=4)
        bar = self.page_scrollbar = ttk.Scrollbar(frame, orient="vertical",
                                                  command=box.yview)

        def scrolled(first: float | str, last: float | str) -> None:
            bar.set(first, last)
            if float(first) <= 0.0 and float(last) >= 1.0:
                bar.pack_forget()
            elif not bar.winfo_ismapped():
                bar.pack(side="right", fill="y")

        box.configure(yscrollcommand=scrolled)
        box.insert("1.0", shown)  # a Text widget shows characters, never markup
        box.configure(state="disabled")  # read-only; marks still move, so keys scroll
        box.pack(side="left", fill="both", expand=True)

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
        if self.armed and not self._closed:
            self.primary.state(["!disabled"] if self.enabled(self.primary) else ["disabled"])

    def _submit_key(self, _event: tk.Event[tk.Misc]) -> str:
        self._submit()
        return "break"

    def _submit(self) -> None:
        assert self.entry is not None
        if not self.armed or self._closed:
            return
        if not self.enabled(self.primary):
            return
        typed = bytearray(self.entry.get().encode("utf-8"))
        self.entry.delete(0, "end")
        secret = Secret(typed)
        typed[:] = bytes(len(typed))  # Secret holds its own copy; wipe ours
        self.finish(secret)

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
                 token_label: str, unlock: str, timeout: float, *,
                 arming_delay: float = ARMING_DELAY) -> None:
        self.token_label = token_label
        self.unlock = unlock
        super().__init__(root, future, origin, timeout, arming_delay=arming_delay)

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

    def cancel(self) -> None:
        self.finish(None)  # nothing to refuse: closing is the answer
