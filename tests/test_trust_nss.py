"""``imza-agent trust`` against real NSS databases made by the real certutil."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest

from agent.tls import nss, trust
from agent.tls.material import ensure_tls_material


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("IMZA_AGENT_HOME", str(tmp_path / "agent"))
    return home


@pytest.fixture
def tls_dir(home: Path, tmp_path: Path) -> Path:
    return tmp_path / "agent" / "tls"


def _make_db(path: Path) -> Path:
    path.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "--empty-password", "-d", f"sql:{path}"], check=True)
    return path


def _listing(db: Path) -> dict[str, str]:
    """nickname -> trust flags, as certutil itself lists them."""
    out = subprocess.run(["certutil", "-L", "-d", f"sql:{db}"], check=True,
                         capture_output=True, text=True).stdout
    rows = [line.rsplit(None, 1) for line in out.splitlines()[4:] if line.strip()]
    return {nick.strip(): flags for nick, flags in rows}


def _fingerprint_now(tls_dir: Path) -> str:
    return ensure_tls_material(tls_dir).ca_fingerprint_sha256


@pytest.mark.verifiers
def test_install_creates_chromium_db_and_trusts_the_ca(home: Path, tls_dir: Path) -> None:
    assert not (home / ".pki/nssdb").exists()
    assert trust.main("install") == 0
    fp = _fingerprint_now(tls_dir)
    listing = _listing(home / ".pki/nssdb")
    assert listing == {trust.nickname_for(fp): "C,,"}


@pytest.mark.verifiers
def test_install_reaches_firefox_profiles(home: Path, tmp_path: Path) -> None:
    default = _make_db(home / ".mozilla/firefox/abcd1234.default-release")
    elsewhere = _make_db(tmp_path / "profiles/outside")
    (home / ".mozilla/firefox/profiles.ini").write_text(
        f"[Profile0]\nName=default\nIsRelative=1\nPath=abcd1234.default-release\n\n"
        f"[Profile1]\nName=other\nIsRelative=0\nPath={elsewhere}\n")
    (home / ".mozilla/firefox/never-started").mkdir()  # no cert9.db: left alone
    snap = _make_db(home / "snap/firefox/common/.mozilla/firefox/snapprof.default")

    results = trust.install_trust()

    by_path = {r.path: r for r in results}
    assert set(by_path) == {home / ".pki/nssdb", default, elsewhere, snap}
    assert by_path[snap].browser == "firefox (snap)"
    assert all(r.trusted and not r.stale and r.error is None for r in results)
    for db in (default, elsewhere, snap):
        assert list(_listing(db).values()) == ["C,,"]
    assert not (home / ".mozilla/firefox/never-started/cert9.db").exists()


@pytest.mark.verifiers
def test_install_reaches_profiles_in_the_xdg_config_dir(home: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # Firefox 147+ makes new profiles in $XDG_CONFIG_HOME/mozilla/firefox (~/.config by
    # default): Debian's firefox-esr 153 does, and ~/.mozilla then does not exist at all.
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    default = _make_db(home / ".config/mozilla/firefox/14wg.default-esr")
    custom_root = tmp_path / "xdg-config"
    results = trust.install_trust()
    assert {r.path for r in results} == {home / ".pki/nssdb", default}
    assert list(_listing(default).values()) == ["C,,"]

    monkeypatch.setenv("XDG_CONFIG_HOME", str(custom_root))
    custom = _make_db(custom_root / "mozilla/firefox/zz.default-esr")
    assert {r.path for r in trust.install_trust()} == {home / ".pki/nssdb", custom}
    assert list(_listing(custom).values()) == ["C,,"]


@pytest.mark.verifiers
def test_status_reports_trust_by_fingerprint(home: Path, tls_dir: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert trust.main("install") == 0
    capsys.readouterr()
    assert trust.main("status", json_output=True) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["fingerprint_sha256"] == _fingerprint_now(tls_dir)
    assert report["databases"] == [{"path": str(home / ".pki/nssdb"), "browser": "chromium",
                                    "trusted": True, "stale": [], "error": None}]


@pytest.mark.verifiers
def test_status_is_untrusted_when_only_the_nickname_matches(home: Path, tls_dir: Path,
                                                            tmp_path: Path) -> None:
    db = nss.NssDb(_make_db(home / ".pki/nssdb"), "chromium")
    impostor = ensure_tls_material(tmp_path / "impostor")  # another agent CA
    nss.add_trusted_ca(db, trust.nickname_for(_fingerprint_now(tls_dir)),
                       impostor.ca_cert_path)
    [status] = trust.trust_status()
    assert not status.trusted
    assert status.stale == [trust.nickname_for(_fingerprint_now(tls_dir))]


@pytest.mark.verifiers
def test_status_without_c_trust_is_untrusted(home: Path, tls_dir: Path) -> None:
    assert trust.main("install") == 0
    nickname = trust.nickname_for(_fingerprint_now(tls_dir))
    subprocess.run(["certutil", "-M", "-n", nickname, "-t", "c,,",
                    "-d", f"sql:{home / '.pki/nssdb'}"], check=True)
    [status] = trust.trust_status()
    assert not status.trusted and status.stale == []
    assert trust.main("status") == 1


@pytest.mark.verifiers
def test_renewal_leaves_a_stale_ca_that_install_replaces(home: Path, tls_dir: Path) -> None:
    assert trust.main("install") == 0
    old = ensure_tls_material(tls_dir)
    renewed = ensure_tls_material(tls_dir, now=old.not_after - dt.timedelta(days=5))
    assert renewed.renewed

    [status] = trust.trust_status()
    assert not status.trusted
    assert status.stale == [trust.nickname_for(old.ca_fingerprint_sha256)]
    assert trust.main("status") == 1

    results = trust.install_trust(now=old.not_after - dt.timedelta(days=5))
    assert [(r.trusted, r.stale) for r in results] == [(True, [])]
    assert _listing(home / ".pki/nssdb") == {
        trust.nickname_for(renewed.ca_fingerprint_sha256): "C,,"}


@pytest.mark.verifiers
def test_install_removes_stale_generations(home: Path, tls_dir: Path, tmp_path: Path) -> None:
    db = nss.NssDb(_make_db(home / ".pki/nssdb"), "chromium")
    older = ensure_tls_material(tmp_path / "older-generation")
    nss.add_trusted_ca(db, trust.nickname_for(older.ca_fingerprint_sha256),
                       older.ca_cert_path)
    assert trust.main("install") == 0
    assert _listing(db.path) == {trust.nickname_for(_fingerprint_now(tls_dir)): "C,,"}


@pytest.mark.verifiers
def test_remove_deletes_every_generation_and_nothing_else(home: Path, tls_dir: Path,
                                                          tmp_path: Path) -> None:
    assert trust.main("install") == 0
    db = nss.NssDb(home / ".pki/nssdb", "chromium")
    older = ensure_tls_material(tmp_path / "older-generation")
    nss.add_trusted_ca(db, trust.nickname_for(older.ca_fingerprint_sha256),
                       older.ca_cert_path)
    foreign = ensure_tls_material(tmp_path / "foreign")  # someone else's CA, other name
    nss.add_trusted_ca(db, "Some corporate root", foreign.ca_cert_path)
    assert len(_listing(db.path)) == 3

    assert trust.main("remove") == 0

    assert _listing(db.path) == {"Some corporate root": "C,,"}
    [status] = trust.trust_status()
    assert not status.trusted and status.stale == []


@pytest.mark.linux
def test_missing_certutil_says_how_to_install(home: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    for action in ("install", "status", "remove"):
        assert trust.main(action) == trust.EXIT_NO_CERTUTIL
        assert "libnss3-tools" in capsys.readouterr().err


def test_unknown_action_is_an_error(home: Path) -> None:
    assert trust.main("trust-everything") == trust.EXIT_UNSUPPORTED
