"""`imza-agent status` and `imza-agent stop` against a real agent (tests/daemon.py), in
English, Azerbaijani and Russian; and `stop` when none runs or when the recorded pid is not
an agent's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon import NO_KEYRING, REPO, Daemon

pytestmark = pytest.mark.daemon


def cli(home: Path, *args: str, xdg: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMZA_AGENT_HOME": str(home), "PYTHON_KEYRING_BACKEND": NO_KEYRING,
           "XDG_CONFIG_HOME": str(xdg or home.parent / "xdg"), "LANG": "C.UTF-8",
           "LANGUAGE": "", "LC_ALL": ""}
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def agent() -> Iterator[Daemon]:
    with tempfile.TemporaryDirectory(prefix="imza-status-") as tmp:
        daemon = Daemon(home=Path(tmp) / "home", modules=[], env={},
                        config={"ui": {"language": "en"}}).start()
        try:
            yield daemon
        finally:
            daemon.stop()



def test_status_names_pid_config_ports_and_uptime(agent: Daemon) -> None:
    assert agent.process is not None
    result = cli(agent.home, "status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"imza-agent is running (pid {agent.process.pid}, version ")
    assert f"config: {agent.config_file}" in result.stdout
    assert f"ws://127.0.0.1:{agent.ports['ws']}/v1" in result.stdout
    assert f"browser extension ({agent.home / 'agent.sock'})" in result.stdout
    assert "running for " in result.stdout

    data = json.loads(cli(agent.home, "status", "--json").stdout)
    assert data["running"] is True
    assert data["pid"] == agent.process.pid
    assert data["config"] == str(agent.config_file)
    assert data["language"] == "en"
    assert data["transports"]["ws"] == f"ws://127.0.0.1:{agent.ports['ws']}/v1"
    assert data["unavailable"] == {}
    assert data["uptime_seconds"] >= 0
    assert data["changed_sections"] == []


def test_status_says_which_settings_changed_since_the_start(agent: Daemon) -> None:
    path = agent.config_file
    path.write_text(path.read_text(encoding="utf-8") + "\n[journal]\nkeep_files = 9\n",
                    encoding="utf-8")
    result = cli(agent.home, "status")
    assert "changed since the agent started: [journal]" in result.stdout
    assert "imza-agent stop && imza-agent run" in result.stdout
    assert json.loads(cli(agent.home, "status", "--json").stdout)["changed_sections"] == [
        "journal"]


def test_stop_ends_the_agent_and_status_then_says_so(agent: Daemon) -> None:
    assert agent.process is not None
    pid = agent.process.pid
    result = cli(agent.home, "stop")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"imza-agent stopped (pid {pid})"
    assert agent.process.poll() is not None  # really gone, not just asked
    after = cli(agent.home, "status")
    assert after.returncode == 3
    assert after.stdout.strip() == "imza-agent is not running"
    assert json.loads(cli(agent.home, "status", "--json").stdout) == {"running": False}
    again = cli(agent.home, "stop")
    assert again.returncode == 0
    assert again.stdout.strip() == "imza-agent was not running; nothing to stop"


@pytest.mark.parametrize(("language", "running", "stopped"), [
    ("az", "imza-agent işləyir (pid {pid}, versiya ", "imza-agent dayandırıldı (pid {pid})"),
    ("ru", "imza-agent запущен (pid {pid}, версия ", "imza-agent остановлен (pid {pid})"),
])
def test_status_and_stop_speak_the_language(agent: Daemon, language: str, running: str,
                                            stopped: str) -> None:
    assert agent.process is not None
    pid = agent.process.pid
    status = cli(agent.home, "status", "--language", language)
    assert status.stdout.startswith(running.format(pid=pid)), status.stdout
    assert "running for" not in status.stdout
    stop = cli(agent.home, "--language", language, "stop")
    assert stop.stdout.strip() == stopped.format(pid=pid)


def test_stop_never_signals_a_process_that_is_not_the_agent(tmp_path: Path) -> None:
    """A stale runtime.json whose pid now belongs to another program: nothing is killed."""
    home = tmp_path / "home"
    home.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (home / "runtime.json").write_text(json.dumps({"pid": other.pid, "ports": {}}),
                                           encoding="utf-8")
        result = cli(home, "stop")
        assert result.returncode == 0
        assert "not running" in result.stdout
        assert other.poll() is None  # still alive
        assert cli(home, "status").returncode == 3
    finally:
        other.kill()
        other.wait()


def test_config_edit_says_the_running_agent_needs_a_restart(agent: Daemon,
                                                             tmp_path: Path) -> None:
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nprintf '\\n[journal]\\nkeep_files = 9\\n' >> \"$1\"\n",
                      encoding="utf-8")
    editor.chmod(0o755)
    env_editor = {"EDITOR": str(editor)}
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", "config", "edit", "--config", str(agent.config_file),
         "--language", "ru"], cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, **env_editor, "IMZA_AGENT_HOME": str(agent.home),
             "PYTHON_KEYRING_BACKEND": NO_KEYRING})
    assert result.returncode == 0, result.stderr
    assert f"{agent.config_file} корректен" in result.stdout
    assert ("изменилось после запуска агента: [journal]; работающий агент использует старые "
            "настройки. Перезапустите его: imza-agent stop && imza-agent run") in result.stderr


def test_status_says_when_the_system_policy_changed(agent: Daemon) -> None:
    policy = agent.home.parent / (agent.home.name + "-policy.toml")
    assert "the system policy" not in cli(agent.home, "status").stdout
    policy.write_text(policy.read_text(encoding="utf-8") + "\nlocked = true\n",
                      encoding="utf-8")
    result = cli(agent.home, "status")
    assert "changed since the agent started: the system policy;" in result.stdout
    assert json.loads(cli(agent.home, "status", "--json").stdout)["policy_changed"] is True


def test_status_lists_the_tokens_the_agent_sees(agent: Daemon) -> None:
    """Needs runtime.json's "tokens" (agent/daemon/runtime.py writes token_summary)."""
    from agent.keystores.demo import DEMO_TOKEN_LABEL

    result = cli(agent.home, "status")
    assert f"tokens: {DEMO_TOKEN_LABEL} (DEMO)" in result.stdout, result.stdout
    data = json.loads(cli(agent.home, "status", "--json").stdout)
    assert data["tokens"] == [{"label": DEMO_TOKEN_LABEL, "kind": "demo", "present": True,
                               "demo": True}]
