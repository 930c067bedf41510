"""The Qt dialogs of the UI process, built and driven in-process on Qt's offscreen
platform: texts in every language, answers only after arming and in the contract's shapes
(docs/ui-process.md), the previews (PDF pages, text, XML, binary, hash, batch), the PIN
field wiped after use, the countdown's warning, both forms of an IDN site, and an
accessible name on every control the keyboard reaches."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QLineEdit, QPlainTextEdit, QPushButton, QWidget
from testbed.pdf import classic_pdf

from agent import i18n
from agent.i18n import _
from agent.ui.qt import a11y
from agent.ui.qt.dialogs import DIALOGS, Dialog, DialogSettings, open_dialog
from agent.ui.qt.preview.batch import BatchView
from agent.ui.qt.preview.items import ItemView

ARMING_MS = 150
ARMED_WAIT = 400  # ms: comfortably past the arming delay


@pytest.fixture(scope="module")
def app() -> QApplication:
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    # Qt's offscreen platform: no screen needed.  Given as an argument, not through
    # QT_QPA_PLATFORM, so the processes other tests start keep their own platform.
    return QApplication(["test_ui_qt_dialogs_unit", "-platform", "offscreen"])


class Answers:
    def __init__(self) -> None:
        self.got: list[object] = []
        self.hook: Any = None

    def answer(self, value: object) -> None:
        if self.hook is not None:
            self.hook()
        self.got.append(value)

    def cancel(self) -> None:
        self.got.append("CANCELLED")


@pytest.fixture()
def opened(app: QApplication) -> Iterator[list[Dialog]]:
    dialogs: list[Dialog] = []
    yield dialogs
    for dialog in dialogs:
        dialog.dismiss()
    QTest.qWait(10)
    i18n.set_language("en")


def show(opened: list[Dialog], kind: str, args: dict[str, Any], answers: Answers, *,
         language: str = "en", timeout_s: float = 120.0) -> Dialog:
    dialog = open_dialog(kind, args, DialogSettings(language=language, arming_ms=ARMING_MS,
                                                    timeout_s=timeout_s),
                         answers.answer, answers.cancel)
    opened.append(dialog)
    dialog.activateWindow()
    return dialog


def focused(dialog: Dialog) -> QWidget:
    widget = dialog.focusWidget()
    assert widget is not None
    return widget


def arm(dialog: Dialog) -> None:
    """Wait out the arming, then let a key go up (Return/space count only after that)."""
    QTest.qWait(ARMED_WAIT)
    assert dialog.arming.armed
    QTest.keyClick(focused(dialog), Qt.Key.Key_Shift)


CERT = {"holder": "Əli Əliyev", "issuer": "Test CA", "serial_hex": "", "not_before":
        "2025-01-01", "not_after": "2027-01-01", "token_label": "Token A", "usable": True,
        "demo": False, "reader": "Virtual PCD 00 00"}
EXPIRED = {**CERT, "holder": "Köhnə Sertifikat", "usable": False,
           "unusable_reason": "expired", "serial_hex": "0a1b"}
PIN = {"count_low": False, "final_try": False, "locked": False, "pin_pad": False,
       "min_length": 4, "max_length": 4, "to_be_changed": False}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def preview(kind: str, data: bytes, name: str | None = None) -> dict[str, Any]:
    return {"kind": kind, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "name": name, "data_b64": b64(data) if kind in ("pdf", "text", "xml") else ""}


def three_page_pdf() -> bytes:
    words = (b"first", b"second", b"third")
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R 4 0 R 5 0 R] /Count 3 >>"]
    for n in range(3):
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 400] "
                       b"/Resources << /Font << /F1 9 0 R >> >> /Contents %d 0 R >>" % (6 + n))
    for word in words:
        stream = b"BT /F1 24 Tf 40 300 Td (Page " + word + b") Tj ET"
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    return classic_pdf(objects)


def args_of(kind: str) -> dict[str, Any]:
    origin = "https://portal.example.az"
    return {
        "consent": {"origin": origin, "permissions": ["select", "sign", "list"]},
        "pick": {"origin": origin, "purpose": "sign", "choices": [CERT, EXPIRED],
                 "filtered": False},
        "pin": {"origin": origin, "action": "sign", "certificate": CERT, "pin": PIN,
                "count": 1, "document_name": "ərizə.pdf", "display_text": "Ərizə\nimzalayın",
                "retry": None, "password": False, "signed_fields": [["reason", "Razıyam"]],
                "previews": [preview("pdf", three_page_pdf(), "ərizə.pdf")]},
        "pin_locked": {"origin": origin, "token_label": "Token A", "unlock": "PUK"},
        "pin_change": {"token": {"label": "Token A", "serial": "", "reader": "Virtual PCD"},
                       "min_len": 4, "max_len": 8, "notice": None, "error": None},
        "pin_unblock": {"token": {"label": "Token A", "serial": "77", "reader": None},
                        "min_len": 4, "max_len": 4, "notice": None, "error": None,
                        "final_try": True},
        "message": {"title": "PIN changed", "text": "The new PIN works.", "level": "info"},
        "extend": {"origin": origin, "format": "pdf", "level": "B-LTA",
                   "document_name": "ərizə.pdf", "display_text": None,
                   "previews": [preview("pdf", three_page_pdf(), "ərizə.pdf")]},
    }[kind]


TITLE_TEXT = {"consent": "Permission", "pick": "Choose a certificate", "pin": "Sign",
              "pin_locked": "PIN locked", "pin_change": "Change PIN",
              "pin_unblock": "Unblock PIN", "message": "PIN changed",
              "extend": "Extend signatures"}


@pytest.mark.parametrize("language", i18n.LANGUAGES)
@pytest.mark.parametrize("kind", sorted(DIALOGS))
def test_every_dialog_builds_in_every_language(opened: list[Dialog], kind: str,
                                               language: str) -> None:
    dialog = show(opened, kind, args_of(kind), Answers(), language=language)
    title = dialog.windowTitle()
    assert title.startswith("imza-agent — ")
    translated = _(TITLE_TEXT[kind])
    assert translated in title
    if language != "en" and kind != "message":
        assert translated != TITLE_TEXT[kind]  # really translated, not the English text
    cancel = [b for b in dialog.buttons if b.text() in (_("Cancel"), _("Close"), _("Deny"))]
    assert cancel, [b.text() for b in dialog.buttons]
    assert a11y.unnamed(dialog) == []
    assert dialog.accessibleName() == title


def test_consent_answers_only_after_arming(opened: list[Dialog]) -> None:
    answers = Answers()
    dialog = show(opened, "consent", args_of("consent"), answers)
    deny = focused(dialog)
    assert isinstance(deny, QPushButton) and deny.text() == "Deny"
    QTest.keyClick(deny, Qt.Key.Key_Return)  # a key meant for the page: swallowed
    QTest.mouseClick(deny, Qt.MouseButton.LeftButton)
    assert answers.got == [] and not dialog.arming.armed
    QTest.qWait(ARMED_WAIT)
    assert dialog.arming.armed
    QTest.keyClick(deny, Qt.Key.Key_Return)  # held through the arming: still nothing
    assert answers.got == []
    QTest.keyClick(deny, Qt.Key.Key_Return)  # a key went up since: now it counts
    assert answers.got == ["deny"]
    assert dialog.done and not dialog.isVisible()


def test_a_key_before_arming_starts_the_wait_again(opened: list[Dialog]) -> None:
    dialog = show(opened, "consent", args_of("consent"), Answers())
    before = dialog.arming.restarts
    for _n in range(3):
        QTest.qWait(ARMING_MS // 2)
        QTest.keyClick(focused(dialog), Qt.Key.Key_A)
    assert dialog.arming.restarts >= before + 3
    assert not dialog.arming.armed
    QTest.qWait(ARMED_WAIT)
    assert dialog.arming.armed


def test_consent_block_is_after_the_answers_in_the_tab_order(opened: list[Dialog]) -> None:
    answers = Answers()
    dialog = show(opened, "consent", args_of("consent"), answers)
    arm(dialog)
    QTest.keyClick(focused(dialog), Qt.Key.Key_Tab)
    block = focused(dialog)
    assert isinstance(block, QPushButton) and block.text() == "Block this site"
    QTest.keyClick(block, Qt.Key.Key_Space)
    assert answers.got == ["block"]


def test_escape_cancels_once_armed(opened: list[Dialog]) -> None:
    answers = Answers()
    dialog = show(opened, "consent", args_of("consent"), answers)
    QTest.keyClick(focused(dialog), Qt.Key.Key_Escape)
    assert answers.got == []
    arm(dialog)
    QTest.keyClick(focused(dialog), Qt.Key.Key_Escape)
    assert answers.got == ["CANCELLED"]


def test_picker_answers_the_index_and_greys_the_expired(opened: list[Dialog]) -> None:
    answers = Answers()
    args = args_of("pick")
    args["choices"] = [EXPIRED, CERT]
    dialog = show(opened, "pick", args, answers)
    rows = dialog.rows  # type: ignore[attr-defined]
    assert not rows[0].isEnabled() and rows[1].isChecked()
    assert "expired" in rows[0].accessibleName()
    assert "Serial number: 0a1b" in rows[0].text()
    assert "Serial" not in rows[1].text() and "()" not in rows[1].text()
    assert "Reader: Virtual PCD 00 00" in rows[1].text()
    arm(dialog)
    dialog.choose.setFocus()  # type: ignore[attr-defined]
    QTest.keyClick(focused(dialog), Qt.Key.Key_Return)
    assert answers.got == [1]


def test_empty_picker_can_only_be_closed(opened: list[Dialog]) -> None:
    answers = Answers()
    dialog = show(opened, "pick", {"origin": "https://a.example", "purpose": "auth",
                                   "choices": [], "filtered": True}, answers)
    assert [b.text() for b in dialog.buttons] == ["Close"]
    arm(dialog)
    QTest.keyClick(focused(dialog), Qt.Key.Key_Return)
    assert answers.got == ["CANCELLED"]


def test_pin_is_sent_once_as_base64_and_the_field_is_empty_after(
        opened: list[Dialog]) -> None:
    answers = Answers()
    dialog = show(opened, "pin", args_of("pin"), answers)
    entry = focused(dialog)
    assert isinstance(entry, QLineEdit)
    assert entry.echoMode() == QLineEdit.EchoMode.Password
    assert entry.accessibleName() == "PIN" and entry.accessibleDescription() == "4 characters"
    texts = [w.text() for w in dialog.findChildren(QWidget) if hasattr(w, "text")
             and isinstance(w.text(), str)]
    assert "4 characters" in texts and not any("From 4 to 4" in t for t in texts)
    QTest.keyClicks(entry, "9999")  # typed before arming: never reaches the field
    assert entry.displayText() == ""
    QTest.qWait(ARMED_WAIT)
    QTest.keyClicks(entry, "123")
    QTest.keyClick(entry, Qt.Key.Key_Return)  # too short for the token's rule
    assert answers.got == [] and not dialog.primary.isEnabled()  # type: ignore[attr-defined]
    QTest.keyClicks(entry, "4")
    seen: dict[str, object] = {}

    def at_answer() -> None:
        seen.update(text=entry.text(), modified=entry.isModified(),
                    undo=entry.isUndoAvailable())

    answers.hook = at_answer
    QTest.keyClick(entry, Qt.Key.Key_Return)
    assert answers.got == [{"pin_b64": b64(b"1234")}]
    assert seen == {"text": "", "modified": False, "undo": False}


def test_pin_pad_answers_and_stays_as_the_readers_prompt(opened: list[Dialog]) -> None:
    answers = Answers()
    args = {**args_of("pin"), "pin": {**PIN, "pin_pad": True}, "previews": []}
    dialog = show(opened, "pin", args, answers)
    assert dialog.findChildren(QLineEdit) == []
    arm(dialog)
    QTest.keyClick(focused(dialog), Qt.Key.Key_Return)
    assert answers.got == [{"pin_pad": True}]
    assert dialog.isVisible()
    assert dialog.headline.text() == "Enter the PIN on the reader's keypad."
    assert dialog.countdown.text().startswith("The reader waits 2:00")
    dialog.dismiss()
    assert not dialog.isVisible() and answers.got == [{"pin_pad": True}]


def test_pdf_preview_shows_pages_and_navigates(opened: list[Dialog]) -> None:
    dialog = show(opened, "pin", args_of("pin"), Answers())
    view = dialog.preview  # type: ignore[attr-defined]
    assert isinstance(view, ItemView) and view.pdf is not None
    pdf = view.pdf
    assert pdf.position.text() == "Page 1 / 3"
    assert pdf.rendered() == [0]  # lazy: only the page shown
    pixmap = pdf.page.pixmap()
    assert not pixmap.isNull() and pixmap.width() > 100
    assert "Page first" in pdf.view_area.accessibleDescription()
    QTest.qWait(ARMED_WAIT)
    QTest.keyClick(pdf.view_area, Qt.Key.Key_Right)
    assert pdf.position.text() == "Page 2 / 3"
    assert "Page second" in pdf.view_area.accessibleDescription()
    QTest.keyClick(pdf.next, Qt.Key.Key_Space)
    assert pdf.position.text() == "Page 3 / 3"
    QTest.keyClick(pdf.view_area, Qt.Key.Key_Right)  # the last page stays the last
    assert pdf.position.text() == "Page 3 / 3"
    QTest.keyClick(pdf.view_area, Qt.Key.Key_Home)
    assert pdf.position.text() == "Page 1 / 3" and sorted(pdf.rendered()) == [0, 1, 2]
    # The page comes before the PIN field in the Tab order, inside the site's frame.
    chain = tab_chain(dialog)
    assert chain.index(pdf.view_area) < chain.index(dialog.entry)  # type: ignore[attr-defined]
    assert dialog.site_area is not None  # type: ignore[attr-defined]
    assert dialog.site_area.isAncestorOf(pdf)  # type: ignore[attr-defined]
    assert dialog.site_area.accessibleName() == (  # type: ignore[attr-defined]
        "Sent by portal.example.az — not checked by the agent")
    assert dialog.site_title.text() == dialog.site_area.accessibleName()  # type: ignore


def tab_chain(dialog: Dialog) -> list[QWidget]:
    chain, widget = [], dialog.nextInFocusChain()
    while widget is not dialog and len(chain) < 200:
        chain.append(widget)
        widget = widget.nextInFocusChain()
    return chain


def test_text_preview_is_whole_scrollable_and_plain(opened: list[Dialog]) -> None:
    text = "".join(f"line {n}\n" for n in range(200)) + "evil \u202eeulav"
    args = {**args_of("pin"), "previews": [preview("text", text.encode(), "a.txt")]}
    dialog = show(opened, "pin", args, Answers())
    boxes = [b for b in dialog.findChildren(QPlainTextEdit)
             if b.accessibleName() == "Text of a.txt"]
    assert len(boxes) == 1
    box = boxes[0]
    shown = box.toPlainText()
    assert shown.startswith("line 0\n") and "line 199\n" in shown
    assert "\u202e" not in shown and "evil \ufffdeulav" in shown
    assert box.isReadOnly() and box.focusPolicy() & Qt.FocusPolicy.TabFocus
    assert box.tabChangesFocus()  # one stop in the Tab order, not a Tab trap
    assert box.verticalScrollBar().maximum() > 0  # longer than the box: it scrolls


def test_xml_binary_and_hash_previews_in_a_batch(opened: list[Dialog]) -> None:
    items = [preview("xml", b"<a><b>x</b><c/></a>", "data.xml"),
             preview("binary", b"\x00\x01" * 50, "blob.bin"),
             preview("hash", b"", None),
             preview("text", b"hello", "note.txt")]
    items[2]["sha256"] = "ab" * 32
    items[2]["size"] = 32
    args = {**args_of("pin"), "count": 4, "previews": items}
    dialog = show(opened, "pin", args, Answers())
    batch = dialog.preview  # type: ignore[attr-defined]
    assert isinstance(batch, BatchView)
    assert batch.count_label.text() == "Items to sign: 4"
    assert batch.list.count() == 4 and batch.list.accessibleName() == "Items to sign: 4"
    assert "data.xml — XML document" in batch.list.item(0).text()
    assert list(batch.views) == [0]  # the others are made when selected
    xml_box = batch.views[0].view
    assert isinstance(xml_box, QPlainTextEdit)
    assert "<a>\n  <b>x</b>\n  <c/>\n</a>" in xml_box.toPlainText()
    batch.list.setCurrentRow(1)
    blob = hashlib.sha256(b"\x00\x01" * 50).hexdigest()
    assert f"Binary data, 100 bytes, SHA-256 {blob}" in labels_of(batch.views[1])
    batch.list.setCurrentRow(2)
    assert ("The site shows no document; only this fingerprint is signed: " + "ab" * 32
            ) in labels_of(batch.views[2])
    assert "Item 3 — fingerprint only" in batch.list.item(2).text()
    batch.list.setCurrentRow(3)
    assert batch.stack.currentWidget() is batch.views[3]
    assert a11y.unnamed(dialog) == []


WITHOUT_LXML = """
import sys
sys.modules["lxml"] = None  # an install without the formats extra
from PySide6.QtWidgets import QApplication
app = QApplication(["without-lxml", "-platform", "offscreen"])
from agent.ui.qt.dialogs import DIALOGS
from agent.ui.qt.preview.xml import indented
print(sorted(DIALOGS))
print(indented(b"<a><b>x</b></a>"))
"""


def test_without_lxml_every_dialog_still_loads_and_xml_shows_as_sent() -> None:
    """lxml comes with the formats extra; the UI process must start without it."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", WITHOUT_LXML], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    kinds, xml = done.stdout.splitlines()[:2]
    assert kinds == str(sorted(DIALOGS))
    assert xml == "<a><b>x</b></a>"  # not indented, but whole


