"""What `imza-agent doctor`, `trust` and `journal verify` print for a person follows the CLI's
language (issue 12 §5), while `--json` stays the same English data in every language.

The commands run as subprocesses of ``python -m agent.cli`` with their own home, the real
certutil on a real NSS database, a journal written by the real writer, and no keyring."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon import NO_KEYRING, REPO

from agent import i18n
from agent.doctor.transports import transport_lines
from agent.journal import Journal
from agent.journal import command as journal_command
from agent.journal import keys as journal_keys
from agent.journal.verify import verify_report
from agent.tls import nss, trust

CONFIG = """\
[server]
wss_enabled = false

[tokens]
known_modules = false

[demo]
enabled = "auto"
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "agent.toml").write_text(CONFIG, encoding="utf-8")
    return home


def cli(home: Path, language: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMZA_AGENT_HOME": str(home / "agent"), "HOME": str(home),
           "XDG_CONFIG_HOME": str(home / "xdg"), "PYTHON_KEYRING_BACKEND": NO_KEYRING,
           # No pcscd for these commands: the doctor's report must not change between runs
           # because another test plugged a virtual reader in meanwhile.
           "PCSCLITE_CSOCK_NAME": str(home / "no-pcscd.sock"),
           "LANG": "C.UTF-8", "LANGUAGE": "", "LC_ALL": ""}
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "--config", str(home.parent / "agent.toml"),
         "--language", language, *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def english() -> Iterator[None]:
    yield
    i18n.set_language("en")  # the process-wide language: leave it as the other tests expect


@pytest.mark.linux
def test_doctor_speaks_azerbaijani_and_its_json_does_not_change(home: Path) -> None:
    cli(home, "en", "doctor", "--json")  # the first run makes the demo identity
    az = cli(home, "az", "doctor")
    assert az.returncode == 0, az.stdout + az.stderr
    for heading in ("Məlumat qovluğu:", "\nNəqliyyat kanalları\n",
                    "\nBrauzerlərin etibarı (agentin wss:// üçün sertifikatı)\n",
                    "\nPKCS#11 modulları\n", "\nTokenlər\n", "\nSertifikatlar\n",
                    "\nDemo şəxsiyyət\n", "\nProblemlər\n",
                    "PC/SC əlçatan deyil:", "[DEMO — real şəxsiyyət deyil]",
                    "DEMO token təklif olunur (real token tapılmadı)",
                    "wss:// söndürülüb ([server] wss_enabled = false)"):
        assert heading in az.stdout, heading
    for english_text in ("\nCertificates\n", "\nTokens\n", "\nProblems\n", "Data dir:",
                         "DEMO token offered"):
        assert english_text not in az.stdout
    en = cli(home, "en", "doctor")
    assert "\nCertificates\n" in en.stdout and "DEMO token offered" in en.stdout

    reports = {lang: cli(home, lang, "doctor", "--json") for lang in ("en", "az", "ru")}
    assert {r.returncode for r in reports.values()} == {0}
    assert reports["az"].stdout == reports["en"].stdout == reports["ru"].stdout
    assert json.loads(reports["ru"].stdout)["demo"]["active"] is True


def _nss_database(home: Path) -> Path:
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True)
    nss.create_database(db)
    return db


@pytest.mark.linux
def test_trust_speaks_russian_and_its_json_does_not_change(home: Path) -> None:
    db = _nss_database(home)
    before = cli(home, "ru", "trust", "status")
    assert before.returncode == 1, before.stdout + before.stderr  # not trusted yet
    assert f"{db}: НЕ доверенный" in before.stdout
    assert "NOT trusted" not in before.stdout

    installed = cli(home, "ru", "trust", "install")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert f"{db}: доверенный" in installed.stdout
    assert "перезапустите открытые браузеры, чтобы изменение вступило в силу" \
        in installed.stdout

    status = cli(home, "ru", "trust", "status")
    assert status.returncode == 0 and f"{db}: доверенный" in status.stdout
    assert f"{db}: trusted" in cli(home, "en", "trust", "status").stdout
    as_json = {lang: cli(home, lang, "trust", "status", "--json").stdout
               for lang in ("en", "ru", "tr")}
    assert as_json["en"] == as_json["ru"] == as_json["tr"]
    assert json.loads(as_json["ru"])["databases"][0]["trusted"] is True


