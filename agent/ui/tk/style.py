"""One look for every dialog: fonts that carry Azerbaijani and Cyrillic letters, and the
few styles the dialogs name."""

from __future__ import annotations

import tkinter
from tkinter import font as tkfont
from tkinter import ttk

# Width the dialog texts wrap at (pixels): long translations wrap, never clip.
WRAP = 460
WARNING = "#9a3b00"
DANGER = "#b00020"
GREYED = "#8a8a8a"
# The tint of the area that holds what the page sent, so it never passes for the agent's own.
SITE_TINT = "#fff6e0"
SITE_EDGE = "#c89b3c"


def _family(root: tkinter.Misc) -> str:
    families = set(tkfont.families(root))
    for name in ("DejaVu Sans", "Noto Sans", "Liberation Sans", "Segoe UI", "Arial"):
        if name in families:
            return name
    return tkfont.nametofont("TkDefaultFont", root).actual("family")


def apply_style(root: tkinter.Tk) -> list[tkfont.Font]:
    """Style ``root``; returns the named fonts the styles use, which exist only as long
    as the caller keeps these objects."""
    family = _family(root)
    for name in ("TkDefaultFont", "TkTextFont", "TkMenuFont", "TkHeadingFont"):
        tkfont.nametofont(name, root).configure(family=family, size=10)
    fonts = [
        tkfont.Font(root, name="ImzaHost", family=family, size=18, weight="bold"),
        tkfont.Font(root, name="ImzaStrong", family=family, size=10, weight="bold"),
        tkfont.Font(root, name="ImzaSmall", family=family, size=9),
    ]
    style = ttk.Style(root)
    style.theme_use("clam")
    style.configure("Host.TLabel", font="ImzaHost")
    style.configure("Strong.TLabel", font="ImzaStrong")
    style.configure("Small.TLabel", font="ImzaSmall", foreground="#444444")
    style.configure("Key.TLabel", font="ImzaSmall", foreground="#444444")
    style.configure("Warning.TLabel", font="ImzaStrong", foreground=WARNING)
    style.configure("Danger.TLabel", font="ImzaStrong", foreground=DANGER)
    style.configure("Treeview", rowheight=22)
    style.configure("Site.TLabelframe", background=SITE_TINT, bordercolor=SITE_EDGE,
                    relief="solid", borderwidth=2, padding=(8, 4))
    style.configure("SiteTitle.TLabel", background=SITE_TINT, foreground=WARNING,
                    font="ImzaStrong", padding=(4, 0))
    style.configure("Site.TFrame", background=SITE_TINT)
    style.configure("Site.TLabel", background=SITE_TINT)
    style.configure("SiteKey.TLabel", background=SITE_TINT, font="ImzaSmall",
                    foreground="#444444")
    style.configure("Site.Vertical.TScrollbar", background=SITE_TINT)
    style.configure("TButton", padding=(10, 4))
    style.map("TButton", relief=[("focus", "solid")])
    return fonts
