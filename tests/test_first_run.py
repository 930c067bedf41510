"""The agent's start installs its CA into the user's browsers (agent/daemon/first_run.py):
real NSS databases made by the real certutil, in a fresh HOME under tmp_path.

The daemon tests at the end start the real `imza-agent run` twice; they need the hook in
agent/daemon/runtime.py that calls ``ensure_browser_trust`` before the transports listen.
"""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
from pathlib import Path

import pytest
from daemon import Daemon

from agent.daemon import first_run
from agent.tls import trust, trust_state
from agent.tls.material import TlsMaterial, ensure_tls_material

pytestmark = [pytest.mark.verifiers]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("IMZA_AGENT_HOME", str(tmp_path / "agent"))
    return home


@pytest.fixture
def material(tmp_path: Path, home: Path) -> TlsMaterial:
    return ensure_tls_material(tmp_path / "agent" / "tls")


def _make_db(path: Path) -> Path:
    path.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "--empty-password", "-d", f"sql:{path}"], check=True)
    return path


def _firefox_profile(root: Path, folder: str, name: str) -> Path:
    """A profile as Firefox makes it: its folder with a cert9.db, listed in profiles.ini."""
    db = _make_db(root / folder)
    ini = root / "profiles.ini"
    sections = ini.read_text() if ini.exists() else ""
    index = sections.count("[Profile")
    ini.write_text(sections + f"[Profile{index}]\nName={name}\nIsRelative=1\nPath={folder}\n\n")
    return db


def _listing(db: Path) -> dict[str, str]:
    out = subprocess.run(["certutil", "-L", "-d", f"sql:{db}"], check=True,
                         capture_output=True, text=True).stdout
    rows = [line.rsplit(None, 1) for line in out.splitlines()[4:] if line.strip()]
    return {nick.strip(): flags for nick, flags in rows}


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "imza_agent.first_run"]


def test_first_start_trusts_chromium_and_every_firefox_profile_and_says_so_once(
        home: Path, material: TlsMaterial, caplog: pytest.LogCaptureFixture) -> None:
    esr = _firefox_profile(home / ".mozilla/firefox", "k2v9.default-esr", "default-esr")
    # Firefox 147+ (Debian's firefox-esr 153 here) makes new profiles in ~/.config.
    xdg = _firefox_profile(home / ".config/mozilla/firefox", "14wg.default-esr", "work")
    snap = _firefox_profile(home / "snap/firefox/common/.mozilla/firefox", "s1.default",
                            "default")
    assert not (home / ".pki").exists()  # Chromium creates it lazily: the agent must

    with caplog.at_level(logging.INFO, logger="imza_agent"):
        outcome = first_run.ensure_browser_trust(material, home=home)

    nickname = trust.nickname_for(material.ca_fingerprint_sha256)
    for db in (home / ".pki/nssdb", esr, xdg, snap):
        assert _listing(db) == {nickname: "C,,"}, db
    assert sorted(outcome.installed) == ["Chromium", "Firefox (snap) profile default",
                                         "Firefox profile default-esr", "Firefox profile work"]
    [line] = _lines(caplog)
    assert line.startswith("your browsers now trust the agent's local certificate (")
    assert "Firefox profile default-esr" in line and "Chromium" in line
    assert "restart the browser if it was open" in line


