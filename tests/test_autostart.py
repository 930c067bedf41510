"""Start at login (XDG autostart): the package's system-wide entry is on by default, and
the tray's toggle and `imza-agent autostart on|off|status` turn it off and on again for
one user, the way a session manager reads it (the user's file wins, Hidden=true hides).

Each test has its own $XDG_CONFIG_HOME and a fake /etc/xdg in $XDG_CONFIG_DIRS holding
the very entry the .deb installs (installer/linux/imza-agent-autostart.desktop).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import i18n
from agent.i18n import catalog
from agent.platform import autostart
from agent.ui import tray_model

REPO = Path(__file__).resolve().parent.parent
PACKAGED_ENTRY = REPO / "installer" / "linux" / "imza-agent-autostart.desktop"


class Desktop:
    """A user's XDG directories, also set in os.environ (the tray and the CLI read
    that); PATH (for finding imza-agent) only in ``env``."""

    def __init__(self, root: Path) -> None:
        self.home = root / "home"
        self.config_home = self.home / ".config"
        self.etc_xdg = root / "etc" / "xdg"
        self.bin = root / "empty bin"
        self.bin.mkdir(parents=True)
        self.env = {"HOME": str(self.home), "XDG_CONFIG_HOME": str(self.config_home),
                    # a relative entry is ignored; an empty directory is passed over
                    "XDG_CONFIG_DIRS": f"relative/xdg:{root / 'nothing'}:{self.etc_xdg}",
                    "PATH": str(self.bin)}
        self.user_file = self.config_home / "autostart" / "imza-agent.desktop"
        self.system_file = self.etc_xdg / "autostart" / "imza-agent.desktop"

    def install_package_entry(self) -> None:
        self.system_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PACKAGED_ENTRY, self.system_file)


@pytest.fixture
def desktop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Desktop:
    d = Desktop(tmp_path)
    for key, value in d.env.items():
        if key != "PATH":  # the tests' own tools (gio) stay findable
            monkeypatch.setenv(key, value)
    return d


@pytest.fixture
def english() -> Iterator[None]:
    i18n.set_language("en")
    yield
    i18n.set_language("en")


@pytest.mark.linux
def test_the_package_entry_starts_the_agent_when_the_user_has_no_file(desktop: Desktop) -> None:
    assert autostart.status(desktop.env) == autostart.Status(False, None, None)
    desktop.install_package_entry()
    assert autostart.status(desktop.env) == autostart.Status(True, desktop.system_file,
                                                             "system")
    assert autostart.enabled(desktop.env)


@pytest.mark.linux
def test_off_with_a_system_entry_writes_a_hidden_override_and_on_removes_it(
        desktop: Desktop) -> None:
    desktop.install_package_entry()
    packaged = desktop.system_file.read_bytes()

    now = autostart.set_enabled(False, desktop.env)
    assert now == autostart.Status(False, desktop.user_file, "user")
    override = autostart.read_entry(desktop.user_file)
    system = autostart.read_entry(desktop.system_file)
    assert override["Hidden"] == "true"
    assert (override["Name"], override["Exec"], override["Type"]) == (
        system["Name"], system["Exec"], system["Type"])
    assert desktop.system_file.read_bytes() == packaged  # the package's file is untouched
    assert not autostart.enabled(desktop.env)
    assert autostart.set_enabled(False, desktop.env).enabled is False  # idempotent

    now = autostart.set_enabled(True, desktop.env)
    assert not desktop.user_file.exists()
    assert now == autostart.Status(True, desktop.system_file, "system")
    assert autostart.set_enabled(True, desktop.env) == now  # idempotent


@pytest.mark.linux
def test_without_a_system_entry_on_writes_a_user_entry_that_runs_this_agent(
        desktop: Desktop, tmp_path: Path) -> None:
    now = autostart.set_enabled(True, desktop.env)
    assert now == autostart.Status(True, desktop.user_file, "user")
    argv = shlex.split(autostart.read_entry(desktop.user_file)["Exec"])
    # No imza-agent on PATH: this interpreter runs the package (a venv or source install).
    assert argv == [sys.executable, "-m", "agent.cli", "run"]
    # The command works from anywhere a session starts it, not only inside the checkout.
    version = subprocess.run([*argv[:-1], "--version"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=60, env={**os.environ, "PYTHONPATH": ""})
    assert version.returncode == 0 and version.stdout.startswith("imza-agent "), version

    autostart.set_enabled(False, desktop.env)
    assert autostart.read_entry(desktop.user_file)["Hidden"] == "true"
    assert autostart.status(desktop.env) == autostart.Status(False, desktop.user_file, "user")
    assert autostart.set_enabled(True, desktop.env).enabled  # overwrites the hidden file
    assert "Hidden" not in autostart.read_entry(desktop.user_file)


@pytest.mark.linux
def test_the_imza_agent_on_path_is_launched_by_a_real_desktop_entry_launcher(
        desktop: Desktop, tmp_path: Path) -> None:
    gio = shutil.which("gio")
    assert gio, "gio (libglib2.0-bin) launches desktop entries the way sessions do"
    # Every character the Exec quoting escapes (GLib, like most launchers, takes no "%" in
    # the program's own path; test_exec_lines_are_quoted... covers "%" in arguments).
    odd = tmp_path / "my $bin's \"dir\" \\ `here`"
    odd.mkdir()
    script = odd / "imza-agent"
    argv_file = tmp_path / "argv"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$0\" \"$@\" > '{argv_file}'\n")
    script.chmod(0o755)
    env = {**desktop.env, "PATH": f"{desktop.bin}:{odd}"}

    autostart.set_enabled(True, env)
    launched = subprocess.run([gio, "launch", str(desktop.user_file)], timeout=60,
                              capture_output=True, text=True)
    assert launched.returncode == 0, launched.stderr
    for _ in range(600):  # gio returns once spawned; the script writes soon after
        if argv_file.exists() and argv_file.read_text().endswith("\n"):
            break
        time.sleep(0.05)
    assert argv_file.read_text().splitlines() == [str(script), "run"]


@pytest.mark.linux
@pytest.mark.parametrize("disabled", ["X-GNOME-Autostart-enabled=false", "Hidden=true"])
def test_a_user_file_switched_off_by_a_desktop_tool_is_off(desktop: Desktop,
                                                           disabled: str) -> None:
    desktop.install_package_entry()
    desktop.user_file.parent.mkdir(parents=True)
    text = f"[Desktop Entry]\nType=Application\nName=imza-agent\nExec=imza-agent run\n{disabled}\n"
    desktop.user_file.write_text(text)
    assert autostart.status(desktop.env) == autostart.Status(False, desktop.user_file, "user")
    autostart.set_enabled(False, desktop.env)
    assert desktop.user_file.read_text() == text  # the tool's own file is kept as it is
    assert autostart.set_enabled(True, desktop.env) == autostart.Status(
        True, desktop.system_file, "system")


@pytest.mark.linux
def test_a_user_file_without_a_system_entry_switched_off_is_off(desktop: Desktop) -> None:
    desktop.user_file.parent.mkdir(parents=True)
    desktop.user_file.write_text("[Desktop Entry]\nType=Application\nName=imza-agent\n"
                                 "Exec=imza-agent run\nX-GNOME-Autostart-enabled=false\n")
    assert not autostart.enabled(desktop.env)
    assert autostart.set_enabled(True, desktop.env) == autostart.Status(
        True, desktop.user_file, "user")


@pytest.mark.linux
def test_the_first_config_dir_with_an_entry_decides(desktop: Desktop, tmp_path: Path) -> None:
    desktop.install_package_entry()
    first = tmp_path / "first" / "autostart" / "imza-agent.desktop"
    first.parent.mkdir(parents=True)
    first.write_text("[Desktop Entry]\nName=imza-agent\nExec=imza-agent run\n"
                     "X-GNOME-Autostart-enabled=false\n")
    env = {**desktop.env, "XDG_CONFIG_DIRS": f"{tmp_path / 'first'}:{desktop.etc_xdg}"}
    assert autostart.status(env) == autostart.Status(False, first, "system")
    # An administrator's disabled entry: "on" needs the user's own entry.
    assert autostart.set_enabled(True, env) == autostart.Status(True, desktop.user_file, "user")


@pytest.mark.linux
def test_the_xdg_defaults() -> None:
    env = {"HOME": "/home/someone", "XDG_CONFIG_HOME": "", "XDG_CONFIG_DIRS": ""}
    assert autostart.user_file(env) == Path("/home/someone/.config/autostart/imza-agent.desktop")
    assert autostart.system_files(env) == [Path("/etc/xdg/autostart/imza-agent.desktop")]
    relative = {"HOME": "/home/someone", "XDG_CONFIG_HOME": "conf"}
    assert autostart.user_file(relative).parent == Path("/home/someone/.config/autostart")


def test_only_the_desktop_entry_group_counts(tmp_path: Path) -> None:
    path = tmp_path / "e.desktop"
    path.write_text("# Hidden=true\n[Desktop Entry]\nName = imza-agent\nExec=a=b run\n"
                    "[Desktop Action x]\nHidden=true\n")
    assert autostart.read_entry(path) == {"Name": "imza-agent", "Exec": "a=b run"}
    assert autostart.starts(path)
    # A key set twice: the last value counts, as GLib (gio, GNOME, Xfce) reads it.
    path.write_text("[Desktop Entry]\nX-GNOME-Autostart-enabled=true\n"
                    "X-GNOME-Autostart-enabled=false\n")
    assert not autostart.starts(path)


@pytest.mark.parametrize(("argv", "line"), [
    (["/usr/bin/imza-agent", "run"], "/usr/bin/imza-agent run"),
    (["/opt/my env/bin/python", "-m", "agent.cli", "run"],
     '"/opt/my env/bin/python" -m agent.cli run'),
    (['/a"b$c`d\\e', "100%"], '"/a\\\\"b\\\\$c\\\\`d\\\\\\\\e" 100%%'),
])
def test_exec_lines_are_quoted_as_the_desktop_entry_spec_says(argv: list[str],
                                                              line: str) -> None:
    assert autostart.exec_line(argv) == line


# --- the tray's toggle -------------------------------------------------------------------

async def _toggle(on: bool) -> None:
    """The entry's click, as the UI process sends it and the daemon carries it out."""
    await tray_model.run_action(None, "autostart", {"on": on})