def labels_of(widget: QWidget) -> list[str]:
    from PySide6.QtWidgets import QLabel
    return [w.text().replace("\u200b", "") for w in widget.findChildren(QLabel)]


def test_countdown_warns_in_the_last_20_seconds(opened: list[Dialog]) -> None:
    dialog = show(opened, "consent", args_of("consent"), Answers(), timeout_s=21)
    assert dialog.countdown.text() == "Closes in 0:21"
    assert dialog.countdown.accessibleDescription() == ""
    QTest.qWait(1500)
    assert dialog.countdown.text().startswith("Only 0:")
    assert dialog.countdown.text().endswith("window closes and the request is refused.")
    assert dialog.countdown.objectName() == "countdownWarning"
    assert dialog.countdown.accessibleDescription() == "This window closes soon."
    assert dialog.countdown.accessibleName() == dialog.countdown.text()


def test_idn_site_shows_unicode_and_punycode(opened: list[Dialog]) -> None:
    dialog = show(opened, "consent", {"origin": "https://xn--80ak6aa92e.com",
                                      "permissions": ["sign"]}, Answers())
    assert dialog.host_label.text() == "аррӏе.com"
    assert dialog.host_label.accessibleName() == "Website: аррӏе.com"
    assert dialog.ascii_label is not None
    assert "xn--80ak6aa92e.com" in dialog.ascii_label.text()
    assert dialog.windowTitle() == "imza-agent — Permission — аррӏе.com"
    plain = show(opened, "consent", args_of("consent"), Answers())
    assert plain.ascii_label is None  # an ASCII name has one form only


