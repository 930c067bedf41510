"""The PIN-management windows as the person meets them from the tray: drawn by the real
Tk UI on a private Xvfb, typed into with xdotool, acting on a real SoftHSM token.  Also
screenshots both forms in every language (into a temp dir; ``IMZA_SCREENSHOTS_DIR``, as
scripts/screenshots.sh sets it, points them at docs/screenshots/)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from test_pin_management import LABEL, SO_PIN, USER_PIN, PinBed, _make_token
from test_ui_tk import Desktop, in_thread

from agent import i18n
from agent.config import UiConfig
from agent.errors import PinIncorrect, PinStatus, UserCancelled
from agent.keystores.base import Secret
from agent.keystores.pkcs11.pin_management import PinState
from agent.keystores.pkcs11.store import Pkcs11Store
from agent.pinmgmt import desktop as flow
from agent.pinmgmt.texts import problem_text
from agent.pinmgmt.use_case import ManagedToken, manageable_tokens
from agent.ui.tk import TkUI
from agent.ui.tk.dialogs import ARMING_DELAY
from agent.ui.tk.pin_dialogs import ChangePinDialog, UnblockPinDialog

pytestmark = [pytest.mark.softhsm, pytest.mark.desktop]

T = TypeVar("T")
SCREENSHOTS_ENV = "IMZA_SCREENSHOTS_DIR"
SHOWN_NAME = "Rəqəmsal İmza (2001F4A7)"


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    import subprocess

    xvfb = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "1280x800x24",
                             "-nolisten", "tcp"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert xvfb.stdout is not None
    number = xvfb.stdout.readline().strip()
    assert number.isdigit(), "Xvfb did not start"
    try:
        yield f":{number}"
    finally:
        xvfb.terminate()
        xvfb.wait()


@pytest.fixture(scope="module")
def desktop(display: str) -> Desktop:
    return Desktop(display)


@pytest.fixture(scope="module")
def ui(display: str, desktop: Desktop) -> Iterator[TkUI]:
    desktop.seen.clear()
    previous = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = display
    tk_ui = TkUI(UiConfig(language="en", dialog_timeout=60))
    tk_ui.runner()
    try:
        yield tk_ui
    finally:
        tk_ui.close()
        i18n.set_language("en")
        if previous is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = previous


@pytest.fixture
def bed(tmp_path: Path) -> PinBed:
    return _make_token(tmp_path)


@pytest.fixture
async def store(bed: PinBed) -> AsyncIterator[Pkcs11Store]:
    store = Pkcs11Store(Path("/usr/lib/softhsm/libsofthsm2.so"), env=bed.env, call_timeout=15)
    try:
        yield store
    finally:
        await store.close()


async def on_tk(ui: TkUI, read: Callable[[], T]) -> T:
    """Read widget state on the Tk thread, where the widgets live."""
    return await asyncio.wrap_future(ui.runner().call(read))


def label_texts(widget: Any) -> str:
    """Every label's text inside ``widget``, one per line."""
    texts = []
    if widget.winfo_class() in ("TLabel", "Label", "TCheckbutton"):
        texts.append(str(widget.cget("text")))
    for child in widget.winfo_children():
        texts.append(label_texts(child))
    return "\n".join(t for t in texts if t)


async def _item(store: Pkcs11Store) -> ManagedToken:
    [item] = await manageable_tokens([store])
    assert item.token.label == LABEL
    return item


async def _logs_in(store: Pkcs11Store, pin: str) -> bool:
    item = await _item(store)
    try:
        await store.login(item.token, Secret(pin))
    except PinIncorrect:
        return False
    await store.logout(item.token)
    return True


async def _fill(desktop: Desktop, window: str, first: str, new: str, again: str) -> None:
    """Type the three fields from the keyboard: Return moves on, and submits in the last."""
    await in_thread(desktop.type, window, first)
    await in_thread(desktop.key, window, "Return")
    await in_thread(desktop.type, window, new)
    await in_thread(desktop.key, window, "Return")
    await in_thread(desktop.type, window, again)
    await in_thread(desktop.key, window, "Return")


async def test_change_pin_from_the_keyboard(ui: TkUI, desktop: Desktop,
                                            store: Pkcs11Store) -> None:
    i18n.set_language("en")
    item = await _item(store)
    task = asyncio.create_task(flow.run(ui, item, "change"))
    window = await in_thread(desktop.wait_window, "ImzaPinChange")
    assert "Change PIN" in await in_thread(desktop.title, window)
    # A wrong current PIN: the form comes back saying so, and nothing changed.
    await _fill(desktop, window, "0000", "86420", "86420")
    again = await in_thread(desktop.wait_window, "ImzaPinChange")
    dialog = ui.current
    assert isinstance(dialog, ChangePinDialog) and dialog.notice is not None
    assert dialog.notice.startswith("Wrong PIN.")
    assert await _logs_in(store, USER_PIN)  # the wrong try changed nothing
    await _fill(desktop, again, USER_PIN, "86420", "86420")
    done = await in_thread(desktop.wait_window, "ImzaPinResult")
    await in_thread(desktop.key, done, "shift", "Return")  # the focus is on Close
    assert await asyncio.wait_for(task, 30) is True
    assert await _logs_in(store, "86420")
    assert not await _logs_in(store, USER_PIN)


