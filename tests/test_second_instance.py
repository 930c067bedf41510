"""Starting an agent while one runs (issue 12): `run` says which agent runs and with which
config, and exits 1 before binding anything; `demo` reuses the running agent only when its
settings are the ones asked for, and never starts a second daemon; a second `demo` on a
taken portal port says so instead of printing a traceback. Real agents throughout
(tests/daemon.py, and `imza-agent demo` starting its own through the launcher)."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon import NO_KEYRING, REPO, Daemon, to_toml

pytestmark = pytest.mark.daemon

HANG = 60  # seconds: only a hang detector


def env_for(home: Path) -> dict[str, str]:
    return {**os.environ, "IMZA_AGENT_HOME": str(home), "PYTHON_KEYRING_BACKEND": NO_KEYRING,
            "XDG_CONFIG_HOME": str(home.parent / "xdg"), "LANG": "C.UTF-8", "LANGUAGE": "",
            "LC_ALL": "", "PYTHONUNBUFFERED": "1"}


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], cwd=REPO,
                          env=env_for(home), capture_output=True, text=True, timeout=HANG,
                          check=False)


def popen(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "agent.cli", *args], cwd=REPO,
                            env=env_for(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def read_until(proc: subprocess.Popen[str], needle: str) -> str:
    """stdout up to the line containing ``needle`` (fails on exit or a hang)."""
    assert proc.stdout is not None
    seen = ""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + HANG
        while needle not in seen:
            assert time.monotonic() < deadline, f"no {needle!r} in: {seen}"
            if selector.select(timeout=1):
                line = proc.stdout.readline()
                if not line:
                    stderr = proc.stderr.read() if proc.stderr else ""
                    raise AssertionError(f"exited {proc.wait()}: {seen}{stderr}")
                seen += line
    return seen


def runtime_pid(home: Path) -> int:
    return int(json.loads((home / "runtime.json").read_text(encoding="utf-8"))["pid"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def agent_processes(home: Path) -> list[int]:
    """Every `imza-agent run` process of this data dir (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"agent.cli" in argv and b"run" in argv and \
                f"IMZA_AGENT_HOME={home}".encode() in environ:
            found.append(int(entry.name))
    return found


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=HANG)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def agent() -> Iterator[Daemon]:
    with tempfile.TemporaryDirectory(prefix="imza-second-") as tmp:
        daemon = Daemon(home=Path(tmp) / "home", modules=[], env={},
                        config={"ui": {"language": "en"}}).start()
        try:
            yield daemon
        finally:
            daemon.stop()



def standalone_config(path: Path, language: str) -> Path:
    """A config an agent started by `demo` can run with here: no tray, no dialogs."""
    path.write_text(to_toml({
        "server": {"wss_port": 0, "ws_port": 0, "ws_enabled": True},
        "tokens": {"known_modules": False},
        "ui": {"backend": "none", "tray": False, "language": language}}), encoding="utf-8")
    return path


# --- run ----------------------------------------------------------------------------------------

def test_a_second_run_says_which_agent_runs_and_exits(agent: Daemon) -> None:
    assert agent.process is not None
    pid = agent.process.pid
    second = cli(agent.home, "--config", str(agent.config_file), "run", "--headless")
    assert second.returncode == 1
    assert second.stderr.strip() == (
        f"imza-agent is already running (pid {pid}, config {agent.config_file}, language en); "
        "use `imza-agent stop` first")
    assert "Traceback" not in second.stderr
    assert agent.process.poll() is None
    assert runtime_pid(agent.home) == pid
    assert agent_processes(agent.home) == [pid]


def test_the_already_running_message_speaks_russian(agent: Daemon) -> None:
    assert agent.process is not None
    second = cli(agent.home, "run", "--headless", "--language", "ru")
    assert second.returncode == 1
    assert second.stderr.strip().startswith(
        f"imza-agent уже запущен (pid {agent.process.pid}, конфигурация {agent.config_file}, "
        "язык en)")


