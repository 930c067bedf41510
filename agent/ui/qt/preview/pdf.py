"""A PDF's pages, rendered by PDFium (pypdfium2) in the UI process: one page at a time,
rendered when first shown (a long document costs nothing until it is paged through) at
the screen's device pixel ratio, so it stays sharp on HiDPI screens.

Keys on the page: Left / Page Up the previous page, Right / Page Down the next one, Home
and End the first and last; Up and Down scroll within the page.  The page's text (as
PDFium extracts it) is the page image's accessible description, so a screen reader has
something to read of a page that is otherwise a picture.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import pypdfium2 as pdfium
from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QGuiApplication, QImage, QKeyEvent, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from agent.i18n import _
from agent.ui.qt import a11y

PAGE_WIDTH = 430  # logical pixels a page is rendered across: the box, less its scroll bar
VIEW_HEIGHT = 330  # the page box's height on a screen with room for it
MIN_VIEW_HEIGHT = 180
REST_OF_DIALOG = 540  # about what the PIN dialog needs besides the page box
CACHE_PAGES = 4  # rendered pages kept; the rest are rendered again when revisited
TEXT_LIMIT = 2000  # characters of a page's text given to assistive technology
MAX_PIXELS = 24_000_000  # one rendered page at most (about 96 MB of RGBA)

_FORMATS = {
    "RGBA": QImage.Format.Format_RGBA8888, "RGBX": QImage.Format.Format_RGBX8888,
    "RGB": QImage.Format.Format_RGB888, "BGRA": QImage.Format.Format_ARGB32,
    "BGRX": QImage.Format.Format_RGB32, "BGR": QImage.Format.Format_BGR888,
    "L": QImage.Format.Format_Grayscale8,
}


class PdfUnreadable(Exception):
    """PDFium could not open the document."""


def open_pdf(data: bytes) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise PdfUnreadable(str(exc)) from exc


def render_page(doc: pdfium.PdfDocument, index: int, width_px: float, ratio: float
                ) -> QImage:
    """Page ``index`` at ``width_px`` logical pixels wide, for a screen of ``ratio``."""
    page = doc[index]
    try:
        page_width, page_height = (max(1.0, side) for side in page.get_size())
        scale = max(0.01, min(8.0, width_px * ratio / page_width))
        # A page may be drawn narrow and miles long: bound the bitmap, not just its width.
        scale = min(scale, 0.99 * math.sqrt(MAX_PIXELS / (page_width * page_height)))
        bitmap = page.render(scale=scale, fill_color=(255, 255, 255, 255),
                             rev_byteorder=True, may_draw_forms=True)
        try:
            fmt = _FORMATS[bitmap.mode]
            image = QImage(bytes(bitmap.buffer), bitmap.width, bitmap.height,
                           bitmap.stride, fmt).copy()  # own the pixels: the buffer goes
        finally:
            bitmap.close()
    finally:
        page.close()
    image.setDevicePixelRatio(ratio)
    return image


def page_text(doc: pdfium.PdfDocument, index: int) -> str:
    page = doc[index]
    try:
        textpage = page.get_textpage()
        try:
            text: str = textpage.get_text_range()
        finally:
            textpage.close()
    finally:
        page.close()
    return " ".join(text.split())[:TEXT_LIMIT]


def view_height() -> int:
    """The page box's height: smaller on a low screen, so the dialog's buttons fit."""
    screen = QGuiApplication.primaryScreen()
    room = screen.availableGeometry().height() - REST_OF_DIALOG if screen else VIEW_HEIGHT
    return max(MIN_VIEW_HEIGHT, min(VIEW_HEIGHT, room))


class PdfView(QWidget):
    def __init__(self, data: bytes, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.doc = open_pdf(data)
        self.name = name
        self.count = len(self.doc)
        self.index = 0
        self._cache: OrderedDict[int, QImage] = OrderedDict()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        nav = QHBoxLayout()
        self.previous = QPushButton(_("Previous page"))
        self.next = QPushButton(_("Next page"))
        self.position = QLabel()
        self.position.setTextFormat(Qt.TextFormat.PlainText)
        self.position.setAlignment(Qt.AlignmentFlag.AlignCenter)
        for button, step in ((self.previous, -1), (self.next, 1)):
            a11y.name(button, button.text())
            button.setAutoDefault(True)
            button.clicked.connect(lambda _c=False, s=step: self.go(self.index + s))
        nav.addWidget(self.previous)
        nav.addWidget(self.position, 1)
        nav.addWidget(self.next)

        self.page = QLabel()
        self.page.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        self.view_area = QScrollArea()
        self.view_area.setWidget(self.page)
        self.view_area.setWidgetResizable(True)
        self.view_area.setFixedHeight(view_height())
        self.view_area.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.view_area.installEventFilter(self)
        layout.addWidget(self.view_area)  # the page first, reading order
        layout.addLayout(nav)
        self.go(0)

    def go(self, index: int) -> None:
        if not 0 <= index < self.count:
            return
        self.index = index
        image = self._image(index)
        self.page.setPixmap(QPixmap.fromImage(image))
        position = _("Page {page} / {count}").format(page=index + 1, count=self.count)
        self.position.setText(position)
        a11y.name(self.position, position)
        a11y.name(self.view_area, f"{self.name}: {position}",
                  page_text(self.doc, index) or _("This page has no text to read out."))
        a11y.name(self.page, position)
        self.view_area.verticalScrollBar().setValue(0)

    def _image(self, index: int) -> QImage:
        image = self._cache.get(index)
        if image is None:
            image = render_page(self.doc, index, PAGE_WIDTH, self.devicePixelRatioF())
            self._cache[index] = image
            while len(self._cache) > CACHE_PAGES:
                self._cache.popitem(last=False)
        self._cache.move_to_end(index)
        return image

    def rendered(self) -> list[int]:
        """The pages rendered and kept (lazy rendering, for the tests)."""
        return list(self._cache)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if obj is self.view_area and event.type() == QEvent.Type.KeyPress \
                and isinstance(event, QKeyEvent):
            key = Qt.Key(event.key())
            here = self.index
            moves = {Qt.Key.Key_Left: here - 1, Qt.Key.Key_PageUp: here - 1,
                     Qt.Key.Key_Right: here + 1, Qt.Key.Key_PageDown: here + 1,
                     Qt.Key.Key_Home: 0, Qt.Key.Key_End: self.count - 1}
            target = moves.get(key)
            if target is not None:
                self.go(target)
                return True
        return False

    def close_document(self) -> None:
        self._cache.clear()
        self.doc.close()
