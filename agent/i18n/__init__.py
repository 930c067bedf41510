"""The agent's languages: Azerbaijani, Turkish, Russian and English, through gettext.

The catalogues live in ``locale/<lang>/LC_MESSAGES/imza_agent.po`` and are compiled to
``.mo`` files committed next to them (``python -m agent.i18n.catalog`` rebuilds them; a
test checks they are current).  The language follows the OS locale unless the config
(``[ui] language``) or the tray menu chose one.  Dialogs read the language when they
open; the UI process also redraws the open ones (``Dialog.retranslate``) on a change.
"""

from __future__ import annotations

import gettext
import os
import threading
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path

DOMAIN = "imza_agent"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = ("az", "tr", "ru", "en")
DEFAULT_LANGUAGE = "en"
# Each language named in itself, as a language menu shows it.
LANGUAGE_NAMES = {"az": "Azərbaycanca", "tr": "Türkçe", "ru": "Русский", "en": "English"}

_lock = threading.Lock()
_current = DEFAULT_LANGUAGE
_listeners: list[Callable[[str], None]] = []


def detect_language(env: Mapping[str, str] | None = None) -> str:
    """The first supported language in the OS locale variables, as gettext reads them."""
    env = os.environ if env is None else env
    for var in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(var, "")
        for part in value.split(":"):
            code = part.split(".")[0].split("@")[0].split("_")[0].lower()
            if code in LANGUAGES:
                return code
        if value and var != "LANGUAGE":
            break  # the first set locale variable decides, as in POSIX
    return DEFAULT_LANGUAGE


def resolve(configured: str, env: Mapping[str, str] | None = None,
            saved: str | None = None) -> str:
    """``auto`` → the language chosen in the tray (``saved``), else the OS locale's;
    any supported code → itself."""
    if configured == "auto":
        return saved if saved in LANGUAGES else detect_language(env)
    if configured not in LANGUAGES:
        raise ValueError(f"unsupported language {configured!r}")
    return configured


@lru_cache(maxsize=len(LANGUAGES))
def translation(language: str) -> gettext.NullTranslations:
    """The compiled catalogue of one language; a missing one is an install error."""
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[language])


def set_language(language: str) -> None:
    global _current
    if language not in LANGUAGES:
        raise ValueError(f"unsupported language {language!r}")
    translation(language)  # fail here, not in the middle of drawing a dialog
    with _lock:
        _current = language
        listeners = list(_listeners)
    for listener in listeners:
        listener(language)


def current_language() -> str:
    return _current


def on_language_change(listener: Callable[[str], None]) -> None:
    with _lock:
        _listeners.append(listener)


def _(message: str) -> str:
    """The message in the current language."""
    return translation(_current).gettext(message)


def N_(message: str) -> str:
    """Marks a message for the catalogues where it is defined; translate it with ``_``."""
    return message
