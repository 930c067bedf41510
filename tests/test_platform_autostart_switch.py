"""Start at login on Windows and macOS, switched the two ways a person does it: the tray's
toggle (``run_action(…, "autostart")``) and ``imza-agent autostart on|off|status``; both
reach the platform's ``Autostart`` (the Run value; the LaunchAgent) against the fakes of
tests/test_platform_windows.py and tests/test_platform_macos.py."""

from __future__ import annotations

import asyncio
import json
import plistlib
from pathlib import Path

import pytest

import agent.platform
from agent.platform import autostart
from agent.platform.windows.autostart import RUN_KEY
from agent.ui.tray_model import run_action
from tests.test_platform_macos import EXE as MAC_EXE
from tests.test_platform_macos import FakeMac, mac
from tests.test_platform_windows import EXE as WIN_EXE
from tests.test_platform_windows import FakeRegistry, windows


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert autostart.main(argv) == 0
    return capsys.readouterr().out


def test_windows_tray_and_cli_switch_the_run_value(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    registry = FakeRegistry()
    monkeypatch.setattr(agent.platform, "current", lambda: windows(tmp_path, registry=registry))
    asyncio.run(run_action(None, "autostart", {"on": True}))  # the tray's toggle
    assert registry.get("HKCU", RUN_KEY, "imza-agent") == f'"{WIN_EXE}" run'
    assert autostart.enabled() is True  # what the tray shows
    status = json.loads(_cli(["status", "--json"], capsys))
    assert status == {"enabled": True, "scope": "user",
                      "file": f"HKCU\\{RUN_KEY}\\imza-agent"}
    _cli(["off"], capsys)
    assert registry.get("HKCU", RUN_KEY, "imza-agent") is None
    assert autostart.enabled() is False


def test_macos_tray_and_cli_switch_the_launch_agent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(agent.platform, "current", lambda: mac(tmp_path, FakeMac()))
    plist = tmp_path / "Library" / "LaunchAgents" / "az.imza.agent.plist"
    _cli(["on"], capsys)
    assert plistlib.loads(plist.read_bytes())["ProgramArguments"] == [MAC_EXE, "run"]
    asyncio.run(run_action(None, "autostart", {"on": False}))  # the tray's toggle
    assert not plist.exists() and autostart.enabled() is False
    assert json.loads(_cli(["status", "--json"], capsys))["enabled"] is False
