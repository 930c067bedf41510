"""What only the keyring's record and key can show: a deleted journal, a cut tail behind a
rewritten head file, a re-chained journal; plus rotation, file modes, the key-file
fallback and journals from before the key.  A real Secret Service (tests/keyring_bus.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backends import fail
from keyring_bus import keyring_bus, keyring_env, secret

from agent.journal import Journal, verify, verify_report
from agent.journal.keys import FILE_NOTE
from agent.journal.lines import GENESIS, canonical

pytestmark = pytest.mark.keyring
__all__ = ["keyring_bus", "keyring_env"]  # fixtures, used by name


@pytest.fixture(autouse=True)
def _keyring(keyring_env: dict[str, str]) -> Iterator[dict[str, str]]:
    yield keyring_env


def _append(journal: Journal, i: int) -> None:
    journal.append(origin="https://e-gov.az", method="sign.hash", certificate_sha256="ab" * 32,
                   digest_algorithm="SHA-256", digest_hex=f"{i:064x}", result="ok")


def _write(path: Path, n: int, **settings: int) -> Journal:
    journal = Journal(path, **settings)
    for i in range(n):
        _append(journal, i)
    assert journal.flush()
    return journal


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _plain(entry: dict[str, object]) -> str:
    return hashlib.sha256(canonical(entry)).hexdigest()


def _old_head(path: Path, seq: int, line_hash: str) -> None:
    """The head file as the agent wrote it before this change."""
    (path.parent / (path.name + ".head")).write_text(
        json.dumps({"seq": f"{seq:020d}", "hash": line_hash}), encoding="ascii")


def _rechain(lines: list[str]) -> tuple[list[str], str]:
    """What an attacker without the key does: drop the MAC fields, recompute a SHA-256
    chain over the lines as they want them."""
    out, prev = [], GENESIS
    for seq, line in enumerate(lines, start=1):
        entry = json.loads(line)
        entry.pop("kid", None)
        entry["seq"], entry["prev"], entry["hash"] = seq, prev, ""
        entry["hash"] = prev = _plain(entry)
        out.append(json.dumps(entry, separators=(",", ":")))
    return out, prev


def _verify_cli(env: dict[str, str], home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", "--language", "en", "journal",
                           "verify", *args],
                          capture_output=True, text=True, timeout=60,
                          env={**env, "IMZA_AGENT_HOME": str(home)})


# --- the keyring's record ---------------------------------------------------------------------

def test_a_deleted_journal_is_reported_not_intact(tmp_path: Path,
                                                  _keyring: dict[str, str]) -> None:
    path = tmp_path / "journal.jsonl"
    _write(path, 3)
    path.unlink()
    (tmp_path / "journal.jsonl.head").unlink()
    problems = [p.problem for p in verify(path)]
    assert problems == ["journal missing although the keyring says 3 entries exist "
                        "(up to seq 3)"]
    done = _verify_cli(_keyring, tmp_path)
    assert done.returncode == 1 and "intact: 0 entries" not in done.stdout
    assert "journal missing although the keyring says 3 entries exist" in done.stdout


def test_the_existence_record_is_written_when_the_journal_is_created(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    _append(journal, 0)  # no flush: this record must not wait for the background writer
    record = json.loads(secret(path, "journal-head") or "null")
    assert record == {"first": 1, "seq": 1, "hash": json.loads(_lines(path)[0])["hash"]}
    journal.close()


def test_a_cut_tail_with_a_rewritten_head_file_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    _write(path, 5)
    lines = _lines(path)
    path.write_text("\n".join(lines[:3]) + "\n", encoding="utf-8")
    _old_head(path, 3, json.loads(lines[2])["hash"])  # the head file agrees with the cut
    problems = [p.problem for p in verify(path)]
    assert problems == ["the journal ends at seq 3 but the keyring says seq 5 was written: "
                        "lines were cut off the end"]


def test_an_edited_last_line_with_its_hash_recomputed_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    _write(path, 3)
    lines = _lines(path)
    entry = json.loads(lines[-1])
    entry["origin"] = "https://evil.example"
    entry["hash"] = ""
    entry["hash"] = _plain(entry)  # all the old format asked for
    lines[-1] = json.dumps(entry, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _old_head(path, 3, entry["hash"])
    problems = verify(path)
    assert ("journal.jsonl", 3, "edited: its HMAC does not match") in \
        [(p.file, p.line, p.problem) for p in problems]
    assert any("not the one the keyring recorded" in p.problem for p in problems)


def test_a_rechained_journal_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    _write(path, 4)
    lines = _lines(path)
    rewritten, last = _rechain(lines[:1] + lines[2:])  # line 2 removed, the rest re-chained
    path.write_text("\n".join(rewritten) + "\n", encoding="utf-8")
    _old_head(path, 3, last)
    problems = [p.problem for p in verify(path)]
    assert "the journal ends at seq 3 but the keyring says seq 4 was written: lines were " \
           "cut off the end" in problems


def test_a_rechained_journal_of_the_same_length_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    _write(path, 3)
    lines = _lines(path)
    entry = json.loads(lines[1])
    entry["origin"] = "https://evil.example"
    lines[1] = json.dumps(entry)
    rewritten, last = _rechain(lines)
    path.write_text("\n".join(rewritten) + "\n", encoding="utf-8")
    _old_head(path, 3, last)
    problems = [p.problem for p in verify(path)]
    assert "the line at seq 3 is not the one the keyring recorded: the journal was " \
           "rewritten" in problems


def test_a_plain_line_after_keyed_ones_is_a_forgery(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    _write(path, 2)
    lines = _lines(path)
    entry = json.loads(lines[-1])
    forged = {**entry, "seq": 3, "prev": entry["hash"], "hash": ""}
    forged.pop("kid")
    forged["hash"] = _plain(forged)
    path.write_text("\n".join([*lines, json.dumps(forged)]) + "\n", encoding="utf-8")
    _old_head(path, 3, forged["hash"])
    assert (3, "a line without the key's HMAC after keyed lines: inserted or re-chained") in \
        [(p.line, p.problem) for p in verify(path)]


def test_after_a_deletion_the_agent_continues_the_chain_and_the_hole_shows(
        tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    _write(path, 3).close()
    path.unlink()
    (tmp_path / "journal.jsonl.head").unlink()
    _write(path, 1)  # the agent started again after the deletion
    assert json.loads(_lines(path)[0])["seq"] == 4
    assert [p.problem for p in verify(path)] == [
        "entries from seq 1 to 3 are missing: the head file says the journal starts at seq 1",
        "entries from seq 1 to 3 are missing: the keyring says the journal starts at seq 1"]


# --- journals written before the key ----------------------------------------------------------

def _legacy(path: Path, n: int) -> str:
    prev, out = GENESIS, []
    for seq in range(1, n + 1):
        entry = {"seq": seq, "time": "2026-01-01T00:00:00.000+00:00",
                 "origin": "https://e-gov.az", "method": "sign.hash", "certificate": None,
                 "digestAlgorithm": "SHA-256", "digest": f"{seq:064x}", "count": 1,
                 "result": "ok", "prev": prev, "hash": ""}
        entry["hash"] = prev = _plain(entry)
        out.append(json.dumps(entry, separators=(",", ":")))
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    _old_head(path, n, prev)
    return prev


def test_a_plain_journal_is_verified_and_continued_with_the_hmac(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    last = _legacy(path, 3)
    assert verify(path) == []
    journal = Journal(path)
    assert journal.flush()
    # The keyring learns that this journal exists before any new line is written.
    assert json.loads(secret(path, "journal-head") or "null") == {"first": 1, "seq": 3,
                                                                   "hash": last}
    _append(journal, 4)
    assert journal.flush()
    new = json.loads(_lines(path)[-1])
    assert new["seq"] == 4 and new["prev"] == last and "kid" in new
    report = verify_report(path)
    assert report.intact and (report.first_seq, report.last_seq, report.entries) == (1, 4, 4)


# --- rotation ---------------------------------------------------------------------------------

def test_rotation_at_the_cap_keeps_the_chain_and_drops_old_files(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = _write(path, 60, max_bytes=4096, keep_files=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["journal.jsonl", "journal.jsonl.1", "journal.jsonl.2", "journal.jsonl.head"]
    assert all(p.stat().st_size <= 4096 for p in tmp_path.iterdir())
    oldest = json.loads(_lines(tmp_path / "journal.jsonl.2")[0])
    assert oldest["seq"] > 1  # older files were dropped
    report = verify_report(path)
    assert report.problems == []
    assert (report.first_seq, report.last_seq) == (oldest["seq"], 60)
    assert report.entries == 60 - oldest["seq"] + 1
    assert json.loads(secret(path, "journal-head") or "null")["first"] == oldest["seq"]
    # Deleting the oldest kept file is not a rotation: the records say where it started.
    (tmp_path / "journal.jsonl.2").unlink()
    start = json.loads(_lines(tmp_path / "journal.jsonl.1")[0])["seq"]
    assert (f"entries from seq {oldest['seq']} to {start - 1} are missing: the keyring says "
            f"the journal starts at seq {oldest['seq']}") in [p.problem for p in verify(path)]
    journal.close()


def test_cli_summary_names_the_range_and_the_files(tmp_path: Path,
                                                   _keyring: dict[str, str]) -> None:
    path = tmp_path / "journal.jsonl"
    _write(path, 40, max_bytes=4096, keep_files=5)
    report = verify_report(path)
    done = _verify_cli(_keyring, tmp_path)
    assert done.returncode == 0, done.stdout
    assert (f"journal intact: {report.entries} entries from seq 1 to 40 in "
            f"{len(report.files)} files") in done.stdout
    assert len(report.files) > 1
    as_json = json.loads(_verify_cli(_keyring, tmp_path, "--json").stdout)
    assert as_json["intact"] is True and as_json["files"][-1] == "journal.jsonl"


# --- file modes -------------------------------------------------------------------------------

def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_are_0600_and_a_new_directory_0700(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask: without os.open's mode these would be 0644
    try:
        path = tmp_path / "data" / "journal.jsonl"
        _write(path, 30, max_bytes=4096, keep_files=3)
    finally:
        os.umask(old)
    assert _mode(path.parent) == 0o700
    files = list(path.parent.iterdir())
    assert {p.name for p in files} >= {"journal.jsonl", "journal.jsonl.1", "journal.jsonl.head"}
    assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}


def test_files_an_older_version_left_0644_are_narrowed(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    _legacy(path, 2)
    for name in ("journal.jsonl", "journal.jsonl.head"):
        (tmp_path / name).chmod(0o644)
    Journal(path).close()
    assert {_mode(tmp_path / n) for n in ("journal.jsonl", "journal.jsonl.head")} == {0o600}


# --- without a keyring ------------------------------------------------------------------------

def test_without_a_keyring_the_key_is_kept_in_a_0600_file_and_said_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    keyring.set_keyring(fail.Keyring())  # what keyring chooses on a headless server
    path = tmp_path / "journal.jsonl"
    with caplog.at_level(logging.WARNING, logger="agent.journal"):
        journal = _write(path, 3)
        _write(path, 1).close()  # another Journal in the same process: said once
    warnings = [r.getMessage() for r in caplog.records if FILE_NOTE in r.getMessage()]
    assert len(warnings) == 1
    key_file = tmp_path / "journal.jsonl.key"
    assert _mode(key_file) == 0o600
    stored = json.loads(key_file.read_text(encoding="utf-8"))
    assert len(bytes.fromhex(stored[f"journal-hmac-key:{path.resolve()}"])) == 32
    report = verify_report(path)
    assert report.intact and report.key_storage == "file" and FILE_NOTE in report.notes
    assert journal.key_note == FILE_NOTE
    # The key file's record still tells a deleted journal from a new one.
    path.unlink()
    (tmp_path / "journal.jsonl.head").unlink()
    assert [p.problem for p in verify(path)] == [
        "journal missing although the key file says 4 entries exist (up to seq 4)"]


def test_a_key_file_moves_into_the_keyring_when_it_answers_again(tmp_path: Path,
                                                                 _keyring: dict[str, str]
                                                                 ) -> None:
    path = tmp_path / "journal.jsonl"
    keyring.set_keyring(fail.Keyring())
    _write(path, 2).close()
    file_key = json.loads((tmp_path / "journal.jsonl.key").read_text())[
        f"journal-hmac-key:{path.resolve()}"]
    from keyring.backends import SecretService

    keyring.set_keyring(SecretService.Keyring())
    _write(path, 2).close()
    assert secret(path, "journal-hmac-key") == file_key
    assert not (tmp_path / "journal.jsonl.key").exists()
    report = verify_report(path)
    assert report.intact and report.key_storage == "keyring" and report.entries == 4
    done = _verify_cli(_keyring, tmp_path)
    assert done.returncode == 0 and "key kept in a file" not in done.stdout


def test_a_keyring_that_never_answers_costs_at_most_keyring_timeout(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A D-Bus "bus" that accepts the connection and never says a word: the Secret Service
    # call blocks, as it would on a hung keyring daemon or an unlock prompt nobody sees.
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(str(tmp_path / "silent-bus"))
    silent.listen(8)
    os.environ["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={tmp_path / 'silent-bus'}"
    try:
        path = tmp_path / "journal" / "journal.jsonl"
        journal = Journal(path, keyring_timeout=0.5)
        with caplog.at_level(logging.WARNING, logger="agent.journal"):
            _append(journal, 0)  # returns: a hang would fail the test by its timeout
        _append(journal, 1)
        assert any("did not answer within 0.5 s" in r.getMessage() for r in caplog.records)
        assert journal.key_note == FILE_NOTE
        assert (path.parent / "journal.jsonl.key").exists()
        report = verify_report(path, keyring_timeout=0.5)
        assert report.intact, report.problems
        assert "the OS keyring is not usable: the keyring did not answer within 0.5 s" \
            in report.notes
    finally:
        silent.close()