def test_pin_change_answers_both_pins(opened: list[Dialog]) -> None:
    answers = Answers()
    dialog = show(opened, "pin_change", args_of("pin_change"), answers)
    assert dialog.headline.text() == "Change the PIN of “Token A”"  # no empty "()"
    assert "New PIN: 4–8 characters" in labels_of(dialog)
    arm(dialog)
    for text in ("1111", "2468", "2469"):
        QTest.keyClicks(focused(dialog), text)
        QTest.keyClick(focused(dialog), Qt.Key.Key_Return)
    assert answers.got == [] and "The two new PINs differ." in labels_of(dialog)
    last = focused(dialog)
    assert isinstance(last, QLineEdit)
    last.selectAll()
    QTest.keyClicks(last, "2468")
    QTest.keyClick(last, Qt.Key.Key_Return)
    assert answers.got == [{"old_b64": b64(b"1111"), "new_b64": b64(b"2468")}]
    assert all(e.text() == "" for e in dialog.findChildren(QLineEdit))


def test_pin_unblock_last_try_needs_the_box(opened: list[Dialog]) -> None:
    answers = Answers()
    dialog = show(opened, "pin_unblock", args_of("pin_unblock"), answers)
    assert dialog.headline.text() == "Unblock the PIN of “Token A (77)”"
    assert "New PIN: 4 characters" in labels_of(dialog)
    arm(dialog)
    entries = dialog.findChildren(QLineEdit)
    for entry, text in zip(entries, ("87654321", "1357", "1357"), strict=True):
        entry.setFocus()
        QTest.keyClicks(entry, text)
    QTest.keyClick(entries[2], Qt.Key.Key_Return)
    assert answers.got == []  # the last PUK try is not spent by a key alone
    dialog.confirm.setChecked(True)  # type: ignore[attr-defined]
    QTest.keyClick(entries[2], Qt.Key.Key_Return)
    assert answers.got == [{"puk_b64": b64(b"87654321"), "new_b64": b64(b"1357")}]


