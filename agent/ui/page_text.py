"""Text a web page supplied, made safe to show next to the agent's own words.

The core already collapses whitespace and refuses format and separator characters in
what goes into a signature; the dialogs do this again on everything a page sent, so a
string that slipped past (or a path that forgot) still cannot pad itself into another
line, reorder itself with bidi controls, or hide in zero-width characters.  What is
removed stays visible: such a character becomes U+FFFD, never nothing.
"""

from __future__ import annotations

import re
import unicodedata

REPLACEMENT = "\ufffd"
# Controls, format characters (bidi marks and overrides, zero-width ones), line and
# paragraph separators, surrogates, private use and unassigned code points.
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_BLANK_LINES = re.compile(r"\n{3,}")


def _visible(text: str, keep: str) -> str:
    return "".join(ch if ch in keep or unicodedata.category(ch) not in _HIDDEN
                   else REPLACEMENT for ch in text)


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def page_line(text: str, limit: int) -> str:
    """One line: hidden characters shown as U+FFFD, every run of whitespace (line
    breaks and tabs too) one space, no leading or trailing space, at most ``limit``."""
    return _cap(" ".join(_visible(text, " \t\n\r").split()), limit)


def page_block(text: str, limit: int) -> str:
    """Several lines: as ``page_line`` within each line, at most one empty line in a
    row, none at either end, at most ``limit`` characters."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = (" ".join(line.split()) for line in _visible(text, " \t\n").split("\n"))
    return _cap(_BLANK_LINES.sub("\n\n", "\n".join(lines)).strip("\n"), limit)
