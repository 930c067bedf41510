"""Keyjacking (issue 11, §4): keys a person presses for a web page must not answer the
agent's dialogs.  Real tk dialogs on Xvfb, keys from outside with xdotool (the X server's
own auto-repeat included), and a separate "page" window that has the keyboard first.

The rule under test (agent/ui/tk/arming.py): a dialog arms only after the arming delay
passes with no key press and no focus change of its window; a repeating (held) key
disarms it again; Return and space press nothing until a key has been let go after
arming; and no dialog has a Return default that grants anything.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import test_ui_tk
from pydantic import ValidationError
from test_ui_tk import ORIGIN, WAIT, Desktop, in_thread, on_tk

from agent.app.dialogs import CertificateChoice, ConsentAnswer, ConsentRequest, PinRequest
from agent.config import UiConfig
from agent.errors import PinStatus, UserCancelled
from agent.keystores.base import Secret
from agent.ui.tk import TkUI
from agent.ui.tk.dialogs import ARMING_DELAY

pytestmark = [pytest.mark.desktop]

# test_ui_tk's fixtures: a private Xvfb, xdotool on it, and a TkUI drawing there.
display = test_ui_tk.display
desktop = test_ui_tk.desktop
ui = test_ui_tk.ui

HOLD = 3.0  # seconds a key is held: several arming delays, many auto-repeats
PAGE_SCRIPT = """
import tkinter
root = tkinter.Tk(className="ImzaTestPage")
root.geometry("300x100+10+10")
tkinter.Entry(root).pack()
root.mainloop()
"""


def certificate(holder: str) -> CertificateChoice:
    return CertificateChoice(holder=holder, issuer="Test CA", serial_hex="01",
                             not_before="2025-01-01", not_after="2030-01-01",
                             token_label="Token A", usable=True)


CHOICES = [certificate("Əliyev Əli"), certificate("Məmmədova Leyla")]
Ask = Callable[[TkUI], Coroutine[Any, Any, object]]
# Every dialog whose focused widget or Return could once grant something.
DIALOGS: dict[str, tuple[str, Ask]] = {
    "consent": ("ImzaConsent", lambda ui: ui.ask_consent(ConsentRequest(ORIGIN, ("select",)))),
    "picker": ("ImzaPicker", lambda ui: ui.choose_certificate(ORIGIN, "sign", CHOICES)),
    "pin-pad": ("ImzaPin", lambda ui: ui.ask_pin(PinRequest(
        ORIGIN, "sign", CHOICES[0], PinStatus(pin_pad=True)))),
}


@pytest.fixture(scope="module")
def page(display: str, desktop: Desktop) -> Iterator[str]:
    """Another program's window (the browser), which has the keyboard to begin with."""
    process = subprocess.Popen([sys.executable, "-c", PAGE_SCRIPT],
                               env=desktop.env)
    try:
        deadline = time.monotonic() + WAIT
        while not (found := desktop.windows("ImzaTestPage")):
            assert time.monotonic() < deadline, "the page window did not appear"
            time.sleep(0.05)
        yield found[-1]
    finally:
        process.terminate()
        process.wait()


@pytest.fixture
def slow_arming(ui: TkUI) -> Iterator[float]:
    """A long arming delay, so that "before it arms" is wide enough to act in reliably."""
    previous = ui.config
    ui.config = UiConfig(language="en", dialog_timeout=60, arming_delay=2.0)
    try:
        yield 2.0
    finally:
        ui.config = previous


def focus(desktop: Desktop, window: str) -> None:
    """The keyboard to ``window``, as a window manager or a click would do it."""
    desktop._run("xdotool", "windowfocus", "--sync", window)


def has_keyboard(dialog: Any) -> bool:
    """Whether Tk has seen the window get the keyboard (and so run its focus bindings)."""
    return dialog.win.focus_get() is not None


