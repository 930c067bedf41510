"""The daemon opens its journal (and with it the keyring thread) after start-up, or at
the first line if a request gets there first (agent/daemon/deferred_journal.py)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from daemon import NO_KEYRING

from agent.daemon.deferred_journal import DeferredJournal
from agent.journal import Journal


@pytest.fixture(autouse=True)
def no_os_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", NO_KEYRING)


def _deferred(path: Path, made: list[Journal]) -> DeferredJournal:
    def make() -> Journal:
        journal = Journal(path, keyring_timeout=5.0)
        made.append(journal)
        return journal

    return DeferredJournal(make)


def _keyring_threads() -> int:
    return sum(t.name == "journal-keyring" and t.is_alive() for t in threading.enumerate())


def test_nothing_is_opened_until_asked(tmp_path: Path) -> None:
    made: list[Journal] = []
    before = _keyring_threads()
    deferred = _deferred(tmp_path / "journal" / "journal.jsonl", made)
    assert made == [] and deferred.opened is None
    assert _keyring_threads() == before
    deferred.close(1.0)  # nothing written, nothing to close, nothing created
    assert made == [] and not (tmp_path / "journal").exists()
    journal = deferred.open()
    assert made == [journal] and deferred.opened is journal
    assert deferred.open() is journal  # once
    assert deferred.path == journal.path
    deferred.close(5.0)


def test_a_line_before_the_scheduled_opening_opens_it_and_is_written(tmp_path: Path) -> None:
    made: list[Journal] = []
    path = tmp_path / "journal.jsonl"
    deferred = _deferred(path, made)
    entry = deferred.append(origin="https://portal.example", method="sign.hash",
                            certificate_sha256="ab" * 32, digest_algorithm="SHA-256",
                            digest_hex="cd" * 32, result="ok")
    assert len(made) == 1
    assert deferred.flush(5.0)
    deferred.close(5.0)
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines == [entry]
    assert lines[0]["origin"] == "https://portal.example" and lines[0]["seq"] == 1