@pytest.mark.linux
def test_trust_without_databases_says_so_in_turkish(home: Path) -> None:
    result = cli(home, "tr", "trust", "status")
    assert result.returncode == 1
    assert "tarayıcı sertifika veritabanı bulunamadı" in result.stdout


def _damaged_journal(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", NO_KEYRING)
    path = home / "agent" / "journal.jsonl"
    path.parent.mkdir(parents=True)
    journal = Journal(path, keyring_timeout=5)
    for n in range(4):
        journal.append(origin="https://portal.e-gov.az", method="sign.hash",
                       certificate_sha256="ab" * 32, digest_algorithm="SHA-256",
                       digest_hex=f"{n:064x}", result="ok")
    journal.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(lines[:1] + lines[2:]) + "\n", encoding="utf-8")  # line 2 gone
    return path


@pytest.mark.linux
def test_journal_verify_speaks_turkish_and_its_json_does_not_change(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _damaged_journal(home, monkeypatch)
    tr = cli(home, "tr", "journal", "verify")
    assert tr.returncode == 1, tr.stdout + tr.stderr
    assert "journal.jsonl, satır 2: sıra 1 değerinden 3 değerine atlıyor" in tr.stdout
    assert ("journal.jsonl, satır 2: zincir kopmuş: önceki bir satır silinmiş, yeri "
            "değiştirilmiş ya da düzenlenmiş") in tr.stdout
    assert "günlük sağlam DEĞİL: sorun sayısı: 2, kayıt sayısı: 3, dosya sayısı: 1" in tr.stdout
    assert "NOT intact" not in tr.stdout and "chain broken" not in tr.stdout
    # No keyring: the journal's key is in a file, and verify says so, in Turkish too.
    assert ("not: işletim sisteminin anahtarlığı kullanılamıyor: " in tr.stdout
            and "not: anahtar bir dosyada tutuluyor: " in tr.stdout), tr.stdout
    assert "key kept in a file" not in tr.stdout

    en = cli(home, "en", "journal", "verify")
    assert "journal.jsonl line 2: chain broken" in en.stdout
    assert "journal NOT intact: 2 problem(s) in 3 entries, 1 file(s)" in en.stdout

    as_json = {lang: cli(home, lang, "journal", "verify", "--json").stdout
               for lang in ("en", "tr", "az", "ru")}
    assert as_json["en"] == as_json["tr"] == as_json["az"] == as_json["ru"]
    problems = json.loads(as_json["tr"])["problems"]
    assert {"file": "journal.jsonl", "line": 2,
            "problem": "chain broken: a line before it was removed, reordered or edited"} \
        in problems


def test_a_journal_problem_reads_in_english_as_the_json_says_it(
        home: Path, monkeypatch: pytest.MonkeyPatch, english: None) -> None:
    path = _damaged_journal(home, monkeypatch)
    report = verify_report(path, keyring_timeout=5)
    assert report.problems
    i18n.set_language("en")
    assert [p.shown() for p in report.problems] == [p.problem for p in report.problems]
    i18n.set_language("ru")
    shown = [p.shown() for p in report.problems]
    assert "нарушена последовательность: после 1 идёт 3" in shown
    assert all(p.problem.isascii() for p in report.problems)


def test_the_doctor_translates_what_the_daemon_wrote_in_english(english: None) -> None:
    report = {"running": True, "pid": 42, "ports": {"ws": 29171},
              "unavailable": {"wss": "port 29170 is used by another program"}}
    i18n.set_language("az")
    lines = transport_lines(report)
    assert lines == ["  agent işləyir (pid 42): ws 29171",
                     "  29170 portu başqa proqram tərəfindən istifadə olunur; səhifələr "
                     "agentə wss ilə çata bilmir"]


def test_the_translated_journal_note_is_the_one_the_keys_give() -> None:
    assert journal_command.FILE_NOTE_TEXT == journal_keys.FILE_NOTE


def test_the_translated_certutil_hint_is_the_one_nss_gives(english: None) -> None:
    assert trust.INSTALL_HINT_TEXT == nss.INSTALL_HINT
    i18n.set_language("en")
    assert trust.install_hint() == nss.INSTALL_HINT
    i18n.set_language("tr")
    assert "gereklidir" in trust.install_hint()
