"""Renders the application icon (the tray's own drawing, status "ok") into a hicolor theme
tree, with Qt on its offscreen platform: no display is needed at build time, and the
package's icon is the very picture the tray shows.

    python3 icon.py ICON_THEME_DIR   (e.g. STAGE/usr/share/icons/hicolor)
"""

from __future__ import annotations

import sys
from pathlib import Path

SIZES = (48, 128, 256)


def main() -> None:
    theme = Path(sys.argv[1])
    from PySide6.QtGui import QGuiApplication

    from agent.ui.qt.icon import status_pixmap

    # A pixmap needs an application; "offscreen" draws without any screen.
    app = QGuiApplication([sys.argv[0], "-platform", "offscreen"])
    for size in SIZES:
        target = theme / f"{size}x{size}" / "apps" / "imza-agent.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not status_pixmap("ok", size).save(str(target), "PNG"):
            raise SystemExit(f"icon.py: could not write {target}")
    del app


if __name__ == "__main__":
    main()
