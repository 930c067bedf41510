"""The four languages: every string a dialog or the tray shows is translated, the
compiled catalogues match their sources, and the language follows the OS unless chosen."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import i18n
from agent.i18n import catalog


def test_every_dialog_and_tray_string_is_translated_in_every_language() -> None:
    messages = catalog.marked_messages(catalog.source_files())
    assert len(messages) > 50  # the dialogs and the tray were found at all
    found = [p for language in i18n.LANGUAGES for p in catalog.problems(language, messages)]
    assert found == []


def test_a_missing_translation_is_reported(tmp_path: Path) -> None:
    source = tmp_path / "dialog.py"
    source.write_text('_("A sentence nobody translated")\nN_("Cancel")\n', encoding="utf-8")
    messages = catalog.marked_messages([source])
    assert set(messages) == {"A sentence nobody translated", "Cancel"}
    found = catalog.problems("az", messages)
    assert found == ["az: no translation for 'A sentence nobody translated' (dialog.py:1)"]


def test_every_catalogue_entry_is_used() -> None:
    """A string the code no longer shows leaves the catalogues, so translators never work
    on dead text (the header, msgid "", is the one entry without a caller)."""
    messages = catalog.marked_messages(catalog.source_files())
    for language in i18n.LANGUAGES:
        entries = catalog.parse_po(catalog.po_path(language).read_text(encoding="utf-8"))
        assert sorted(set(entries) - set(messages) - {""}) == [], language


def test_compiled_catalogues_are_current() -> None:
    for language in i18n.LANGUAGES:
        po = catalog.po_path(language)
        expected = catalog.compile_mo(catalog.parse_po(po.read_text(encoding="utf-8")))
        assert po.with_suffix(".mo").read_bytes() == expected, (
            f"{language}: run python -m agent.i18n.catalog")


@pytest.mark.parametrize(("language", "cancel", "items"), [
    ("az", "Ləğv et", "İmzalanacaq elementlərin sayı: 2"),
    ("tr", "İptal", "İmzalanacak öğe sayısı: 2"),
    ("ru", "Отмена", "Элементов для подписи: 2"),
    ("en", "Cancel", "Items to sign: 2"),
])
def test_gettext_serves_each_language(language: str, cancel: str, items: str) -> None:
    try:
        i18n.set_language(language)
        assert i18n._("Cancel") == cancel
        assert i18n._("Items to sign: {n}").format(n=2) == items
    finally:
        i18n.set_language("en")


@pytest.mark.parametrize(("env", "expected"), [
    ({"LANG": "az_AZ.UTF-8"}, "az"),
    ({"LANG": "tr_TR.UTF-8"}, "tr"),
    ({"LC_ALL": "ru_RU.UTF-8", "LANG": "en_US.UTF-8"}, "ru"),
    ({"LANGUAGE": "de:tr", "LANG": "de_DE.UTF-8"}, "tr"),
    ({"LANG": "de_DE.UTF-8"}, "en"),
    ({"LC_MESSAGES": "fr_FR.UTF-8", "LANG": "az_AZ.UTF-8"}, "en"),
    ({}, "en"),
])
def test_language_follows_the_os_locale(env: dict[str, str], expected: str) -> None:
    assert i18n.detect_language(env) == expected
    assert i18n.resolve("auto", env) == expected


def test_config_overrides_the_os_locale() -> None:
    assert i18n.resolve("ru", {"LANG": "az_AZ.UTF-8"}) == "ru"
    with pytest.raises(ValueError):
        i18n.resolve("de")
    with pytest.raises(ValueError):
        i18n.set_language("de")


def test_language_change_is_announced() -> None:
    heard: list[str] = []
    i18n.on_language_change(heard.append)
    try:
        i18n.set_language("tr")
    finally:
        i18n.set_language("en")
    assert heard[-2:] == ["tr", "en"]


@pytest.mark.posix
def test_the_language_chosen_in_the_tray_is_found_again(agent_home: Path) -> None:
    from agent.ui.preferences import save_language, saved_language

    env = {"LANG": "ru_RU.UTF-8"}
    assert saved_language() is None
    assert i18n.resolve("auto", env, saved=saved_language()) == "ru"  # the OS locale
    save_language("az")  # what the tray does on a choice
    assert i18n.resolve("auto", env, saved=saved_language()) == "az"
    assert i18n.resolve("tr", env, saved=saved_language()) == "tr"  # the config file wins
    assert oct((agent_home / "preferences.json").stat().st_mode & 0o777) == "0o600"