@pytest.mark.parametrize("kind", ["pin_locked", "message"])
def test_closing_is_the_answer_of_notices(opened: list[Dialog], kind: str) -> None:
    answers = Answers()
    dialog = show(opened, kind, args_of(kind), answers)
    arm(dialog)
    QTest.keyClick(focused(dialog), Qt.Key.Key_Escape)
    assert answers.got == [None]


def test_dismiss_answers_nothing(opened: list[Dialog]) -> None:
    answers = Answers()
    dialog = show(opened, "pin", args_of("pin"), answers)
    dialog.dismiss()
    dialog.dismiss()
    assert answers.got == [] and not dialog.isVisible()


def test_an_unknown_kind_is_refused(app: QApplication) -> None:
    with pytest.raises(ValueError, match="unknown dialog kind"):
        open_dialog("nope", {}, DialogSettings(), lambda _v: None, lambda: None)


def test_a_language_change_redraws_an_open_dialog(opened: list[Dialog]) -> None:
    answers = Answers()
    dialog = show(opened, "pin", args_of("pin"), answers)
    QTest.qWait(ARMED_WAIT)
    QTest.keyClicks(focused(dialog), "12")
    i18n.set_language("ru")
    dialog.retranslate()
    assert dialog.windowTitle() == "imza-agent — Подписать — portal.example.az"
    assert [b.text() for b in dialog.buttons] == ["Подписать", "Отмена"]
    entry = dialog.entry  # type: ignore[attr-defined]
    assert entry is not None and entry.displayText() == ""  # typed text is not carried over
    assert focused(dialog) is entry and not dialog.arming.armed
    assert a11y.unnamed(dialog) == []
    arm(dialog)
    QTest.keyClicks(entry, "4321")
    QTest.keyClick(entry, Qt.Key.Key_Return)
    assert answers.got == [{"pin_b64": b64(b"4321")}]