def wait_until(ui: TkUI, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not on_tk(ui, check):
        assert time.monotonic() < deadline, "the dialog never reached that state"
        time.sleep(0.05)


def current(ui: TkUI) -> Any:
    dialog = ui.current
    assert dialog is not None
    return dialog


async def settle() -> None:
    """Give keys already sent time to reach the dialog before asserting they did nothing."""
    await asyncio.sleep(0.7)


async def finish(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with pytest.raises((asyncio.CancelledError, UserCancelled)):
        await task


@pytest.mark.parametrize("name", DIALOGS)
async def test_return_held_while_a_dialog_appears_answers_nothing(
        ui: TkUI, desktop: Desktop, page: str, name: str) -> None:
    window_class, ask = DIALOGS[name]
    await in_thread(focus, desktop, page)
    await in_thread(desktop._run, "xdotool", "keydown", "Return")
    try:
        task = asyncio.create_task(ask(ui))
        window = await in_thread(desktop.wait_window, window_class)
        dialog = current(ui)
        # A window manager that focuses new windows: the held key now repeats into it.
        await in_thread(focus, desktop, window)
        await asyncio.sleep(HOLD)
        assert not task.done(), "a held Return answered the dialog"
    finally:
        await in_thread(desktop._run, "xdotool", "keyup", "Return")
    # The repeats reached the dialog and each one started the wait again.
    assert on_tk(ui, lambda: dialog.arming.restarts) > 10
    # Once the key is up the dialog arms, and still nothing was answered.
    await in_thread(wait_until, ui, lambda: dialog.armed)
    await settle()
    assert not task.done()
    await finish(task)


@pytest.mark.parametrize("name", DIALOGS)
async def test_return_pressed_and_held_after_arming_answers_nothing(
        ui: TkUI, desktop: Desktop, name: str) -> None:
    window_class, ask = DIALOGS[name]
    task = asyncio.create_task(ask(ui))
    window = await in_thread(desktop.wait_window, window_class)
    dialog = current(ui)
    await in_thread(focus, desktop, window)
    await in_thread(wait_until, ui, lambda: has_keyboard(dialog) and dialog.armed)
    await in_thread(desktop._run, "xdotool", "keydown", "Return")
    try:
        await asyncio.sleep(HOLD)
        assert not task.done()
    finally:
        await in_thread(desktop._run, "xdotool", "keyup", "Return")
    await in_thread(wait_until, ui, lambda: dialog.armed)
    await settle()
    assert not task.done(), "a held Return answered the dialog"
    await finish(task)


async def test_return_grants_nothing_without_moving_to_a_button(ui: TkUI,
                                                                desktop: Desktop) -> None:
    """Armed, with a key let go, Return presses the focused widget only: Deny in the
    consent dialog (never Allow), a row in the picker (which chooses nothing)."""
    consent = asyncio.create_task(DIALOGS["consent"][1](ui))
    window = await in_thread(desktop.wait_window, "ImzaConsent")
    await in_thread(desktop.key, window, "shift", "Return")
    assert await consent is ConsentAnswer.DENY

    picker = asyncio.create_task(DIALOGS["picker"][1](ui))
    window = await in_thread(desktop.wait_window, "ImzaPicker")
    await in_thread(desktop.key, window, "shift", "Return", "KP_Enter", "space", "Return")
    await settle()
    assert not picker.done(), "Return on a picker row chose a certificate"
    await finish(picker)


async def test_after_arming_a_deliberate_key_press_works(ui: TkUI, desktop: Desktop) -> None:
    # Consent: from Deny back to Always allow, then Return.
    consent = asyncio.create_task(DIALOGS["consent"][1](ui))
    window = await in_thread(desktop.wait_window, "ImzaConsent")
    await in_thread(desktop.key, window, "shift+Tab", "Return")
    assert await consent is ConsentAnswer.ALWAYS

    # Picker: down to the second row, Tab to Choose, Return.
    picker = asyncio.create_task(DIALOGS["picker"][1](ui))
    window = await in_thread(desktop.wait_window, "ImzaPicker")
    await in_thread(desktop.key, window, "Down", "Tab", "Return")
    assert await picker == 1


async def test_the_first_return_after_arming_needs_a_key_let_go_first(
        ui: TkUI, desktop: Desktop) -> None:
    consent = asyncio.create_task(DIALOGS["consent"][1](ui))
    window = await in_thread(desktop.wait_window, "ImzaConsent")
    dialog = current(ui)
    await in_thread(focus, desktop, window)
    await in_thread(wait_until, ui, lambda: has_keyboard(dialog) and dialog.armed)
    await in_thread(desktop._run, "xdotool", "key", "Return")  # nothing was let go since
    await settle()
    assert not consent.done()
    await in_thread(desktop._run, "xdotool", "key", "Return")  # the first one went up
    assert await consent is ConsentAnswer.DENY


async def test_a_focus_change_restarts_the_arming(ui: TkUI, desktop: Desktop, page: str,
                                                  slow_arming: float) -> None:
    task = asyncio.create_task(DIALOGS["consent"][1](ui))
    window = await in_thread(desktop.wait_window, "ImzaConsent")
    dialog = current(ui)
    assert on_tk(ui, lambda: dialog.arming.delay_ms) == 2000  # [ui] arming_delay
    await in_thread(focus, desktop, window)
    await in_thread(wait_until, ui, lambda: has_keyboard(dialog) and dialog.armed)
    restarts = on_tk(ui, lambda: dialog.arming.restarts)

    # The keyboard goes to the page and comes back: the dialog is disarmed at once...
    await in_thread(focus, desktop, page)
    await in_thread(wait_until, ui, lambda: not has_keyboard(dialog))
    assert on_tk(ui, lambda: dialog.armed) is False
    await in_thread(focus, desktop, window)
    await in_thread(wait_until, ui, lambda: has_keyboard(dialog))
    assert on_tk(ui, lambda: dialog.arming.restarts) >= restarts + 2
    # ...so keys right after the focus change do nothing at all (not even move the
    # focus), and restart the wait.
    await in_thread(desktop._run, "xdotool", "key", "shift+Tab", "Return")
    await settle()
    assert not task.done()
    assert on_tk(ui, lambda: dialog.armed) is False
    assert on_tk(ui, lambda: dialog.win.focus_get() is dialog.buttons[2])  # still Deny
    # Armed again later, the same keys work: the dialog stays usable by keyboard.
    await in_thread(wait_until, ui, lambda: dialog.armed)
    await in_thread(desktop._run, "xdotool", "key", "shift+Tab", "Return")
    assert await task is ConsentAnswer.ALWAYS


async def test_every_key_press_before_arming_restarts_it(ui: TkUI, desktop: Desktop,
                                                         slow_arming: float) -> None:
    """Keys typed for the page before the PIN dialog arms neither reach its PIN field
    nor let it arm: each one starts the wait again."""
    task = asyncio.create_task(ui.ask_pin(PinRequest(ORIGIN, "sign", CHOICES[0],
                                                     PinStatus())))
    window = await in_thread(desktop.wait_window, "ImzaPin")
    dialog = current(ui)
    await in_thread(focus, desktop, window)
    await in_thread(wait_until, ui, lambda: has_keyboard(dialog))
    restarts = on_tk(ui, lambda: dialog.arming.restarts)
    for digit in "1234":
        await in_thread(desktop._run, "xdotool", "key", digit)
        await asyncio.sleep(0.5)  # well within the 2 s delay, so it never arms meanwhile
    assert on_tk(ui, lambda: dialog.armed) is False
    assert on_tk(ui, lambda: dialog.arming.restarts) == restarts + 4
    assert on_tk(ui, lambda: dialog.entry.get()) == ""
    # Armed, typing and Return work.
    await in_thread(wait_until, ui, lambda: dialog.armed)
    await in_thread(desktop._run, "xdotool", "type", "--delay", "30", "5678")
    await in_thread(desktop._run, "xdotool", "key", "Return")
    secret = await task
    assert isinstance(secret, Secret) and secret.reveal() == b"5678"


def test_the_arming_delay_is_a_bounded_setting() -> None:
    assert UiConfig().arming_delay == ARMING_DELAY == 0.5
    for wrong in (0.0, 0.1, 6.0):
        with pytest.raises(ValidationError):
            UiConfig(arming_delay=wrong)


async def test_a_space_typed_first_in_the_password_field_is_kept(ui: TkUI,
                                                                 desktop: Desktop) -> None:
    """Space presses a button, so it waits for a let-go key like Return does; in a text
    field it only types, and a password may begin with it."""
    task = asyncio.create_task(ui.ask_pin(PinRequest(ORIGIN, "sign", CHOICES[0], PinStatus(),
                                                     password=True)))
    window = await in_thread(desktop.wait_window, "ImzaPin")
    dialog = current(ui)
    await in_thread(focus, desktop, window)
    await in_thread(wait_until, ui, lambda: has_keyboard(dialog) and dialog.armed)
    await in_thread(desktop._run, "xdotool", "type", "--delay", "30", " ab")
    await in_thread(desktop._run, "xdotool", "key", "Return")
    secret = await task
    assert isinstance(secret, Secret) and secret.reveal() == b" ab"


async def test_escape_pressed_through_a_flood_does_not_cancel_the_dialog_that_comes_next(
        ui: TkUI, desktop: Desktop, page: str) -> None:
    """Issue 11, §8: a person dismissing a flood of dialogs with Escape must not cancel the
    trusted site's dialog that takes the screen next. Every press before the dialog arms
    is swallowed and starts the wait again; once the presses stop, Escape works."""
    window_class, ask = DIALOGS["consent"]
    await in_thread(focus, desktop, page)
    task = asyncio.create_task(ask(ui))
    window = await in_thread(desktop.wait_window, window_class)
    dialog = current(ui)
    await in_thread(focus, desktop, window)
    for _ in range(12):  # separate presses, faster than the arming delay
        await in_thread(desktop._run, "xdotool", "key", "Escape")
        await asyncio.sleep(0.15)
        assert not task.done(), "an Escape meant for another dialog cancelled this one"
    assert on_tk(ui, lambda: dialog.arming.restarts) >= 10
    await in_thread(wait_until, ui, lambda: has_keyboard(dialog) and dialog.armed)
    await settle()
    assert not task.done()
    # Still usable by keyboard: a deliberate Escape once armed closes it.
    await in_thread(desktop._run, "xdotool", "key", "Escape")
    with pytest.raises(UserCancelled):
        await asyncio.wait_for(task, WAIT)
