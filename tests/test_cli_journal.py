"""`imza-agent journal show` (issue 12): a table a person reads (local time, site,
certificate holder, what, result) across the rotated journal files, `--since` and
`--origin` filters, `--json` for machines, headings in the chosen language. The journal is
written by the real writer (agent/journal/), the command runs as a subprocess."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import pkcs12
from daemon import NO_KEYRING, REPO

from agent.commands.journal_show import BadSince, origin_matches, parse_since
from agent.journal import Journal
from agent.journal.files import kept_files
from agent.keystores.demo import DEMO_HOLDER, DEMO_PIN, ensure_demo_identity

PORTAL = "https://portal.e-gov.az"
BANK = "https://online.bank.example"


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMZA_AGENT_HOME": str(home), "PYTHON_KEYRING_BACKEND": NO_KEYRING,
           "XDG_CONFIG_HOME": str(home.parent / "xdg"), "LANG": "C.UTF-8", "LANGUAGE": "",
           "LC_ALL": "", "TZ": "UTC"}
    return subprocess.run([sys.executable, "-m", "agent.cli", "journal", "show", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
                          check=False)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A journal of 24 entries over several files (rotation at 4 KiB): the demo identity's
    logins and signatures on the portal, signatures of an unknown certificate at the bank,
    every fourth one cancelled."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", NO_KEYRING)
    home = tmp_path / "home"
    identity = ensure_demo_identity(home)
    loaded = pkcs12.load_pkcs12(identity.p12_path.read_bytes(), DEMO_PIN.encode())
    assert loaded.cert is not None
    demo_fp = loaded.cert.certificate.fingerprint(hashes.SHA256()).hex()
    journal = Journal(home / "journal.jsonl", max_bytes=4096, keep_files=10,
                      keyring_timeout=5)
    for n in range(24):
        at_portal = n % 2 == 0
        journal.append(origin=PORTAL if at_portal else BANK,
                       method="auth.login" if n % 6 == 0 else "sign.hash",
                       certificate_sha256=demo_fp if at_portal else "ab" * 32,
                       digest_algorithm="SHA-256", digest_hex="00" * 32,
                       result="USER_CANCELLED" if n % 4 == 3 else "ok",
                       count=3 if n == 5 else 1)
    journal.close()
    assert len(kept_files(home / "journal.jsonl")) >= 3  # the table must span rotations
    return home


def rows(output: str) -> list[str]:
    return output.splitlines()[2:]  # heading and rule first


@pytest.mark.linux
def test_the_table_spans_rotated_files_and_names_what_it_can(home: Path) -> None:
    result = cli(home)
    assert result.returncode == 0, result.stderr
    heading = result.stdout.splitlines()[0].split()
    assert heading == ["time", "site", "certificate", "holder", "what", "result"]
    table = rows(result.stdout)
    assert len(table) == 24
    first = table[0]
    assert "portal.e-gov.az" in first and DEMO_HOLDER in first and "login" in first
    assert "done" in first
    assert "online.bank.example" in table[1] and "abababababababab" in table[1]
    assert "signature ×3" in table[5]
    assert "cancelled by the user" in table[3]
    # Local time (TZ=UTC here), to the second, in order.
    times = [dt.datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S") for line in table]
    assert times == sorted(times)


@pytest.mark.linux
def test_filters_by_origin_and_by_time(home: Path) -> None:
    portal = rows(cli(home, "--origin", "e-gov.az").stdout)
    assert len(portal) == 12 and all("portal.e-gov.az" in line for line in portal)
    exact = rows(cli(home, "--origin", BANK).stdout)
    assert len(exact) == 12 and all("online.bank.example" in line for line in exact)
    assert len(rows(cli(home, "--since", "1h").stdout)) == 24
    future = cli(home, "--since", "2999-01-01")
    assert future.stdout.strip() == "no entries match (24 in the journal)"
    bad = cli(home, "--since", "yesterday")
    assert bad.returncode == 2
    assert "neither a date" in bad.stderr


@pytest.mark.linux
def test_json_for_machines(home: Path) -> None:
    entries = json.loads(cli(home, "--json", "--origin", "portal.e-gov.az").stdout)
    assert len(entries) == 12
    assert [e["seq"] for e in entries] == list(range(1, 25, 2))
    assert entries[0]["holder"] == DEMO_HOLDER
    assert entries[0]["method"] == "auth.login"


@pytest.mark.linux
def test_headings_follow_the_language(home: Path) -> None:
    result = cli(home, "--language", "az")
    assert result.stdout.splitlines()[0].split() == [
        "vaxt", "sayt", "sertifikat", "sahibi", "nə", "nəticə"]
    assert "istifadəçi ləğv etdi" in result.stdout


@pytest.mark.linux
def test_unreadable_lines_are_skipped_and_counted(home: Path) -> None:
    with (home / "journal.jsonl").open("a", encoding="utf-8") as journal:
        journal.write("{not json\n")
    result = cli(home)
    assert len(rows(result.stdout)) == 24
    assert "1 unreadable lines skipped" in result.stderr


@pytest.mark.linux
def test_an_empty_journal_says_so(tmp_path: Path) -> None:
    assert cli(tmp_path / "home").stdout.strip() == "the journal is empty"


def test_since_and_origin_parsing() -> None:
    now = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
    assert parse_since("7d", now) == now - dt.timedelta(days=7)
    assert parse_since("24h", now) == now - dt.timedelta(hours=24)
    assert parse_since("30m", now) == now - dt.timedelta(minutes=30)
    assert parse_since("2026-11-01T00:00:00+04:00", now).utcoffset() == dt.timedelta(hours=4)
    with pytest.raises(BadSince):
        parse_since("7 days", now)
    assert origin_matches("https://a.e-gov.az", "e-gov.az")
    assert not origin_matches("https://ne-gov.az", "e-gov.az")
    assert not origin_matches("https://a.e-gov.az", "https://e-gov.az")
