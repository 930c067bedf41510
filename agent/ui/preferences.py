"""What the person chose in the tray and expects to find again after a restart.

Kept in ``<data dir>/preferences.json``. The configuration file wins over it: a language
set there (not ``auto``) is the administrator's or the user's explicit choice.
"""

from __future__ import annotations

import json
import logging

from agent.paths import data_dir
from agent.policy.grants import write_private_atomically

log = logging.getLogger(__name__)

FILE_NAME = "preferences.json"


def _load() -> dict[str, object]:
    try:
        data = json.loads((data_dir() / FILE_NAME).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def saved_language() -> str | None:
    value = _load().get("language")
    return value if isinstance(value, str) else None


def save_language(code: str) -> None:
    prefs = {**_load(), "language": code}
    try:
        write_private_atomically(data_dir() / FILE_NAME, json.dumps(prefs))
    except OSError as exc:  # a read-only home must not break the menu
        log.warning("could not remember the language: %s", exc.strerror)
