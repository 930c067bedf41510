"""The confirmation of signature.extend in the UI process (Qt offscreen): built in every
language with an accessible name on every control, answering "extend" only once armed,
the focus starting on Cancel, Escape cancelling, the page's name, text and preview inside
the site's frame, the level's own explanation outside it; and the daemon's side of the
pipe (``QtProcessUI.ask_extend``) shaping its args and reading its answer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QLabel, QPushButton, QWidget
from test_ui_qt_dialogs_unit import ARMED_WAIT, ARMING_MS, preview, three_page_pdf

from agent import i18n
from agent.app.dialogs import ExtendRequest, Preview, PreviewKind
from agent.config import UiConfig
from agent.errors import UiCrashed
from agent.i18n import _
from agent.ui.process import args as wire_args
from agent.ui.process.port import QtProcessUI
from agent.ui.qt import a11y
from agent.ui.qt.dialogs import Dialog, DialogSettings, open_dialog
from agent.ui.qt.preview.items import ItemView

ORIGIN = "https://portal.example.az"


@pytest.fixture(scope="module")
def app() -> QApplication:
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    return QApplication(["test_ui_qt_extend_dialog", "-platform", "offscreen"])


@pytest.fixture()
def opened(app: QApplication) -> Iterator[list[Dialog]]:
    dialogs: list[Dialog] = []
    yield dialogs
    for dialog in dialogs:
        dialog.dismiss()
    QTest.qWait(10)
    i18n.set_language("en")


def extend_args(**changes: Any) -> dict[str, Any]:
    return {"origin": ORIGIN, "format": "pdf", "level": "B-LTA", "signatures": 2,
            "document_name": "müqavilə.pdf", "display_text": "Arxiv üçün",
            "previews": [preview("pdf", three_page_pdf(), "müqavilə.pdf")], **changes}


def show(opened: list[Dialog], args: dict[str, Any], got: list[object], *,
         language: str = "en") -> Dialog:
    dialog = open_dialog("extend", args, DialogSettings(language=language,
                                                        arming_ms=ARMING_MS),
                         got.append, lambda: got.append("CANCELLED"))
    opened.append(dialog)
    dialog.activateWindow()
    return dialog


def focused(dialog: Dialog) -> QWidget:
    widget = dialog.focusWidget()
    assert widget is not None
    return widget


def labels_of(widget: QWidget) -> list[str]:
    return [w.text().replace("\u200b", "") for w in widget.findChildren(QLabel)]


@pytest.mark.parametrize("language", i18n.LANGUAGES)
def test_builds_in_every_language_with_names(opened: list[Dialog], language: str) -> None:
    dialog = show(opened, extend_args(), [], language=language)
    assert dialog.windowTitle() == f"imza-agent — {_('Extend signatures')} — " \
                                   "portal.example.az"
    assert {b.text() for b in dialog.buttons} == {_("Extend"), _("Cancel")}
    assert a11y.unnamed(dialog) == []
    assert dialog.accessibleName() == dialog.windowTitle()


def test_answers_extend_only_once_armed_and_starts_on_cancel(opened: list[Dialog]) -> None:
    got: list[object] = []
    dialog = show(opened, extend_args(), got)
    start = focused(dialog)
    assert isinstance(start, QPushButton) and start.text() == "Cancel"
    extend = next(b for b in dialog.buttons if b.text() == "Extend")
    QTest.mouseClick(extend, Qt.MouseButton.LeftButton)  # before arming: nothing
    assert got == []
    QTest.qWait(ARMED_WAIT)
    QTest.keyClick(focused(dialog), Qt.Key.Key_Shift)
    extend.setFocus()
    QTest.keyClick(extend, Qt.Key.Key_Space)
    assert got == ["extend"] and dialog.done


def test_escape_cancels(opened: list[Dialog]) -> None:
    got: list[object] = []
    dialog = show(opened, extend_args(), got)
    QTest.qWait(ARMED_WAIT)
    QTest.keyClick(focused(dialog), Qt.Key.Key_Shift)
    QTest.keyClick(focused(dialog), Qt.Key.Key_Escape)
    assert got == ["CANCELLED"]


def test_the_pages_things_are_in_the_sites_frame(opened: list[Dialog]) -> None:
    dialog = show(opened, extend_args(), [])
    area = dialog.site_area  # type: ignore[attr-defined]
    assert area is not None
    inside = labels_of(area)
    assert "müqavilə.pdf" in inside
    assert any(isinstance(v, ItemView) for v in area.findChildren(QWidget))
    everything = labels_of(dialog)
    headline = "This website asks to extend the signatures in a document to level B-LTA."
    assert headline in everything and headline not in inside
    assert any("archive time-stamp" in t for t in everything)
    assert not any("archive time-stamp" in t for t in inside)


def test_without_anything_from_the_page_there_is_no_frame(opened: list[Dialog]) -> None:
    dialog = show(opened, extend_args(format="cms", level="LT", document_name=None,
                                      display_text=None, previews=[]), [])
    assert dialog.site_area is None  # type: ignore[attr-defined]
    assert "Document: CMS signature (CAdES)" in labels_of(dialog)
    assert "Signatures to extend: 2" in labels_of(dialog)


def test_a_hostile_level_is_one_short_line(opened: list[Dialog]) -> None:
    dialog = show(opened, extend_args(level="B-LTA\u202e\n" + "x" * 100), [])
    assert len(dialog.headline.text()) < 120 and "\n" not in dialog.headline.text()


# --- the daemon's side of the pipe ----------------------------------------------------------

class FakeSupervisor:
    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.shown: list[tuple[str, dict[str, Any]]] = []
        self.restarted = False

    async def dialog(self, kind: str, args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.shown.append((kind, args))
        return 1, self.answer

    def restart(self, why: str) -> None:
        self.restarted = True

    def close_dialog(self, dialog_id: int) -> None:
        pass


def request() -> ExtendRequest:
    return ExtendRequest(origin=ORIGIN, format="xml", level="B-LT", document_name="a.xml",
                         previews=(Preview(PreviewKind.XML, 3, "ab" * 32, "a.xml", b"<a/>"),))


@pytest.mark.parametrize(("answer", "confirmed"), [({"result": "extend"}, True),
                                                   ({"result": "once"}, False)])
def test_the_port_sends_its_args_and_reads_the_answer(answer: dict[str, Any],
                                                      confirmed: bool) -> None:
    ui = QtProcessUI(UiConfig())
    fake = FakeSupervisor(answer)
    ui.process = fake  # type: ignore[assignment]
    if confirmed:
        asyncio.run(ui.ask_extend(request()))
    else:
        with pytest.raises(UiCrashed):
            asyncio.run(ui.ask_extend(request()))
        assert fake.restarted
    [(kind, args)] = fake.shown
    assert kind == "extend" and args == wire_args.extend(request())
    assert args["previews"][0]["data_b64"] == "PGEvPg=="