def test_pdf_pages_render_at_the_screens_pixel_ratio() -> None:
    from agent.ui.qt.preview.pdf import open_pdf, render_page

    doc = open_pdf(three_page_pdf())
    try:
        normal = render_page(doc, 0, 300, 1.0)
        sharp = render_page(doc, 0, 300, 2.0)
    finally:
        doc.close()
    assert (normal.width(), normal.height()) == (300, 400)  # a 300 x 400 pt page
    assert (sharp.width(), sharp.height()) == (600, 800)
    assert sharp.devicePixelRatio() == 2.0  # shown at the same logical size, sharper
    assert normal.pixelColor(5, 5).name() == "#ffffff"  # the page's white background
    dark = [normal.pixelColor(x, y).lightness() for x in range(30, 200) for y in range(90, 110)]
    assert min(dark) < 100  # the page's text was drawn


def test_an_unreadable_pdf_is_described_not_shown(opened: list[Dialog]) -> None:
    args = {**args_of("pin"), "previews": [preview("pdf", b"%PDF-1.7 broken", "x.pdf")]}
    dialog = show(opened, "pin", args, Answers())
    view = dialog.preview  # type: ignore[attr-defined]
    assert isinstance(view, ItemView) and view.pdf is None
    shown = labels_of(view)
    assert "This PDF cannot be shown; check it before signing." in shown
    assert any(t.startswith("15 bytes, SHA-256 ") for t in shown)


