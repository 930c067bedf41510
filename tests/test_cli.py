"""The `imza-agent` command line as a person types it (issue 12, "commands a person can
live with"): global options before or after the subcommand, the default config file in
the XDG config dir, `config path|show|edit`, and messages in the chosen language.

Every test runs the real command (`python -m agent.cli`) in a subprocess with its own
IMZA_AGENT_HOME and XDG_CONFIG_HOME; none needs a running agent."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from daemon import NO_KEYRING, REPO

from agent.config import Config, load_config

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    values = {**os.environ, "IMZA_AGENT_HOME": str(tmp_path / "home"),
              "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "PYTHON_KEYRING_BACKEND": NO_KEYRING,
              "LANG": "C.UTF-8", "LANGUAGE": "", "LC_ALL": "", "LC_MESSAGES": "",
              "PYTHONPATH": str(REPO)}  # this checkout's agent, whatever the cwd
    for name in ("VISUAL", "EDITOR"):
        values.pop(name, None)
    return values


@pytest.fixture
def cli(env: dict[str, str], tmp_path: Path) -> Cli:
    def run(*args: str, extra_env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agent.cli", *args], cwd=tmp_path,
                              env={**env, **(extra_env or {})}, capture_output=True,
                              text=True, timeout=timeout, check=False)
    return run


def default_file(env: dict[str, str]) -> Path:
    return Path(env["XDG_CONFIG_HOME"]) / "imza-agent" / "config.toml"


# --- global options before or after the subcommand ------------------------------------------

# Commands that read the configuration: each must refuse the same invalid file, wherever
# --config stands.
CONFIG_COMMANDS = [["run", "--headless"], ["doctor"], ["journal", "verify"],
                   ["demo", "--no-browser", "--port", "1"], ["trust", "status"],
                   ["config", "show"]]


@pytest.mark.linux
@pytest.mark.parametrize("command", CONFIG_COMMANDS, ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize("position", ["before", "after"])
def test_config_is_taken_before_or_after_the_subcommand(cli: Cli, tmp_path: Path,
                                                        command: list[str],
                                                        position: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nno_such_key = 1\n", encoding="utf-8")
    args = (["--config", str(bad), *command] if position == "before"
            else [*command, "--config", str(bad)])
    result = cli(*args)
    assert result.returncode == 2, result.stderr
    assert f"{bad} is not valid" in result.stderr
    assert "server.no_such_key" in result.stderr
    assert "Traceback" not in result.stderr


# The Russian "is not running" / "nothing to stop" lines: --language wherever it stands.
LANGUAGE_COMMANDS = {("status",): "imza-agent не запущен",
                     ("stop",): "imza-agent не был запущен; останавливать нечего"}


@pytest.mark.linux
@pytest.mark.parametrize("command", sorted(LANGUAGE_COMMANDS), ids=lambda c: c[0])
@pytest.mark.parametrize("position", ["before", "after"])
def test_language_is_taken_before_or_after_the_subcommand(cli: Cli, command: tuple[str, ...],
                                                          position: str) -> None:
    args = (["--language", "ru", *command] if position == "before"
            else [*command, "--language", "ru"])
    result = cli(*args)
    assert LANGUAGE_COMMANDS[command] in result.stdout, result.stdout + result.stderr


@pytest.mark.linux
def test_an_option_after_the_subcommand_wins_over_one_before(cli: Cli, tmp_path: Path) -> None:
    first, second = tmp_path / "first.toml", tmp_path / "second.toml"
    first.write_text("[ui]\ndialog_timeout = 11\n", encoding="utf-8")
    second.write_text("[ui]\ndialog_timeout = 22\n", encoding="utf-8")
    result = cli("--config", str(first), "config", "show", "--config", str(second))
    assert result.returncode == 0, result.stderr
    assert tomllib.loads(result.stdout)["ui"]["dialog_timeout"] == 22
    only_before = cli("--config", str(first), "config", "show")
    assert tomllib.loads(only_before.stdout)["ui"]["dialog_timeout"] == 11


@pytest.mark.linux
def test_native_host_install_takes_config_after_the_subcommand(cli: Cli, tmp_path: Path,
                                                               env: dict[str, str]) -> None:
    config = tmp_path / "agent.toml"
    config.write_text("", encoding="utf-8")
    target = tmp_path / "hosts"
    result = cli("native-host", "install", "--target-dir", str(target), "--config", str(config))
    assert result.returncode == 0, result.stderr
    launcher = Path(env["IMZA_AGENT_HOME"]) / "native-host.sh"
    assert f"--config {config}" in launcher.read_text(encoding="utf-8").replace("'", "")


# --- the default config file -----------------------------------------------------------------

@pytest.mark.linux
def test_the_default_config_file_is_read_without_config(cli: Cli, env: dict[str, str]) -> None:
    path = default_file(env)
    path.parent.mkdir(parents=True)
    path.write_text("[ui]\ndialog_timeout = 33\nlanguage = \"az\"\n", encoding="utf-8")
    shown = cli("config", "show")
    assert shown.returncode == 0, shown.stderr
    assert tomllib.loads(shown.stdout)["ui"]["dialog_timeout"] == 33
    assert str(path) in shown.stdout  # the header says where the settings come from
    # ...and its [ui] language is the language of messages.
    assert cli("status").stdout.strip() == "imza-agent işləmir"
    # An invalid default file is reported like a given one.
    path.write_text("[ui]\ndialog_timeout = -1\n", encoding="utf-8")
    doctor = cli("doctor")
    assert doctor.returncode == 2
    assert f"{path} is not valid" in doctor.stderr


@pytest.mark.linux
def test_no_default_file_means_the_built_in_defaults(cli: Cli, env: dict[str, str]) -> None:
    shown = cli("config", "show")
    assert shown.returncode == 0, shown.stderr
    data = tomllib.loads(shown.stdout)
    assert Config.model_validate(data) == Config()
    assert not default_file(env).exists()  # show never creates it


# --- config path / show / edit ----------------------------------------------------------------

@pytest.mark.linux
def test_config_path_names_the_default_file_and_says_it_is_missing(cli: Cli,
                                                                   env: dict[str, str]) -> None:
    result = cli("config", "path")
    assert result.returncode == 0
    assert result.stdout == f"{default_file(env)}\n"
    assert "not created yet" in result.stderr
    given = cli("config", "path", "--config", "rel/agent.toml")
    assert given.stdout.strip().endswith("/rel/agent.toml")
    assert Path(given.stdout.strip()).is_absolute()


@pytest.mark.linux
def test_config_show_prints_every_key_and_reads_back(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        "[server]\ndev_origins = [\"http://localhost:8000\"]\n"
        "[formats]\nhttp_proxy = \"http://alice:s3cret-pw@proxy.example:3128\"\n"
        "tsa_by_origin = {\"https://portal.example\" = \"https://tsa.example/tsr\"}\n"
        "[[tokens.pkcs12]]\npath = \"seal.p12\"\nlabel = \"Seal\"\n", encoding="utf-8")
    result = cli("--config", str(config), "config", "show")
    assert result.returncode == 0, result.stderr
    assert "s3cret-pw" not in result.stdout
    assert "http_proxy = \"http://***@proxy.example:3128\"" in result.stdout
    shown = tomllib.loads(result.stdout)
    for section, model in Config.model_fields.items():
        annotation = model.annotation
        assert annotation is not None
        for key, field in annotation.model_fields.items():
            default = field.get_default(call_default_factory=True, validated_data={})
            assert key in shown[section] or default is None or (
                f"# {key} = (unset)" in result.stdout), f"[{section}] {key} not shown"
    assert shown["tokens"]["pkcs12"] == [{"path": str(tmp_path / "seal.p12"), "label": "Seal"}]
    shown["formats"]["http_proxy"] = "http://alice:s3cret-pw@proxy.example:3128"
    assert Config.model_validate(shown) == load_config(config)


def write_editor(tmp_path: Path, body: str) -> Path:
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    editor.chmod(0o755)
    return editor


@pytest.mark.linux
def test_config_edit_creates_a_template_and_checks_the_result(cli: Cli, tmp_path: Path,
                                                              env: dict[str, str]) -> None:
    # The "editor" sets one key the way a person would: uncommenting its line.
    editor = write_editor(
        tmp_path, "sed -i 's/^# dialog_timeout = .*/dialog_timeout = 45.0/' \"$1\"\n")
    result = cli("config", "edit", extra_env={"EDITOR": str(editor)})
    assert result.returncode == 0, result.stderr
    path = default_file(env)
    assert "created" in result.stdout and "is valid" in result.stdout
    text = path.read_text(encoding="utf-8")
    assert "# Dialog language; auto follows the OS locale." in text  # the template's help
    assert tomllib.loads(text)["ui"] == {"dialog_timeout": 45.0}
    assert tomllib.loads(cli("config", "show").stdout)["ui"]["dialog_timeout"] == 45.0


@pytest.mark.linux
def test_config_edit_says_what_is_wrong(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text("", encoding="utf-8")
    editor = write_editor(tmp_path, "printf '[ui]\\nmax_pin_attempts = 0\\n' > \"$1\"\n")
    result = cli("config", "edit", "--config", str(config), extra_env={"VISUAL": str(editor)})
    assert result.returncode == 1
    assert "ui.max_pin_attempts" in result.stderr
    assert "imza-agent config edit" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.linux
def test_config_edit_without_any_editor_says_so(cli: Cli, tmp_path: Path) -> None:
    result = cli("config", "edit", "--config", str(tmp_path / "a.toml"),
                 extra_env={"PATH": str(tmp_path / "empty")})
    assert result.returncode == 1
    assert "no editor found" in result.stderr


# --- help in the chosen language ----------------------------------------------------------------

@pytest.mark.linux
def test_help_follows_the_language(cli: Cli) -> None:
    english = cli("--help").stdout
    russian = cli("--help", "--language", "ru").stdout
    assert "stop the running agent" in english
    assert "stop the running agent" not in russian
    assert "остановить работающий агент" in russian


@pytest.mark.linux
def test_no_traceback_when_the_reader_goes_away(env: dict[str, str], tmp_path: Path) -> None:
    shown = subprocess.run(f"{sys.executable} -m agent.cli config show | head -n 1",
                           shell=True, cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=60, check=False)
    assert shown.stdout.startswith("# ")
    assert "Traceback" not in shown.stderr


@pytest.mark.linux
def test_a_configuration_error_speaks_the_language(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[ui]\nmax_pin_attempts = 0\n", encoding="utf-8")
    result = cli("doctor", "--config", str(bad), "--language", "ru")
    assert result.returncode == 2
    assert f"{bad} некорректен:" in result.stderr
    assert "ui.max_pin_attempts" in result.stderr
    missing = cli("config", "show", "--config", str(tmp_path / "none.toml"), "--language", "az")
    assert f"{tmp_path / 'none.toml'} oxuna bilmir" in missing.stderr
