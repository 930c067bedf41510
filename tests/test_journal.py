"""The signing journal detects removed, reordered and edited lines, and a cut-off end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.journal import Journal, verify


def _write(path: Path, n: int = 4) -> Journal:
    journal = Journal(path)
    for i in range(n):
        journal.append(origin="https://e-gov.az", method="sign.hash",
                       certificate_sha256="ab" * 32, digest_algorithm="SHA-256",
                       digest_hex=f"{i:064x}", result="ok")
    return journal


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_intact_journal_verifies_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    _write(path, 2)
    _write(path, 2)  # a new Journal object continues the chain from the head file
    assert verify(path) == []
    assert [json.loads(line)["seq"] for line in _lines(path)] == [1, 2, 3, 4]


@pytest.mark.parametrize("tamper", ["remove", "reorder", "edit", "truncate", "drop_first"])
def test_tampering_is_detected(tmp_path: Path, tamper: str) -> None:
    path = tmp_path / "journal.jsonl"
    _write(path)
    lines = _lines(path)
    if tamper == "remove":
        del lines[1]
    elif tamper == "reorder":
        lines[1], lines[2] = lines[2], lines[1]
    elif tamper == "edit":
        entry = json.loads(lines[2])
        entry["origin"] = "https://evil.example"
        lines[2] = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
    elif tamper == "truncate":
        lines = lines[:-1]
    elif tamper == "drop_first":
        lines = lines[1:]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert verify(path) != []


def test_journal_never_holds_secrets(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    entry = _write(path, 1).append(origin="https://e-gov.az", method="auth.login",
                                    certificate_sha256=None, digest_algorithm=None,
                                    digest_hex=None, result="USER_CANCELLED")
    assert set(entry) == {"seq", "time", "origin", "method", "certificate", "digestAlgorithm",
                          "digest", "count", "result", "prev", "hash"}


def test_cli_verify_reports_tampering(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    _write(home / "journal.jsonl")
    env = {"IMZA_AGENT_HOME": str(home), "PATH": "/usr/bin:/bin"}
    ok = subprocess.run([sys.executable, "-m", "agent.cli", "journal", "verify"],
                        capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and "intact: 4 entries" in ok.stdout
    lines = _lines(home / "journal.jsonl")
    (home / "journal.jsonl").write_text("\n".join(lines[:1] + lines[2:]) + "\n")
    bad = subprocess.run([sys.executable, "-m", "agent.cli", "journal", "verify"],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "line 2" in bad.stdout


@pytest.mark.parametrize("seq", ["x", [2], None])
def test_a_line_whose_seq_is_not_a_number_is_reported_not_fatal(tmp_path: Path,
                                                                 seq: object) -> None:
    path = tmp_path / "journal.jsonl"
    _write(path, 3)
    lines = _lines(path)
    entry = json.loads(lines[1])
    entry["seq"] = seq
    lines[1] = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    problems = verify(path)
    # The edited line is named; the line after it keeps its place in the sequence.
    assert {p.line for p in problems} == {2}
    assert any("sequence jumps from 1 to" in p.problem for p in problems)
