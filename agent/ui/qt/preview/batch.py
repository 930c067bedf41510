"""A batch: every item listed with the count; selecting one shows it below.  Views are
made when an item is first selected, so a batch of many PDFs renders only what is seen."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QListWidget, QStackedWidget, QVBoxLayout, QWidget

from agent.app.dialogs import Preview, PreviewKind
from agent.i18n import N_, _
from agent.ui.qt import a11y
from agent.ui.qt.preview.items import ItemView, item_title

KIND_TEXT = {
    PreviewKind.PDF: N_("PDF document"),
    PreviewKind.TEXT: N_("text"),
    PreviewKind.XML: N_("XML document"),
    PreviewKind.BINARY: N_("binary data"),
    PreviewKind.HASH: N_("fingerprint only"),
}
LIST_ROWS = 5


class BatchView(QWidget):
    def __init__(self, previews: list[Preview]) -> None:
        super().__init__()
        self.previews = previews
        self.views: dict[int, ItemView] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        count = _("Items to sign: {n}").format(n=len(previews))
        self.count_label = QLabel(count)
        self.count_label.setObjectName("headline")
        a11y.name(self.count_label, count)
        layout.addWidget(self.count_label)
        self.list = QListWidget()
        for number, preview in enumerate(previews, start=1):
            self.list.addItem(f"{number}. {item_title(preview, number)} — "
                              f"{_(KIND_TEXT[preview.kind])}")
        a11y.name(self.list, count, _("Select an item to see it below."))
        rows = min(LIST_ROWS, len(previews))
        self.list.setFixedHeight(self.list.sizeHintForRow(0) * rows + 8)
        layout.addWidget(self.list)
        self.stack = QStackedWidget()
        layout.addWidget(self.stack)
        self.list.currentRowChanged.connect(self.show_item)
        self.list.setCurrentRow(0)

    def show_item(self, row: int) -> None:
        if not 0 <= row < len(self.previews):
            return
        view = self.views.get(row)
        if view is None:
            view = self.views[row] = ItemView(self.previews[row],
                                              item_title(self.previews[row], row + 1))
            self.stack.addWidget(view)
        self.stack.setCurrentWidget(view)

    def release(self) -> None:
        for view in self.views.values():
            view.release()
