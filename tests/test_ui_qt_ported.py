"""What the tkinter dialog and tray tests asserted that no other Qt test does, asserted
again on the Qt UI (the tkinter UI and pystray are gone; docs/ui-process.md).

- Offscreen (Qt's ``offscreen`` platform, in process): page text posing as the agent's
  stays in the site's frame, whole and with hidden characters made visible; every signed
  string carries the agent's label in every language; the consent buttons and their row;
  the empty picker in Azerbaijani; a PIN form typed into before it armed; the tray menu
  with nothing to list.  Plus the page-text renderer the dialogs call.
- On Xvfb through the real UI process (``python -m agent.ui.qt``, tests/ui_driver.py):
  Return held down after arming, or while a picker or PIN-pad dialog appears, answers
  nothing; the keyboard going to another program and back disarms a dialog.
- With SoftHSM: the tray's list of tokens whose PIN can be managed, and unblocking a PIN
  through the UI process (the last-try box, a wrong PUK first).
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QLabel, QLineEdit, QPlainTextEdit, QWidget
from ui_driver import (  # noqa: F401  (display: fixture)
    Keyboard,
    UiProcess,
    consent_args,
    display,
    environment,
    pick_args,
    pin_args,
)

from agent import i18n
from agent.app.dialogs import CertificateChoice, PinRequest, SignedField
from agent.config import UiConfig
from agent.errors import PinStatus
from agent.ui.page_text import REPLACEMENT, page_block, page_line
from agent.ui.process import args as wire_args
from agent.ui.qt.dialogs import Dialog, DialogSettings, open_dialog

ORIGIN = "https://portal.example"
ARMING_MS = 150
ARMED_WAIT = 400  # ms: comfortably past the arming delay
CERTIFICATE = CertificateChoice(
    holder="Əliyev Əli Vəli oğlu", issuer="Test CA", serial_hex="01",
    not_before="2025-01-01", not_after="2030-01-01", token_label="Token A", usable=True)
POSING = "Website: e-gov.az (verified)"
DECLARATION = "\n".join(
    [f"{n}. Bənd {n}: razıyam" for n in range(1, 7)]
    + ["7. Ödəniş sabah", "8. Amount: 10 000 000 AZN"])


# --- offscreen: the dialogs in process ----------------------------------------------------------

@pytest.fixture(scope="module")
def app() -> QApplication:
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    # Given as an argument, not through QT_QPA_PLATFORM, so the processes the other tests
    # here start keep their own platform.
    return QApplication(["test_ui_qt_ported", "-platform", "offscreen"])


class Answers:
    def __init__(self) -> None:
        self.got: list[object] = []

    def answer(self, value: object) -> None:
        self.got.append(value)

    def cancel(self) -> None:
        self.got.append("CANCELLED")


@pytest.fixture
def opened(app: QApplication) -> Iterator[list[Dialog]]:
    dialogs: list[Dialog] = []
    yield dialogs
    for dialog in dialogs:
        dialog.dismiss()
    QTest.qWait(10)
    i18n.set_language("en")


def show(opened: list[Dialog], kind: str, args: dict[str, Any], answers: Answers | None = None,
         language: str = "en") -> Dialog:
    answers = answers or Answers()
    dialog = open_dialog(kind, args, DialogSettings(language=language, arming_ms=ARMING_MS,
                                                    timeout_s=120.0),
                         answers.answer, answers.cancel)
    opened.append(dialog)
    dialog.activateWindow()
    return dialog


def pin_dialog(opened: list[Dialog], language: str = "en", **page: Any) -> Dialog:
    """The PIN dialog for a request with what the page sent, encoded as the daemon does."""
    return show(opened, "pin", wire_args.pin(PinRequest(ORIGIN, "sign", CERTIFICATE,
                                                        PinStatus(), **page)),
                language=language)


def clean(text: str) -> str:
    return text.replace("\u200b", "")  # the break chances long names get, not shown


def shown_texts(widget: QWidget) -> list[str]:
    """Every label's and text box's text inside ``widget``, in creation order."""
    found: list[str] = []
    for child in widget.findChildren(QWidget):
        if isinstance(child, QLabel) and child.text():
            found.append(clean(child.text()))
        elif isinstance(child, QPlainTextEdit):
            found.append(child.toPlainText())
    return found


def outside(dialog: Dialog, area: QWidget) -> list[str]:
    """What the dialog shows that is not in ``area`` (the agent's own facts)."""
    return [clean(w.text()) for w in dialog.findChildren(QLabel)
            if w.text() and not area.isAncestorOf(w)]


def site_area(dialog: Dialog) -> QWidget:
    area = dialog.site_area  # type: ignore[attr-defined]
    assert isinstance(area, QWidget)
    return area


def arm(dialog: Dialog) -> None:
    QTest.qWait(ARMED_WAIT)
    assert dialog.arming.armed
    focus = dialog.focusWidget()
    assert focus is not None
    QTest.keyClick(focus, Qt.Key.Key_Shift)  # a key let go: Return and space count now


def test_a_padded_document_name_stays_in_the_sites_frame(opened: list[Dialog]) -> None:
    dialog = pin_dialog(opened, document_name="beyanname.pdf" + " " * 90 + POSING)
    area = site_area(dialog)
    inside = shown_texts(area)
    assert f"beyanname.pdf {POSING}" in inside  # whitespace collapsed, shown whole
    assert inside[0] == "Sent by portal.example — not checked by the agent"
    facts = outside(dialog, area)
    assert not any("e-gov.az" in t or "beyanname" in t for t in facts), facts
    # The certificate's facts are the agent's: outside the frame, intact.
    for fact in (CERTIFICATE.holder, "Test CA", "Token A"):
        assert fact in facts and fact not in inside


def test_page_text_is_shown_once_and_only_in_the_sites_frame(opened: list[Dialog]) -> None:
    dialog = pin_dialog(opened, display_text=f"Bəyannamə\n{POSING}")
    everything = shown_texts(dialog)
    assert sum(POSING in text for text in everything) == 1, everything
    boxes = [b for b in dialog.findChildren(QPlainTextEdit) if POSING in b.toPlainText()]
    assert len(boxes) == 1 and site_area(dialog).isAncestorOf(boxes[0])
    assert not any(POSING in t for t in outside(dialog, site_area(dialog)))


def declaration_box(dialog: Dialog) -> QPlainTextEdit:
    [box] = [b for b in dialog.findChildren(QPlainTextEdit)
             if b.accessibleName() == "Text sent by portal.example"]
    return box


def test_the_declaration_is_read_only_and_scrolls_to_its_end_by_keyboard(
        opened: list[Dialog]) -> None:
    dialog = pin_dialog(opened, display_text=DECLARATION)
    box = declaration_box(dialog)
    assert box.toPlainText().splitlines() == DECLARATION.splitlines()  # lines 7, 8 too
    assert box.isReadOnly()
    bar = box.verticalScrollBar()
    assert bar.maximum() > 0 and bar.value() == 0  # more than fits: it scrolls
    arm(dialog)
    box.setFocus()
    for _n in range(10):
        QTest.keyClick(box, Qt.Key.Key_Down)
    # The caret went down to the last line, and the box scrolled to show it whole.
    assert box.textCursor().blockNumber() == len(DECLARATION.splitlines()) - 1
    assert bar.value() > 0
    shown = box.cursorRect()
    assert shown.top() >= 0 and shown.bottom() <= box.viewport().height()
    assert box.toPlainText() == DECLARATION  # reading it changed nothing


def test_a_short_text_has_nothing_to_scroll(opened: list[Dialog]) -> None:
    dialog = pin_dialog(opened, display_text="Bəyannamə № 7")
    assert declaration_box(dialog).verticalScrollBar().maximum() == 0


SIGNED = ((SignedField.REASON, "Müqavilənin təsdiqi"), (SignedField.LOCATION, "Bakı"),
          (SignedField.STAMP_TEXT, "Təsdiq edirəm"), (SignedField.FIELD_NAME, "Imza1"))


@pytest.mark.parametrize(("language", "labels"), [
    ("en", ["Reason", "Location", "Stamp text", "Signature field name"]),
    ("az", ["Səbəb", "Yer", "Möhür mətni", "İmza sahəsinin adı"]),
    ("tr", ["Neden", "Konum", "Damga metni", "İmza alanının adı"]),
    ("ru", ["Причина", "Место", "Текст штампа", "Имя поля подписи"]),
])
def test_every_signed_string_is_shown_with_the_agents_label(
        opened: list[Dialog], language: str, labels: list[str]) -> None:
    dialog = pin_dialog(opened, language, document_name="muqavile.pdf", signed_fields=SIGNED)
    inside = shown_texts(site_area(dialog))
    for label, (_field, value) in zip(labels, SIGNED, strict=True):
        assert inside[inside.index(label) + 1] == value, inside
    assert inside.index(labels[0]) < inside.index(labels[-1])  # in the request's order
    facts = outside(dialog, site_area(dialog))
    assert not any(value in text for _f, value in SIGNED for text in facts)


def test_hidden_characters_are_shown_as_replacement_characters(opened: list[Dialog]) -> None:
    dialog = pin_dialog(opened, document_name="a\u200bb\u202ec.pdf",
                        display_text="ödə\u200eniş\u2028AZN\u0007",
                        signed_fields=((SignedField.REASON, "x\u2029y\u2066z"),))
    inside = shown_texts(site_area(dialog))
    assert f"a{REPLACEMENT}b{REPLACEMENT}c.pdf" in inside
    assert f"x{REPLACEMENT}y{REPLACEMENT}z" in inside
    assert declaration_box(dialog).toPlainText() == \
        f"ödə{REPLACEMENT}niş{REPLACEMENT}AZN{REPLACEMENT}"


def test_the_consent_answers_in_order_and_blocking_on_a_row_of_its_own(
        opened: list[Dialog]) -> None:
    dialog = show(opened, "consent", consent_args(ORIGIN, ("select",)))
    QTest.qWait(20)
    assert [b.text() for b in dialog.buttons] == ["Allow once", "Always allow", "Deny",
                                                  "Block this site"]
    allow, block = dialog.buttons[0], dialog.buttons[3]

    def top(widget: QWidget) -> int:
        return widget.mapTo(dialog, QPoint(0, 0)).y()

    assert top(block) >= top(allow) + allow.height()  # under the answers that allow


def test_an_empty_picker_speaks_azerbaijani_and_escape_closes_it(opened: list[Dialog]) -> None:
    answers = Answers()
    dialog = show(opened, "pick", pick_args(ORIGIN, "auth", [], filtered=True), answers,
                  language="az")
    assert "Bu saytın istədiyinə uyğun sertifikat yoxdur." in shown_texts(dialog)
    arm(dialog)
    focus = dialog.focusWidget()
    assert focus is not None
    QTest.keyClick(focus, Qt.Key.Key_Escape)
    assert answers.got == ["CANCELLED"]


def test_a_pin_form_takes_no_keys_before_it_arms(opened: list[Dialog]) -> None:
    answers = Answers()
    dialog = show(opened, "pin_change", {
        "token": {"label": "Token A", "serial": "1", "reader": None}, "min_len": 4,
        "max_len": 8, "notice": None, "error": None}, answers)
    entries = dialog.findChildren(QLineEdit)
    first = dialog.focusWidget()
    assert first is entries[0] and not dialog.arming.armed
    QTest.keyClicks(first, "1234")
    QTest.keyClick(first, Qt.Key.Key_Return)
    assert all(e.text() == "" for e in entries) and answers.got == []
    QTest.qWait(ARMED_WAIT)
    QTest.keyClicks(first, "1234")
    assert entries[0].text() == "1234"  # armed: the same keys type


def test_the_arming_delay_is_a_bounded_setting_the_ui_process_gets() -> None:
    from agent.ui.process import QtProcessUI

    assert UiConfig().arming_delay == 0.5
    for wrong in (0.0, 0.1, 6.0):
        with pytest.raises(ValidationError):
            UiConfig(arming_delay=wrong)
    hello = QtProcessUI(UiConfig(arming_delay=2.0))._hello()
    assert hello["arming_ms"] == 2000


def test_an_old_tk_backend_setting_means_the_qt_ui() -> None:
    assert UiConfig(backend="tk").backend == "qt"  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        UiConfig(backend="gtk")  # type: ignore[arg-type]


# --- the tray with nothing to list ----------------------------------------------------------------

def entries(menu: Any) -> dict[str, Any]:
    return {a.text(): a for a in menu.actions() if a.text()}


def test_the_tray_says_so_when_there_is_no_token_or_site(app: QApplication) -> None:
    from agent.ui.qt.tray import Tray

    sent: list[tuple[str, dict[str, Any]]] = []
    tray = Tray(lambda name, args: sent.append((name, args)))
    try:
        tray.update({"version": "1.2.3", "ports": {"wss": 29170}, "grants": [],
                     "status": {"level": "problem", "problems": [
                         "port 29171 is used by another program"]},
                     "language": "en", "autostart": False, "trust": None, "journal": None,
                     "readers": [], "tokens": [], "pin_tokens": [], "unavailable": {}})
        top = tray.menu.actions()
        # The status comes first and names the problem, as doctor does; it only informs.
        assert top[0].text() == "imza-agent has a problem: port 29171 is used by another program"
        assert not top[0].isEnabled()
        menu = entries(tray.menu)
        assert "Open the signing journal" not in menu  # no journal: no entry
        for title in ("Change PIN…", "Unblock PIN…", "Readers and tokens"):
            [only] = menu[title].menu().actions()
            assert only.text() == "No token found" and not only.isEnabled(), title
        [none] = menu["Allowed sites"].menu().actions()
        assert none.text() == "No sites allowed yet" and not none.isEnabled()
        trust = [a.text() for a in menu["TLS trust"].menu().actions()]
        assert trust == ["Trust status unknown", "Repair"]
        about = [a.text() for a in menu["About"].menu().actions()]
        assert about == ["imza-agent 1.2.3", "Ports: wss 29170"]
        none.trigger()  # informing entries send nothing
        assert sent == []
    finally:
        tray.hide()


def test_a_stopped_smart_card_service_is_the_trays_problem_as_doctors() -> None:
    from agent.doctor.verdict import verdict
    from agent.pcsc.watcher import PcscStatus, ServiceState
    from agent.ui import tray_model

    status = PcscStatus(service=ServiceState.NOT_RUNNING, reason="no answer")
    runtime = SimpleNamespace(
        pcsc=SimpleNamespace(status=status), stores=SimpleNamespace(problems=[]),
        transport=SimpleNamespace(ports={"wss": 29170}, unavailable={}))
    down = verdict(tray_model.runtime_report(runtime, None))
    assert down["level"] != "ok" and down["problems"], down
    assert any("smart card" in p.lower() for p in down["problems"]), down
    status.service = ServiceState.RUNNING
    assert verdict(tray_model.runtime_report(runtime, None))["level"] == "ok"
    runtime.pcsc = None  # PC/SC not watched at all: nothing to complain of
    assert verdict(tray_model.runtime_report(runtime, None))["level"] == "ok"


# --- the page-text renderer the dialogs call (no window) --------------------------------------

@pytest.mark.parametrize(("raw", "shown"), [
    ("  beyanname.pdf    \t\n  Website: e-gov.az ", "beyanname.pdf Website: e-gov.az"),
    ("a\u00a0\u00a0b", "a b"),  # no-break spaces are whitespace too
    ("\u202egpj.exe", f"{REPLACEMENT}gpj.exe"),  # a bidi override is made visible
    ("zero\u200bwidth\ufeff", f"zero{REPLACEMENT}width{REPLACEMENT}"),
    ("line\u2028sep\x85next", f"line{REPLACEMENT}sep{REPLACEMENT}next"),
    ("\ue000private\U000e0041tag", f"{REPLACEMENT}private{REPLACEMENT}tag"),
])
def test_page_line(raw: str, shown: str) -> None:
    assert page_line(raw, 300) == shown


def test_page_line_is_capped() -> None:
    assert page_line("x" * 400, 300) == "x" * 299 + "…"


def test_page_block_keeps_lines_but_not_padding() -> None:
    raw = "\n\n  Bənd 1  \r\n\n\n\n\nBənd   2\t\u200f\n\n"
    assert page_block(raw, 2000) == f"Bənd 1\n\nBənd 2 {REPLACEMENT}"
    assert page_block("y" * 3000, 2000) == "y" * 1999 + "…"


# --- on Xvfb through the UI process: keys meant for the page --------------------------------------

SLOW_MS = 2000  # "before it arms" wide enough to act in reliably
HOLD = 3.0  # seconds a key is held: several arming delays, many auto-repeats
SETTLE = 0.7  # time for keys already sent to reach the dialog before asserting


def held_dialogs() -> dict[str, tuple[str, dict[str, Any]]]:
    """Every dialog whose focused widget or Return could once grant something."""
    choices = [CERTIFICATE, dataclasses.replace(CERTIFICATE, holder="Məmmədova Leyla")]
    return {
        "consent": ("consent", consent_args(ORIGIN, ("select",))),
        "picker": ("pick", pick_args(ORIGIN, "sign", choices)),
        "pin-pad": ("pin", pin_args(PinRequest(ORIGIN, "sign", CERTIFICATE,
                                               PinStatus(pin_pad=True)))),
    }


@pytest.fixture(scope="module")
def slow_ui(display: str) -> Iterator[UiProcess]:  # noqa: F811
    with UiProcess(environment(display), arming_ms=SLOW_MS) as ui:
        yield ui


@pytest.fixture(scope="module")
def keyboard(display: str) -> Keyboard:  # noqa: F811
    return Keyboard(display)


class Slow:
    """The slow UI process, the keyboard on its display, and the dialogs a test opened
    (closed after it, whatever it left: a PIN pad's prompt stays until closed)."""

    def __init__(self, ui: UiProcess, keyboard: Keyboard) -> None:
        self.ui, self.keyboard = ui, keyboard
        self.seen: set[str] = set()  # X ids already handed out: each dialog is new
        self.opened: list[tuple[int, str]] = []

    def open(self, kind: str, args: dict[str, Any]) -> tuple[int, str]:
        """Send a dialog, wait for its window and give it the keyboard."""
        dialog_id = self.ui.dialog(kind, args)
        window = self.keyboard.wait_window(self.ui.pid, self.seen)
        self.opened.append((dialog_id, window))
        self.keyboard.focus(window)
        return dialog_id, window

    def close_all(self) -> None:
        for dialog_id, window in self.opened:
            self.ui.close(dialog_id)
            assert self.keyboard.wait_gone(self.ui.pid, window)
        self.opened.clear()


@pytest.fixture
def slow(slow_ui: UiProcess, keyboard: Keyboard) -> Iterator[Slow]:
    screen = Slow(slow_ui, keyboard)
    screen.seen.update(keyboard.windows(slow_ui.pid))  # none of ours: an earlier test's
    yield screen
    screen.close_all()


@pytest.mark.desktop
@pytest.mark.parametrize("name", ["consent", "picker", "pin-pad"])
def test_return_pressed_and_held_after_arming_answers_nothing(slow: Slow, name: str) -> None:
    kind, args = held_dialogs()[name]
    dialog_id, _window = slow.open(kind, args)
    time.sleep(SLOW_MS / 1000 + 0.5)  # armed, and no key was let go since
    slow.keyboard.run("xdotool", "keydown", "Return")
    try:
        time.sleep(HOLD)
        assert not slow.ui.answered(dialog_id), slow.ui.answers
    finally:
        slow.keyboard.run("xdotool", "keyup", "Return")
    time.sleep(SLOW_MS / 1000 + SETTLE)  # armed again once the repeats stopped
    assert not slow.ui.answered(dialog_id), slow.ui.answers


@pytest.mark.desktop
@pytest.mark.parametrize("name", ["picker", "pin-pad"])
def test_return_held_while_a_dialog_appears_answers_nothing(slow: Slow, name: str) -> None:
    kind, args = held_dialogs()[name]
    slow.keyboard.run("xdotool", "keydown", "Return")
    try:
        dialog_id, _window = slow.open(kind, args)
        time.sleep(HOLD)  # the server's auto-repeat sends it again and again
        assert not slow.ui.answered(dialog_id), slow.ui.answers
    finally:
        slow.keyboard.run("xdotool", "keyup", "Return")
    time.sleep(SLOW_MS / 1000 + SETTLE)
    assert not slow.ui.answered(dialog_id), slow.ui.answers


PAGE_SCRIPT = """
from PySide6.QtWidgets import QApplication, QLineEdit
app = QApplication([])
field = QLineEdit()
field.setWindowTitle("ImzaTestPage")
field.resize(300, 60)
field.show()
app.exec()
"""


@pytest.fixture(scope="module")
def page(display: str, keyboard: Keyboard) -> Iterator[str]:  # noqa: F811
    """Another program's window (the browser), to take the keyboard away to."""
    process = subprocess.Popen([sys.executable, "-c", PAGE_SCRIPT],
                               env=environment(display))
    try:
        deadline = time.monotonic() + 30
        while not (found := keyboard.run("xdotool", "search", "--onlyvisible", "--name",
                                         "^ImzaTestPage$").split()):
            assert time.monotonic() < deadline, "the page window did not appear"
            time.sleep(0.05)
        yield found[-1]
    finally:
        process.terminate()
        process.wait()


@pytest.mark.desktop
def test_a_focus_change_disarms_the_dialog(slow: Slow, page: str) -> None:
    dialog_id, window = slow.open("consent", consent_args(ORIGIN, ("select",)))
    time.sleep(SLOW_MS / 1000 + 0.5)  # armed
    # The keyboard goes to the page and comes back: the dialog is disarmed at once, so
    # keys right after do nothing at all (not even move the focus) and restart the wait.
    slow.keyboard.focus(page)
    time.sleep(0.3)
    slow.keyboard.focus(window)
    slow.keyboard.key("shift+Tab", "Return")
    time.sleep(SETTLE)
    assert not slow.ui.answered(dialog_id), "a key right after the focus came back answered"
    # Armed again later, the keyboard works, and the focus is still on Deny.
    time.sleep(SLOW_MS / 1000 + 0.3)
    slow.keyboard.key("shift", "Return")
    assert slow.ui.answer(dialog_id)["result"] == "deny"


# --- with SoftHSM: the tray's PIN tokens and unblocking a PIN -------------------------------------

@pytest.mark.softhsm
async def test_the_tray_lists_the_tokens_whose_pin_can_be_managed(softhsm: Any) -> None:
    from agent.keystores.pkcs11.store import Pkcs11Store
    from agent.keystores.pkcs12 import Pkcs12Store
    from agent.ui import tray_model

    store = Pkcs11Store(softhsm.module, env=softhsm.env, call_timeout=15)
    p12 = Pkcs12Store(Path("/nonexistent.p12"), "file")  # a store without a PIN to manage
    runtime = SimpleNamespace(stores=SimpleNamespace(managed=[
        SimpleNamespace(store=p12), SimpleNamespace(store=store)]))
    try:
        listed = await tray_model.pin_tokens(runtime)
        assert sorted(item.name for item in listed) == sorted(
            f"{t.label} ({t.serial})" for t in softhsm.tokens.values())
        item = await tray_model.pin_token(runtime, listed[0].key)
        assert item is not None and item.key == listed[0].key
        assert await tray_model.pin_token(runtime, "no such token") is None
    finally:
        await store.close()


class RecordedForms:
    """The UI process's PIN forms, noting the reason each was shown with."""

    def __init__(self, ui: Any) -> None:
        self.ui = ui
        self.errors: list[str | None] = []

    async def ask_pin_change(self, item: Any, state: Any, error: str | None) -> Any:
        self.errors.append(error)
        return await self.ui.ask_pin_change(item, state, error)

    async def ask_pin_unblock(self, item: Any, state: Any, error: str | None) -> Any:
        self.errors.append(error)
        return await self.ui.ask_pin_unblock(item, state, error)

    async def show_message(self, title: str, text: str, *, error: bool) -> None:
        await self.ui.show_message(title, text, error=error)


@pytest.mark.softhsm
@pytest.mark.desktop
async def test_unblocking_with_the_so_pin_and_the_last_try_box(
        tmp_path: Path, display: str, keyboard: Keyboard,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    from test_pin_management import SO_PIN, USER_PIN, _make_token

    from agent.errors import PinIncorrect
    from agent.keystores.base import Secret
    from agent.keystores.pkcs11.store import Pkcs11Store
    from agent.pinmgmt import desktop as flow
    from agent.pinmgmt.use_case import manageable_tokens
    from agent.ui.process import QtProcessUI

    monkeypatch.setenv("DISPLAY", display)
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    bed = _make_token(tmp_path)
    store = Pkcs11Store(Path("/usr/lib/softhsm/libsofthsm2.so"), env=bed.env,
                        call_timeout=15)
    ui = QtProcessUI(UiConfig(language="en", dialog_timeout=60, arming_delay=0.2))
    forms = RecordedForms(ui)

    async def logs_in(pin: str) -> bool:
        [item] = await manageable_tokens([store])
        try:
            await store.login(item.token, Secret(pin))
        except PinIncorrect:
            return False
        await store.logout(item.token)
        return True

    def fill(window: str, *fields: str) -> None:
        """Type each field and press Return: it moves on, and submits in the last."""
        keyboard.focus(window)
        time.sleep(0.6)  # past the arming delay the focus change restarted
        for text in fields:
            keyboard.type(text)
            keyboard.key("Return")

    try:
        ui.start()
        [item] = await manageable_tokens([store])
        # As a token that reports CKF_SO_PIN_FINAL_TRY shows it (SoftHSM never does).
        last = dataclasses.replace(item, state=dataclasses.replace(item.state,
                                                                   puk_final_try=True))
        task = asyncio.create_task(flow.run(forms, last, "unblock"))
        pid = (await ui.process.running()).pid
        seen: set[str] = set()
        form = await asyncio.to_thread(keyboard.wait_window, pid, seen)
        assert "Unblock PIN" in keyboard.title(form)
        await asyncio.to_thread(fill, form, "00000000", "97531", "97531")
        await asyncio.sleep(SETTLE)
        assert forms.errors == [None] and not task.done()  # the box must be ticked first
        # Tab to the box, tick it, Tab to Unblock: a wrong PUK, knowingly spent.
        await asyncio.to_thread(keyboard.key, "Tab", "space", "Tab", "Return")
        again = await asyncio.to_thread(keyboard.wait_window, pid, seen)
        assert len(forms.errors) == 2 and (forms.errors[1] or "").startswith("Wrong PUK.")
        assert await logs_in(USER_PIN)  # the wrong PUK set nothing
        await asyncio.to_thread(fill, again, SO_PIN, "97531", "97531")
        done = await asyncio.to_thread(keyboard.wait_window, pid, seen)
        keyboard.focus(done)
        await asyncio.sleep(0.6)
        await asyncio.to_thread(keyboard.key, "shift", "Return")  # Close has the focus
        assert await asyncio.wait_for(task, 30) is True
        assert await logs_in("97531")
    finally:
        await ui.close()
        await store.close()
        i18n.set_language("en")