@pytest.mark.parametrize(("theme", "dark"), [("dark", True), ("light", False)])
def test_themes_colour_the_windows_and_keep_a_focus_ring(app: QApplication, theme: str,
                                                         dark: bool) -> None:
    from PySide6.QtGui import QPalette

    from agent.ui.qt import theme as themes

    themes.apply_theme(app, theme)
    window = app.palette().color(QPalette.ColorRole.Window)
    assert (window.lightness() < 128) is dark
    colours = themes.DARK if dark else themes.LIGHT
    assert f"QPushButton:focus {{ border: 2px solid {colours.focus}" in app.styleSheet()
    assert "QLineEdit:focus" in app.styleSheet()


def test_the_sites_declaration_is_whole_framed_and_in_the_tab_order(
        opened: list[Dialog]) -> None:
    declaration = "\n".join(f"{n}. Bəyan edirəm ki, məlumatlar doğrudur." for n in range(1, 9))
    args = {**args_of("pin"), "display_text": declaration, "previews": []}
    dialog = show(opened, "pin", args, Answers())
    area = dialog.site_area  # type: ignore[attr-defined]
    boxes = [b for b in dialog.findChildren(QPlainTextEdit)
             if b.accessibleName() == "Text sent by portal.example.az"]
    assert len(boxes) == 1 and area.isAncestorOf(boxes[0])
    box = boxes[0]
    assert box.toPlainText() == declaration  # all 8 lines, not 6
    assert box.verticalScrollBar().maximum() > 0  # taller than its 6 rows: a scroll bar
    chain = tab_chain(dialog)
    assert chain.index(box) < chain.index(dialog.entry)  # type: ignore[attr-defined]
    # The page's strings are inside the site's frame, the certificate is not.
    inside = labels_of(area)
    assert "Razıyam" in inside and "ərizə.pdf" in inside
    assert "Əli Əliyev" not in inside and "Əli Əliyev" in labels_of(dialog)