@pytest.mark.linux
async def test_the_tray_toggle_turns_the_packaged_entry_off_and_on(desktop: Desktop) -> None:
    desktop.install_package_entry()
    # The package's entry is on by default; the tray's facts show autostart.enabled().
    assert autostart.enabled()
    await _toggle(False)
    assert autostart.read_entry(desktop.user_file)["Hidden"] == "true"
    assert not autostart.enabled()
    await _toggle(True)
    assert not desktop.user_file.exists()
    assert autostart.enabled()
    with pytest.raises(tray_model.ActionError):
        await tray_model.run_action(None, "autostart", {"on": "yes"})


# --- imza-agent autostart on|off|status [--json] -------------------------------------------

OFF_LINES = {
    "en": "Start at login: off ({file} turns it off)",
    "az": "Sistemə girişdə başlatma: bağlı ({file} tərəfindən söndürülüb)",
    "tr": "Oturum açılınca başlatma: kapalı ({file} tarafından kapatıldı)",
    "ru": "Запуск при входе в систему: выключен (его отключает {file})",
}
ON_LINES = {
    "en": "Start at login: on ({file})",
    "az": "Sistemə girişdə başlatma: açıq ({file})",
    "tr": "Oturum açılınca başlatma: açık ({file})",
    "ru": "Запуск при входе в систему: включён ({file})",
}


