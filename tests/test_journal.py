"""The signing journal: lines chained by an HMAC whose key is in the OS keyring; verify
finds removed, reordered and edited lines and reports unreadable ones without crashing.

Every test runs against a real Secret Service (gnome-keyring on a private D-Bus bus,
tests/keyring_bus.py).  The record-based checks (a deleted journal, a cut tail, re-chaining,
rotation, the key-file fallback) are in tests/test_journal_keyring.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from keyring_bus import keyring_bus, keyring_env, secret

from agent.journal import Journal, verify
from agent.journal.lines import canonical

pytestmark = pytest.mark.keyring
__all__ = ["keyring_bus", "keyring_env"]  # fixtures, used by name


@pytest.fixture(autouse=True)
def _keyring(keyring_env: dict[str, str]) -> Iterator[dict[str, str]]:
    yield keyring_env


def _write(path: Path, n: int = 4) -> Journal:
    journal = Journal(path)
    for i in range(n):
        journal.append(origin="https://e-gov.az", method="sign.hash",
                       certificate_sha256="ab" * 32, digest_algorithm="SHA-256",
                       digest_hex=f"{i:064x}", result="ok")
    assert journal.flush()
    return journal


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _put(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_intact_journal_verifies_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    _write(path, 2)
    _write(path, 2)  # a new Journal object continues the chain from the head file
    assert verify(path) == []
    assert [json.loads(line)["seq"] for line in _lines(path)] == [1, 2, 3, 4]


def test_each_line_is_an_hmac_under_the_key_in_the_keyring(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    _write(path, 2)
    key_hex = secret(path, "journal-hmac-key")
    assert key_hex is not None and len(bytes.fromhex(key_hex)) == 32
    assert not (tmp_path / "journal.jsonl.key").exists()  # the keyring worked: no key file
    for line in _lines(path):
        entry = json.loads(line)
        mac = hmac.new(bytes.fromhex(key_hex), canonical(entry), hashlib.sha256).hexdigest()
        assert entry["hash"] == mac
        assert entry["hash"] != hashlib.sha256(canonical(entry)).hexdigest()


@pytest.mark.parametrize("tamper", ["remove", "reorder", "edit", "truncate", "drop_first",
                                    "edit_last"])
def test_tampering_is_detected(tmp_path: Path, tamper: str) -> None:
    path = tmp_path / "journal.jsonl"
    _write(path)
    lines = _lines(path)
    if tamper == "remove":
        del lines[1]
    elif tamper == "reorder":
        lines[1], lines[2] = lines[2], lines[1]
    elif tamper in ("edit", "edit_last"):
        at = 2 if tamper == "edit" else -1
        entry = json.loads(lines[at])
        entry["origin"] = "https://evil.example"
        lines[at] = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
    elif tamper == "truncate":
        lines = lines[:-1]
    elif tamper == "drop_first":
        lines = lines[1:]
    _put(path, lines)
    assert verify(path) != []


def test_journal_never_holds_secrets(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    entry = _write(path, 1).append(origin="https://e-gov.az", method="auth.login",
                                    certificate_sha256=None, digest_algorithm=None,
                                    digest_hex=None, result="USER_CANCELLED")
    assert set(entry) == {"seq", "time", "origin", "method", "certificate", "digestAlgorithm",
                          "digest", "count", "result", "prev", "kid", "hash"}
    key_hex = secret(path, "journal-hmac-key")
    assert key_hex is not None
    assert key_hex not in path.read_text(encoding="utf-8")  # kid names the key, never holds it


def _cli(env: dict[str, str], home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", "--language", "en", "journal", *args],
                          capture_output=True, text=True, timeout=60,
                          env={**env, "IMZA_AGENT_HOME": str(home)})


def test_cli_verify_reports_tampering(tmp_path: Path, _keyring: dict[str, str]) -> None:
    home = tmp_path / "home"
    home.mkdir()
    _write(home / "journal.jsonl")
    ok = _cli(_keyring, home, "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"journal intact: 4 entries from seq 1 to 4 in 1 file ({home / 'journal.jsonl'})" \
        in ok.stdout
    assert "key kept in a file" not in ok.stdout
    lines = _lines(home / "journal.jsonl")
    _put(home / "journal.jsonl", lines[:1] + lines[2:])
    bad = _cli(_keyring, home, "verify")
    assert bad.returncode == 1 and "journal.jsonl line 2: " in bad.stdout
    assert "NOT intact" in bad.stdout
    report = json.loads(_cli(_keyring, home, "verify", "--json").stdout)
    assert report["intact"] is False and report["key_storage"] == "keyring"
    assert {"file": "journal.jsonl", "line": 2,
            "problem": "chain broken: a line before it was removed, reordered or edited"} \
        in report["problems"]


def test_cli_show_prints_the_lines(tmp_path: Path, _keyring: dict[str, str]) -> None:
    home = tmp_path / "home"
    home.mkdir()
    _write(home / "journal.jsonl", 2)
    shown = _cli(_keyring, home, "show", "--json")
    assert shown.returncode == 0
    assert [entry["seq"] for entry in json.loads(shown.stdout)] == [1, 2]


@pytest.mark.parametrize("seq", ["x", [2], None, 2.5, True, {"n": 2}])
def test_a_line_whose_seq_is_not_a_number_is_reported_not_fatal(tmp_path: Path,
                                                                 seq: object) -> None:
    path = tmp_path / "journal.jsonl"
    _write(path, 3)
    lines = _lines(path)
    entry = json.loads(lines[1])
    entry["seq"] = seq
    lines[1] = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
    _put(path, lines)
    problems = verify(path)
    # The edited line is named; the line after it keeps its place in the sequence.
    assert {p.line for p in problems} == {2}
    assert any("sequence jumps from 1 to" in p.problem and "not an integer" in p.problem
               for p in problems)


@pytest.mark.parametrize("bad", [
    b"\xff\xfe not utf-8",
    b"[" * 200_000,  # nesting too deep for the JSON parser: RecursionError before
    b'{"seq": 2, "hash": ',  # cut while written
    b"[1, 2]",
    b'{"seq": 1e999}',
    b"",
])
def test_an_unreadable_line_is_reported_with_its_number(tmp_path: Path, bad: bytes) -> None:
    path = tmp_path / "journal.jsonl"
    _write(path, 3)
    raw = path.read_bytes().split(b"\n")
    raw[1] = bad
    path.write_bytes(b"\n".join(raw))
    problems = verify(path)
    assert problems and {p.line for p in problems} == {2}
    assert all(p.file == "journal.jsonl" for p in problems)


def test_a_damaged_head_file_is_reported_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    _write(path, 2)
    (tmp_path / "journal.jsonl.head").write_text('{"seq": 1e999, "hash": "x"}')
    problems = verify(path)
    assert any("head record in the head file is damaged" in p.problem for p in problems)