@pytest.mark.parametrize(("retry", "pin", "expected"), [
    (None, {"count_low": True}, ["Only a few tries are left."]),
    ({"final_try": True}, {}, ["Wrong PIN.",
                               "Last try: if this PIN is wrong too, the token will be locked."]),
    ({"countLow": True}, {}, ["Wrong PIN.", "Only a few tries are left."]),
])
def test_pin_tries_notices(opened: list[Dialog], retry: dict[str, Any] | None,
                           pin: dict[str, Any], expected: list[str]) -> None:
    args = {**args_of("pin"), "retry": retry, "pin": {**PIN, **pin}, "previews": []}
    shown = labels_of(show(opened, "pin", args, Answers()))
    notices = [t for t in shown if t in ("Wrong PIN.", "Only a few tries are left.",
                                         "Last try: if this PIN is wrong too, the token "
                                         "will be locked.")]
    assert notices == expected


def test_length_rule_texts(opened: list[Dialog]) -> None:
    for low, high, text in ((4, 8, "From 4 to 8 characters"), (6, 0, "At least 6 characters")):
        args = {**args_of("pin"), "pin": {**PIN, "min_length": low, "max_length": high}}
        dialog = show(opened, "pin", args, Answers())
        assert dialog.entry.accessibleDescription() == text  # type: ignore[attr-defined]