@pytest.mark.linux
@pytest.mark.parametrize("language", sorted(OFF_LINES))
def test_the_cli_speaks_the_dialog_language(desktop: Desktop, language: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    desktop.install_package_entry()
    i18n.set_language(language)
    try:
        assert autostart.main(["off"]) == 0
        assert capsys.readouterr().out == OFF_LINES[language].format(
            file=desktop.user_file) + "\n"
        assert autostart.main(["status"]) == 0
        assert capsys.readouterr().out == OFF_LINES[language].format(
            file=desktop.user_file) + "\n"
        assert autostart.main(["on"]) == 0
        assert capsys.readouterr().out == ON_LINES[language].format(
            file=desktop.system_file) + "\n"
    finally:
        i18n.set_language("en")


@pytest.mark.linux
def test_the_cli_status_as_json(desktop: Desktop, capsys: pytest.CaptureFixture[str]) -> None:
    assert autostart.main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"enabled": False, "file": None,
                                                   "scope": None}
    desktop.install_package_entry()
    assert autostart.main(["off", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "enabled": False, "file": str(desktop.user_file), "scope": "user"}
    assert autostart.main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["enabled"] is False
    assert autostart.main(["on", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "enabled": True, "file": str(desktop.system_file), "scope": "system"}


@pytest.mark.linux
def test_the_cli_refuses_an_unknown_action(desktop: Desktop,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert autostart.main(["maybe"]) == 2
    assert "on, off, status" in capsys.readouterr().err.replace("'", "")
    assert not desktop.user_file.exists()


@pytest.mark.linux
def test_a_config_dir_that_cannot_be_written_is_reported_without_a_traceback(
        desktop: Desktop, tmp_path: Path, english: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    desktop.install_package_entry()
    blocker = tmp_path / "a file"
    blocker.write_text("")
    env = {**desktop.env, "XDG_CONFIG_HOME": str(blocker / "config")}
    assert autostart.main(["off"], env) == 1
    err = capsys.readouterr().err
    assert err.startswith("Cannot change start at login: ") and "Traceback" not in err
    assert autostart.status(env) == autostart.Status(True, desktop.system_file, "system")


def test_every_autostart_message_is_translated() -> None:
    source = Path(autostart.__file__)
    messages = catalog.marked_messages([source])
    assert len(messages) == 4
    assert [p for lang in i18n.LANGUAGES for p in catalog.problems(lang, messages)] == []


@pytest.mark.linux
def test_the_imza_agent_command_turns_start_at_login_off_and_on(desktop: Desktop,
                                                                tmp_path: Path) -> None:
    """The real command, global options after the subcommand (agent/cli.py registers
    `autostart`)."""
    desktop.install_package_entry()
    env = {**os.environ, **{k: v for k, v in desktop.env.items() if k != "PATH"},
           "IMZA_AGENT_HOME": str(tmp_path / "agent-home")}

    def imza_agent(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agent.cli", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)

    off = imza_agent("autostart", "off", "--language", "ru")
    assert off.returncode == 0, off.stderr
    assert off.stdout == OFF_LINES["ru"].format(file=desktop.user_file) + "\n"
    status = imza_agent("autostart", "status", "--json")
    assert json.loads(status.stdout) == {"enabled": False, "file": str(desktop.user_file),
                                         "scope": "user"}
    on = imza_agent("--language", "az", "autostart", "on")
    assert on.stdout == ON_LINES["az"].format(file=desktop.system_file) + "\n"
    assert not desktop.user_file.exists()
    assert imza_agent("autostart", "maybe").returncode == 2
