"""The tray icon, drawn with QPainter: the status by colour *and* by shape, so it reads
the same to a person who cannot tell red from green (ok: a green disc with a tick;
attention: an amber triangle with "!"; problem: a red octagon with a cross)."""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap, QPolygonF

COLOURS = {"ok": "#2e7d32", "attention": "#c88a00", "problem": "#c62828"}
SIZES = (16, 22, 24, 32, 48, 64, 128)


def _outline(level: str, size: float) -> QPainterPath:
    path = QPainterPath()
    m = size * 0.04
    if level == "attention":
        path.addPolygon(QPolygonF([QPointF(size / 2, m), QPointF(size - m, size - m),
                                   QPointF(m, size - m), QPointF(size / 2, m)]))
    elif level == "problem":
        r, c = size / 2 - m, size / 2
        points = [QPointF(c + r * math.cos(math.pi / 8 + k * math.pi / 4),
                          c + r * math.sin(math.pi / 8 + k * math.pi / 4)) for k in range(8)]
        path.addPolygon(QPolygonF([*points, points[0]]))
    else:
        path.addEllipse(QPointF(size / 2, size / 2), size / 2 - m, size / 2 - m)
    return path


def _glyph(painter: QPainter, level: str, size: float) -> None:
    pen = QPen(QColor("white"), max(1.5, size * 0.12), Qt.PenStyle.SolidLine,
               Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin)
    painter.setPen(pen)
    s = size
    if level == "attention":
        painter.drawLine(QPointF(s * 0.5, s * 0.38), QPointF(s * 0.5, s * 0.66))
        painter.drawPoint(QPointF(s * 0.5, s * 0.82))
    elif level == "problem":
        painter.drawLine(QPointF(s * 0.33, s * 0.33), QPointF(s * 0.67, s * 0.67))
        painter.drawLine(QPointF(s * 0.67, s * 0.33), QPointF(s * 0.33, s * 0.67))
    else:
        painter.drawPolyline(QPolygonF([QPointF(s * 0.28, s * 0.52), QPointF(s * 0.44, s * 0.68),
                                        QPointF(s * 0.72, s * 0.34)]))


def status_pixmap(level: str, size: int) -> QPixmap:
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(COLOURS.get(level, COLOURS["problem"])))
    painter.drawPath(_outline(level, float(size)))
    _glyph(painter, level, float(size))
    painter.end()
    return pixmap


def status_icon(level: str) -> QIcon:
    """One icon with a pixmap per common tray size (crisp at 16 px and on HiDPI)."""
    icon = QIcon()
    for size in SIZES:
        icon.addPixmap(status_pixmap(level, size))
    return icon
