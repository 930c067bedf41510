"""Renders the application icon (the tray's own drawing) into a hicolor theme tree.

    python3 icon.py ICON_THEME_DIR   (e.g. STAGE/usr/share/icons/hicolor)
"""

from __future__ import annotations

import sys
from pathlib import Path

from agent.ui.tray import TrayState, icon_image

SIZES = (48, 128, 256)


def main() -> None:
    theme = Path(sys.argv[1])
    for size in SIZES:
        target = theme / f"{size}x{size}" / "apps" / "imza-agent.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        icon_image(TrayState.RUNNING, size).save(target)


if __name__ == "__main__":
    main()
