"""Snap and Flatpak browsers (agent/platform/sandboxed_browsers.py) and what the doctor
says about them and about trust (agent/doctor/trust.py).

Real snapd and flatpak cannot run here (no systemd, no system bus, no store), so these are
the Linux platform's own detections tested against fake directory trees under a tmp HOME
and a fake PATH whose `snap`, `flatpak` and `gdbus` print outputs recorded from real
machines. The NSS databases and certutil are real.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from agent import doctor
from agent.config import Config
from agent.daemon import first_run
from agent.doctor.trust import sandboxed_lines, trust_lines, trust_report
from agent.platform import sandboxed_browsers as sb
from agent.tls.material import ensure_tls_material

# `snap list` on Ubuntu 24.04 with the Firefox snap (recorded; the ✓ is in the output).
SNAP_LIST = """\
Name                       Version           Rev    Tracking         Publisher   Notes
bare                       1.0               5      latest/stable    canonical✓  base
core22                     20241001          1663   latest/stable    canonical✓  base
firefox                    133.0-1           5273   latest/stable/…  mozilla✓    -
gnome-42-2204              0+git.510a601     176    latest/stable/…  canonical✓  -
gtk-common-themes          0.1-81-g442e511   1535   latest/stable/…  canonical✓  -
snap-store                 0+git.e3dd562     1216   2/stable/…       canonical✓  -
snapd                      2.66.1            23258  latest/stable    canonical✓  snapd
"""
# `flatpak list --app --columns=application` (one ID per line, no header when piped).
FLATPAK_IDS = "com.brave.Browser\norg.chromium.Chromium\norg.gnome.Calculator\n"
# `flatpak list --app` piped: tab-separated Name, Application ID, Version, Branch, Origin.
FLATPAK_TABLE = ("Brave Browser\tcom.brave.Browser\t1.73.97\tstable\tsystem\n"
                 "Chromium Web Browser\torg.chromium.Chromium\t131.0.6778.85\tstable\tuser\n"
                 "Calculator\torg.gnome.Calculator\t47.1\tstable\tsystem\n")
# `gdbus introspect --session --dest org.freedesktop.portal.Desktop --object-path
# /org/freedesktop/portal/desktop`, cut to the interface lines that matter here.
PORTAL_INTROSPECTION = """\
node /org/freedesktop/portal/desktop {
  interface org.freedesktop.portal.FileChooser {
  };
  interface org.freedesktop.portal.OpenURI {
  };
  interface org.freedesktop.portal.WebExtensions {
    methods:
      CreateSession(in  a{sv} options,
                    out o session_handle);
    properties:
      readonly u version = 1;
  };
};
"""


def _script(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    path.chmod(0o755)


def _fake_tools(bin_dir: Path, *, portal: bool = True) -> None:
    _script(bin_dir, "snap", f'[ "$1" = list ] || exit 1\ncat <<"EOF"\n{SNAP_LIST}EOF\n')
    _script(bin_dir, "flatpak",
            'case "$*" in\n'
            f'  *--columns=application*) cat <<"EOF"\n{FLATPAK_IDS}EOF\n;;\n'
            f'  "list --app") cat <<"EOF"\n{FLATPAK_TABLE}EOF\n;;\n'
            '  *) exit 1;;\nesac\n')
    introspection = PORTAL_INTROSPECTION if portal else PORTAL_INTROSPECTION.replace(
        "WebExtensions", "Screenshot")
    _script(bin_dir, "gdbus", f'cat <<"EOF"\n{introspection}EOF\n')


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IMZA_AGENT_HOME", str(tmp_path / "agent"))
    return home


def _env(home: Path, bin_dir: Path, **extra: str) -> dict[str, str]:
    """The fake tools first, then the real PATH (certutil)."""
    return {"HOME": str(home), "PATH": f"{bin_dir}:{os.environ['PATH']}", **extra}


def _make_db(path: Path) -> Path:
    path.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "--empty-password", "-d", f"sql:{path}"], check=True)
    return path


# --- detection -----------------------------------------------------------------------------

@pytest.mark.linux
def test_snap_firefox_is_found_by_its_launcher_with_its_own_profile_folder(
        home: Path, tmp_path: Path) -> None:
    snap_bin = tmp_path / "snap-bin"
    snap_bin.mkdir()
    (snap_bin / "firefox").symlink_to("/usr/bin/snap")  # how snapd makes them
    [firefox] = sb.detect(home, env={"HOME": str(home)}, snap_bin=snap_bin,
                          system_flatpak=tmp_path / "none")
    assert (firefox.label, firefox.evidence) == ("Firefox (snap)", str(snap_bin / "firefox"))
    assert home / "snap/firefox/common/.mozilla/firefox" in firefox.nss_dirs
    assert firefox.native_messaging == "portal"


@pytest.mark.linux
def test_snap_list_and_flatpak_list_name_the_browsers_and_nothing_else(
        home: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    _fake_tools(bin_dir)
    env = _env(home, bin_dir)
    nowhere = {"snap_bin": tmp_path / "none", "system_flatpak": tmp_path / "none"}
    assert sb.detect(home, env=env, **nowhere) == []  # without the commands: no evidence
    found = {b.label: b for b in sb.detect(home, env=env, commands=True, **nowhere)}
    assert set(found) == {"Firefox (snap)", "Brave (flatpak)", "Chromium (flatpak)"}
    assert found["Firefox (snap)"].evidence == "snap list"
    assert found["Chromium (flatpak)"].nss_dirs == (
        home / ".var/app/org.chromium.Chromium/.pki/nssdb",)
    assert found["Chromium (flatpak)"].native_messaging == "none"
    assert not found["Brave (flatpak)"].store_known


def test_flatpak_table_output_is_understood_too() -> None:
    assert sb._flatpak_ids(FLATPAK_TABLE) == [
        "com.brave.Browser", "org.chromium.Chromium", "org.gnome.Calculator"]
    assert sb._snap_names(SNAP_LIST)[:3] == ["bare", "core22", "firefox"]


@pytest.mark.linux
def test_flatpak_app_folders_of_the_user_and_the_system(home: Path, tmp_path: Path) -> None:
    (home / ".local/share/flatpak/app/org.mozilla.firefox").mkdir(parents=True)
    system = tmp_path / "var-lib-flatpak"
    (system / "app/com.google.Chrome").mkdir(parents=True)
    (system / "app/org.gnome.Calculator").mkdir(parents=True)
    found = sb.detect(home, env={"HOME": str(home)}, snap_bin=tmp_path / "none",
                      system_flatpak=system)
    assert [(b.label, b.evidence) for b in found] == [
        ("Google Chrome (flatpak)", str(system / "app/com.google.Chrome")),
        ("Firefox (flatpak)", str(home / ".local/share/flatpak/app/org.mozilla.firefox"))]
    firefox = found[1]
    assert home / ".var/app/org.mozilla.firefox/.mozilla/firefox" in firefox.nss_dirs


@pytest.mark.linux
def test_a_snapd_that_does_not_answer_finds_nothing(home: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    _script(bin_dir, "snap", 'echo "error: cannot communicate with server: connection '
                             'refused" >&2\nexit 1\n')
    assert sb.detect(home, env=_env(home, bin_dir), commands=True,
                     snap_bin=tmp_path / "none", system_flatpak=tmp_path / "none") == []


@pytest.mark.posix
def test_the_webextensions_portal_probe(tmp_path: Path) -> None:
    with_portal, without = tmp_path / "with", tmp_path / "without"
    _fake_tools(with_portal)
    _fake_tools(without, portal=False)
    bus = {"DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/1000/bus"}

    def path(bin_dir: Path) -> str:
        return f"{bin_dir}:/usr/bin:/bin"

    assert sb.webextensions_portal({"PATH": path(with_portal), **bus}) is True
    assert sb.webextensions_portal({"PATH": path(without), **bus}) is False
    assert sb.webextensions_portal({"PATH": path(with_portal)}) is None  # no session bus
    failing = tmp_path / "failing"
    _script(failing, "gdbus", "echo 'Error: The name is not activatable' >&2\nexit 1\n")
    assert sb.webextensions_portal({"PATH": path(failing), **bus}) is None


# --- the doctor ----------------------------------------------------------------------------

@pytest.mark.verifiers
def test_doctor_explains_trust_and_the_snap_firefox(home: Path, tmp_path: Path) -> None:
    profile = _make_db(home / "snap/firefox/common/.mozilla/firefox/x1.default")
    bin_dir = tmp_path / "bin"
    _fake_tools(bin_dir)
    env = _env(home, bin_dir, DBUS_SESSION_BUS_ADDRESS="unix:path=/run/user/1000/bus")
    material = ensure_tls_material(tmp_path / "agent" / "tls")
    first_run.ensure_browser_trust(material, home=home)

    report = trust_report(Config(), home=home, env=env)

    assert report["fingerprint"] == material.ca_fingerprint_sha256
    assert {(r["label"], r["trusted"]) for r in report["databases"]} == {
        ("Chromium", True), ("Firefox (snap) profile default", True)}
    snap = next(r for r in report["sandboxed"] if r["label"] == "Firefox (snap)")
    assert snap["trusted"] is True and snap["databases"] == ["Firefox (snap) profile default"]
    assert report["webExtensionsPortal"] is True
    text = "\n".join(trust_lines(report) + sandboxed_lines(report))
    assert f"Firefox (snap) profile default ({profile}): trusts the agent's certificate" in text
    assert "restart the browser if it was open" in text
    assert "only through the WebExtensions portal of xdg-desktop-portal: available" in text
    # Flatpak Chromium (from `flatpak list`) never ran: no store yet, no extension path.
    assert "Chromium (flatpak) — found by flatpak list" in text
    assert "no store yet (start the browser once" in text
    assert "cannot start the agent from inside the sandbox" in text
    assert "Brave (flatpak)" in text and "wss:// does not work there" in text


@pytest.mark.linux
def test_doctor_without_certutil_says_how_and_what_pages_do_instead(
        home: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    report = trust_report(Config(), home=home, env={"HOME": str(home), "PATH": str(empty)})
    assert report["certutil"] is None
    text = "\n".join(trust_lines(report))
    assert "libnss3-tools" in text
    assert "pages there reach the agent through the browser extension" in text
    assert "Chromium: no certificate database yet" in text


@pytest.mark.verifiers
def test_doctor_json_has_the_trust_section(home: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert shutil.which("certutil"), "certutil is required: apt-get install libnss3-tools"
    material = ensure_tls_material(tmp_path / "agent" / "tls")
    first_run.ensure_browser_trust(material, home=home)
    cfg = Config.model_validate({"demo": {"enabled": "never"},
                                 "tokens": {"known_modules": False}})
    doctor.main(cfg, json_output=True)
    trust = json.loads(capsys.readouterr().out)["trust"]
    assert [(r["label"], r["trusted"]) for r in trust["databases"]] == [("Chromium", True)]
    doctor.main(cfg, json_output=False)
    assert "Browser trust" in capsys.readouterr().out