def test_a_start_with_everything_trusted_runs_nothing_and_says_nothing(
        home: Path, material: TlsMaterial, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    _firefox_profile(home / ".mozilla/firefox", "a.default-esr", "default-esr")
    first_run.ensure_browser_trust(material, home=home)
    # No certutil on PATH now: had the second start called it, it would say so.
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with caplog.at_level(logging.INFO, logger="imza_agent"):
        outcome = first_run.ensure_browser_trust(material, home=home)
    assert not outcome.looked and outcome.unavailable is None
    assert _lines(caplog) == []


def test_a_profile_created_after_the_first_start_is_trusted_at_the_next(
        home: Path, material: TlsMaterial, caplog: pytest.LogCaptureFixture) -> None:
    root = home / ".mozilla/firefox"
    old = _firefox_profile(root, "a.default-esr", "default-esr")
    first_run.ensure_browser_trust(material, home=home)
    late = _firefox_profile(root, "b.later", "later")
    assert _listing(late) == {}

    with caplog.at_level(logging.INFO, logger="imza_agent"):
        outcome = first_run.ensure_browser_trust(material, home=home)

    nickname = trust.nickname_for(material.ca_fingerprint_sha256)
    assert _listing(late) == {nickname: "C,,"}
    assert _listing(old) == {nickname: "C,,"}
    assert outcome.installed == ["Firefox profile later"]
    assert [line.count("Firefox profile later") for line in _lines(caplog)] == [1]


def test_a_certificate_the_user_deleted_by_hand_comes_back(home: Path,
                                                          material: TlsMaterial) -> None:
    first_run.ensure_browser_trust(material, home=home)
    nickname = trust.nickname_for(material.ca_fingerprint_sha256)
    subprocess.run(["certutil", "-D", "-n", nickname, "-d", f"sql:{home / '.pki/nssdb'}"],
                   check=True)
    outcome = first_run.ensure_browser_trust(material, home=home)
    assert outcome.installed == ["Chromium"]
    assert _listing(home / ".pki/nssdb") == {nickname: "C,,"}


def test_trust_remove_is_respected_until_trust_install(home: Path, tmp_path: Path,
                                                       material: TlsMaterial) -> None:
    first_run.ensure_browser_trust(material, home=home)
    assert trust.main("remove") == 0
    outcome = first_run.ensure_browser_trust(material, home=home)
    assert outcome.opted_out and outcome.installed == []
    assert _listing(home / ".pki/nssdb") == {}
    assert trust.main("install") == 0
    assert trust_state.load(tmp_path / "agent" / "tls").opted_out is False
    assert not first_run.ensure_browser_trust(material, home=home).opted_out


def test_renewal_replaces_our_previous_generation_and_leaves_another_agents(
        home: Path, tmp_path: Path, material: TlsMaterial) -> None:
    first_run.ensure_browser_trust(material, home=home)
    db = home / ".pki/nssdb"
    other = ensure_tls_material(tmp_path / "another-agent")  # e.g. a development checkout
    other_nick = trust.nickname_for(other.ca_fingerprint_sha256)
    subprocess.run(["certutil", "-A", "-n", other_nick, "-t", "C,,", "-i",
                    str(other.ca_cert_path), "-d", f"sql:{db}"], check=True)

    renewed = ensure_tls_material(material.ca_cert_path.parent,
                                  now=material.not_after - dt.timedelta(days=5))
    assert renewed.renewed
    outcome = first_run.ensure_browser_trust(renewed, home=home)

    assert outcome.installed == ["Chromium"]
    assert _listing(db) == {trust.nickname_for(renewed.ca_fingerprint_sha256): "C,,",
                            other_nick: "C,,"}


def test_without_certutil_the_agent_says_what_to_do(
        home: Path, material: TlsMaterial, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with caplog.at_level(logging.INFO, logger="imza_agent"):
        outcome = first_run.ensure_browser_trust(material, home=home)
    assert outcome.unavailable is not None
    [line] = _lines(caplog)
    assert "certutil is missing (install libnss3-tools)" in line
    assert "browser extension" in line
    assert [r.levelname for r in caplog.records if r.name == "imza_agent.first_run"] == [
        "WARNING"]


def test_a_profile_with_a_primary_password_is_named_and_the_rest_still_trusted(
        home: Path, tmp_path: Path, material: TlsMaterial,
        caplog: pytest.LogCaptureFixture) -> None:
    locked = home / ".mozilla/firefox/p4ss.default-esr"
    locked.mkdir(parents=True)
    password = tmp_path / "password.txt"
    password.write_text("a primary password\n")
    subprocess.run(["certutil", "-N", "-f", str(password), "-d", f"sql:{locked}"], check=True)
    with caplog.at_level(logging.INFO, logger="imza_agent"):
        outcome = first_run.ensure_browser_trust(material, home=home)
    assert outcome.installed == ["Chromium"]
    assert list(outcome.failed) == ["Firefox profile default-esr"]
    assert "SEC_ERROR_BAD_PASSWORD" in outcome.failed["Firefox profile default-esr"]
    [line] = _lines(caplog)
    assert line.startswith("your browsers now trust the agent's local certificate (Chromium)")
    assert "could not install the agent's local certificate in Firefox profile default-esr" \
        in line


def test_a_home_where_nothing_can_be_created_does_not_stop_the_start(
        tmp_path: Path, material: TlsMaterial, caplog: pytest.LogCaptureFixture) -> None:
    not_a_dir = tmp_path / "home-is-a-file"  # (tests run as root: modes would not stop it)
    not_a_dir.write_text("")
    with caplog.at_level(logging.INFO, logger="imza_agent"):
        outcome = first_run.ensure_browser_trust(material, home=not_a_dir)
    assert list(outcome.failed) == ["Chromium"] and outcome.installed == []
    [line] = _lines(caplog)
    assert line.startswith("could not install the agent's local certificate in Chromium: ")
    assert "browser extension" in line


def test_sandboxed_browsers_the_agent_cannot_reach_are_named(
        home: Path, material: TlsMaterial, caplog: pytest.LogCaptureFixture) -> None:
    apps = home / ".local/share/flatpak/app"
    (apps / "com.brave.Browser").mkdir(parents=True)  # store not known to the agent
    (apps / "org.mozilla.firefox").mkdir()  # installed, never started: no profile yet
    (apps / "org.chromium.Chromium").mkdir()
    (home / ".var/app/org.chromium.Chromium").mkdir(parents=True)  # has run once

    with caplog.at_level(logging.INFO, logger="imza_agent"):
        outcome = first_run.ensure_browser_trust(material, home=home)

    assert set(outcome.unreachable) == {"Brave (flatpak)", "Firefox (flatpak)"}
    # the flatpak Chromium's store is created in its own home, as for the main one
    assert "Chromium (flatpak)" in outcome.installed
    assert _listing(home / ".var/app/org.chromium.Chromium/.pki/nssdb") == {
        trust.nickname_for(material.ca_fingerprint_sha256): "C,,"}
    [line] = _lines(caplog)
    assert "Brave (flatpak) keeps its certificates where the agent cannot add its own" in line
    assert "Firefox (flatpak) has no certificate store yet" in line
    assert "pages there cannot reach the agent over wss://" in line


def _user_env(user_home: Path) -> dict[str, str]:
    """The person's environment: their HOME, and XDG dirs inside it (never the runner's)."""
    return {"HOME": str(user_home), "XDG_CONFIG_HOME": str(user_home / ".config"),
            "XDG_DATA_HOME": str(user_home / ".local/share")}


# --- the real daemon ------------------------------------------------------------------------

@pytest.mark.daemon
def test_the_daemon_trusts_a_fresh_home_at_start_and_a_new_profile_at_restart(
        tmp_path: Path) -> None:
    user_home = tmp_path / "user"
    user_home.mkdir()
    agent = Daemon(home=tmp_path / "agent", modules=[], env=_user_env(user_home))
    agent.start()
    agent.stop()
    fingerprint = trust_state.load(agent.home / "tls").fingerprint
    assert fingerprint is not None, agent.log_text()[-2000:]
    nickname = trust.nickname_for(fingerprint)
    assert _listing(user_home / ".pki/nssdb") == {nickname: "C,,"}
    assert agent.log_text().count("your browsers now trust the agent's local certificate") == 1

    late = _firefox_profile(user_home / ".config/mozilla/firefox", "n3w.default-esr",
                            "default-esr")
    agent.start()
    agent.stop()
    assert _listing(late) == {nickname: "C,,"}
    log = agent.log_text()
    assert log.count("your browsers now trust the agent's local certificate") == 2
    assert "(Firefox profile default-esr)" in log

    agent.start()  # nothing changed: nothing to say
    agent.stop()
    assert agent.log_text().count("your browsers now trust") == 2