async def test_mismatch_and_length_are_caught_in_the_form(ui: TkUI, desktop: Desktop,
                                                          store: Pkcs11Store) -> None:
    item = await _item(store)
    task = asyncio.create_task(flow.run(ui, item, "change"))
    window = await in_thread(desktop.wait_window, "ImzaPinChange")
    dialog = ui.current
    assert isinstance(dialog, ChangePinDialog)
    await _fill(desktop, window, USER_PIN, "86420", "86421")
    await asyncio.sleep(0.3)
    assert ui.current is dialog  # Return in the last field pressed nothing
    shown = await on_tk(ui, lambda: (str(dialog.mismatch.cget("text")) if dialog.mismatch
                                     else "", tuple(dialog.primary.state())))
    assert shown == ("The two new PINs differ.", ("disabled",))
    await in_thread(desktop.key, window, "Escape")
    assert await asyncio.wait_for(task, 30) is False
    assert await _logs_in(store, USER_PIN)  # no try was spent, nothing changed


async def test_the_form_ignores_keys_until_armed(ui: TkUI, desktop: Desktop,
                                                 store: Pkcs11Store) -> None:
    item = await _item(store)
    task = asyncio.create_task(flow.run(ui, item, "change"))
    for _ in range(200):
        if isinstance(ui.current, ChangePinDialog):
            break
        await asyncio.sleep(0.01)
    dialog = ui.current
    assert isinstance(dialog, ChangePinDialog) and not dialog.armed
    assert ARMING_DELAY >= 0.4
    window = await in_thread(desktop.wait_window, "ImzaPinChange")
    assert dialog.armed
    await in_thread(desktop.key, window, "Escape")
    assert await asyncio.wait_for(task, 30) is False


async def test_unblock_with_the_so_pin_and_the_last_try_box(ui: TkUI, desktop: Desktop,
                                                            store: Pkcs11Store) -> None:
    item = await _item(store)
    # As a token that reports CKF_SO_PIN_FINAL_TRY shows it (SoftHSM never does).
    last = dataclasses.replace(item, state=dataclasses.replace(item.state, puk_final_try=True))
    task = asyncio.create_task(flow.run(ui, last, "unblock"))
    window = await in_thread(desktop.wait_window, "ImzaPinUnblock")
    dialog = ui.current
    assert isinstance(dialog, UnblockPinDialog) and dialog.confirm is not None
    await _fill(desktop, window, SO_PIN, "97531", "97531")
    await asyncio.sleep(0.3)
    assert ui.current is dialog  # the box must be ticked first
    assert "disabled" in await on_tk(ui, lambda: tuple(dialog.primary.state()))
    await in_thread(desktop.key, window, "Tab", "space", "Tab", "Return")
    done = await in_thread(desktop.wait_window, "ImzaPinResult")
    await in_thread(desktop.key, done, "shift", "Return")
    assert await asyncio.wait_for(task, 30) is True
    assert await _logs_in(store, "97531")


# --- screenshots ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get(SCREENSHOTS_ENV)
    return Path(target) if target else tmp_path_factory.mktemp("screenshots")


@pytest.mark.parametrize("language", i18n.LANGUAGES)
async def test_screenshot_pin_dialogs(ui: TkUI, desktop: Desktop, screenshots: Path,
                                      language: str) -> None:
    import concurrent.futures

    i18n.set_language(language)
    change_state = PinState(pin=PinStatus(count_low=True, min_length=4, max_length=8))
    unblock_state = PinState(pin=PinStatus(locked=True, min_length=6, max_length=8),
                             puk_final_try=True)
    from agent.keystores.pkcs11.pin_management import PinProblem

    shots = (
        ("pin-change", "ImzaPinChange", ChangePinDialog, change_state, None),
        ("pin-unblock", "ImzaPinUnblock", UnblockPinDialog, unblock_state,
         problem_text(PinProblem.WRONG_PUK, unblock_state)),
    )
    for name, window_class, kind, state, notice in shots:
        def build(root, future: concurrent.futures.Future, kind=kind, state=state,
                  notice=notice):  # type: ignore[no-untyped-def]
            return kind(root, future, SHOWN_NAME, state, 60, notice=notice)

        task = asyncio.create_task(ui._show(build))
        window = await in_thread(desktop.wait_window, window_class)
        dialog = ui.current
        assert isinstance(dialog, kind)
        texts = await on_tk(ui, lambda dialog=dialog: label_texts(dialog.body))
        assert ("4–8" if name == "pin-change" else "6–8") in texts  # the token's rule
        if notice:
            assert notice in texts
        path = await in_thread(desktop.screenshot, window, screenshots / language / f"{name}.png")
        assert path.stat().st_size > 2000
        task.cancel()
        with pytest.raises((asyncio.CancelledError, UserCancelled)):
            await task
        assert await in_thread(desktop.wait_gone, window_class)
