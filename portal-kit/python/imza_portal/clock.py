"""Time as the verifier sees it: an injectable clock, so tests and vectors verify at a
fixed moment and a portal uses the real one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

UTC = dt.timezone.utc  # noqa: UP017 - the kit supports Python 3.10, which lacks dt.UTC

Clock = Callable[[], dt.datetime]


def system_clock() -> dt.datetime:
    return dt.datetime.now(UTC)


def parse_rfc3339(text: str) -> dt.datetime:
    """``2031-05-04T10:00:00Z`` (or with an offset) as an aware datetime."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return value.astimezone(UTC)