def test_two_runs_at_once_leave_one_agent(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = standalone_config(tmp_path / "agent.toml", "en")
    both = [popen(home, "--config", str(config), "run", "--headless") for _ in range(2)]
    try:
        deadline = time.monotonic() + HANG
        while all(p.poll() is None for p in both):
            assert time.monotonic() < deadline, "neither run gave way"
            time.sleep(0.05)
        [loser] = [p for p in both if p.poll() is not None]
        [winner] = [p for p in both if p is not loser]
        assert loser.returncode == 1
        assert loser.stderr is not None
        message = loser.stderr.read()
        assert "is already running" in message or "is starting right now" in message
        assert "Traceback" not in message
        assert winner.poll() is None
    finally:
        for proc in both:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=HANG)


# --- demo ---------------------------------------------------------------------------------------

def test_demo_with_another_config_never_reuses_the_running_agent(agent: Daemon,
                                                                  tmp_path: Path) -> None:
    """`imza-agent --config az.toml demo` while an English agent runs: said, in the language
    az.toml asks for, and nothing started."""
    assert agent.process is not None
    pid = agent.process.pid
    az = tmp_path / "az.toml"
    english = agent.config_file.read_text(encoding="utf-8")
    assert 'language = "en"' in english
    az.write_text(english.replace('language = "en"', 'language = "az"'), encoding="utf-8")
    result = cli(agent.home, "--config", str(az), "demo", "--no-browser",
                 "--port", str(free_port()))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"imza-agent: başqa ayarlarla imza-agent işləyir (pid {pid}, konfiqurasiya "
        f"{agent.config_file}, dil en); ayarları bu bölmələrdə fərqlidir: [ui]. Onu "
        "`imza-agent stop` ilə dayandırın, sonra demonu yenidən başladın.")
    assert agent_processes(agent.home) == [pid]
    assert runtime_pid(agent.home) == pid


def test_demo_with_the_same_config_reuses_the_agent(agent: Daemon) -> None:
    assert agent.process is not None
    pid = agent.process.pid
    demo = popen(agent.home, "demo", "--no-browser", "--port", str(free_port()),
                 "--config", str(agent.config_file))
    try:
        out = read_until(demo, "imza-agent demo: agent pid")
        assert f"using the running imza-agent (pid {pid}): it has the same settings" in out
        assert f"agent pid {pid}," in out
        assert agent_processes(agent.home) == [pid]
    finally:
        stop(demo)


def test_a_second_demo_on_the_same_port_says_so(agent: Daemon) -> None:
    port = free_port()
    first = popen(agent.home, "--config", str(agent.config_file), "demo", "--no-browser",
                  "--port", str(port))
    try:
        read_until(first, "imza-agent demo: agent pid")
        second = cli(agent.home, "--config", str(agent.config_file), "demo", "--no-browser",
                     "--port", str(port))
        assert second.returncode == 1
        assert f"port {port} is already in use" in second.stderr
        assert "Traceback" not in second.stderr
        assert len(agent_processes(agent.home)) == 1
    finally:
        stop(first)


def test_demo_starts_an_agent_with_its_config_when_none_runs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = standalone_config(tmp_path / "ru.toml", "ru")
    demo = popen(home, "demo", "--no-browser", "--port", str(free_port()),
                 "--config", str(config))
    try:
        out = read_until(demo, "imza-agent demo: agent pid")
        [pid] = agent_processes(home)
        assert f"agent pid {pid}," in out
        status: dict[str, Any] = json.loads(cli(home, "status", "--json").stdout)
        assert status["pid"] == pid
        assert status["config"] == str(config)
        assert status["language"] == "ru"
        stopped = cli(home, "stop")
        assert stopped.returncode == 0
        assert stopped.stdout.strip() == f"imza-agent stopped (pid {pid})"
        assert agent_processes(home) == []
    finally:
        stop(demo)
        for pid in agent_processes(home):
            os.kill(pid, signal.SIGKILL)