def test_a_long_host_wraps_instead_of_running_off_the_window(opened: list[Dialog]) -> None:
    host = "secure-login-" + "x" * 50 + ".accounts" + "y" * 40 + ".example.com"
    dialog = show(opened, "consent", {"origin": f"https://{host}", "permissions": ["sign"]},
                  Answers())
    QTest.qWait(20)
    shown = dialog.host_label
    assert shown.accessibleName() == f"Website: {host}"  # names stay clean for readers
    assert shown.text().replace("\u200b", "") == host
    assert dialog.width() <= 800
    assert shown.minimumSizeHint().width() <= dialog.width() - 36
    assert shown.height() >= shown.heightForWidth(shown.width())  # every line is drawn


def test_a_long_page_renders_within_the_pixel_bound() -> None:
    from agent.ui.qt.preview.pdf import MAX_PIXELS, open_pdf, render_page

    pdf = classic_pdf([b"<< /Type /Catalog /Pages 2 0 R >>",
                       b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                       b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 14400] >>"])
    doc = open_pdf(pdf)
    try:
        image = render_page(doc, 0, 430, 2.0)
    finally:
        doc.close()
    assert 0 < image.width() * image.height() <= MAX_PIXELS


def test_picker_rows_move_with_the_arrow_keys(opened: list[Dialog]) -> None:
    answers = Answers()
    second = {**CERT, "holder": "Second Holder"}
    dialog = show(opened, "pick", {**args_of("pick"), "choices": [CERT, EXPIRED, second]},
                  answers)
    rows = dialog.rows  # type: ignore[attr-defined]
    assert focused(dialog) is rows[0]
    arm(dialog)
    QTest.keyClick(rows[0], Qt.Key.Key_Down)  # past the expired one
    assert focused(dialog) is rows[2] and rows[2].isChecked()
    QTest.keyClick(rows[2], Qt.Key.Key_Return)  # Return on a row chooses nothing
    assert answers.got == []
    QTest.keyClick(rows[2], Qt.Key.Key_Tab)
    assert focused(dialog) is dialog.choose  # type: ignore[attr-defined]
    QTest.keyClick(focused(dialog), Qt.Key.Key_Return)
    assert answers.got == [2]


def test_shift_tab_back_and_forth_keeps_the_dialog_armed(opened: list[Dialog]) -> None:
    """Qt reports Shift+Tab going down as Backtab but coming up as Tab: the guard must
    see one key, not a Backtab held down for ever (which disarms at the next press)."""
    from PySide6.QtGui import QKeyEvent

    answers = Answers()
    dialog = show(opened, "consent", args_of("consent"), answers)
    arm(dialog)
    shift = Qt.KeyboardModifier.ShiftModifier
    for _n in range(2):
        widget = focused(dialog)
        QApplication.sendEvent(widget, QKeyEvent(QKeyEvent.Type.KeyPress, Qt.Key.Key_Backtab,
                                                 shift))
        QApplication.sendEvent(widget, QKeyEvent(QKeyEvent.Type.KeyRelease, Qt.Key.Key_Tab,
                                                 shift))
    assert dialog.arming.armed
    here = focused(dialog)
    assert isinstance(here, QPushButton) and here.text() == "Allow once"
    QTest.keyClick(here, Qt.Key.Key_Return)
    assert answers.got == ["once"]
