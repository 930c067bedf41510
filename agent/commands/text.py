"""Small helpers for what the commands print."""

from __future__ import annotations

import sys
from pathlib import Path

from agent.i18n import _


def shown_path(path: str | Path | None) -> str:
    """A path as a person reads it (``~`` for the home dir); None: the built-in defaults."""
    if path is None:
        return _("built-in defaults (no file)")
    text = str(path)
    home = str(Path.home())
    if home not in ("", "/") and (text == home or text.startswith(home + "/")):
        return "~" + text[len(home):]
    return text


def duration(seconds: float) -> str:
    """``2 d 3 h``, ``1 h 5 min``, ``4 min 10 s``: the two largest units."""
    seconds = max(0, int(seconds))
    units = [(86400, _("d")), (3600, _("h")), (60, _("min")), (1, _("s"))]
    first = next(i for i, (size, _name) in enumerate(units) if seconds >= size or size == 1)
    parts = []
    for size, name in units[first:first + 2]:
        parts.append(f"{seconds // size} {name}")
        seconds %= size
    return " ".join(parts)


def error(message: str) -> None:
    prefix = "" if message.startswith("imza-agent") else "imza-agent: "
    print(prefix + message, file=sys.stderr)
