"""What you see is what you sign: the views of the signed content in the PIN dialog
(PDF pages, text, indented XML, binary and hash-only descriptions, a batch list)."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QWidget

from agent.app.dialogs import Preview
from agent.ui.qt.preview.batch import BatchView
from agent.ui.qt.preview.items import ItemView, item_title, preview_from_wire

__all__ = ["BatchView", "ItemView", "preview_area", "previews_from_wire"]


def previews_from_wire(items: Any) -> list[Preview]:
    return [preview_from_wire(i) for i in items if isinstance(i, dict)] \
        if isinstance(items, list) else []


def preview_area(previews: list[Preview]) -> ItemView | BatchView | None:
    if not previews:
        return None
    if len(previews) == 1:
        return ItemView(previews[0], item_title(previews[0], 1))
    return BatchView(previews)


def release(widget: QWidget | None) -> None:
    """Close what a view holds open (PDFium documents) when its dialog closes."""
    if isinstance(widget, ItemView | BatchView):
        widget.release()
