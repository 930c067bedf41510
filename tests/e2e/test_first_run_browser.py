"""First run with no warnings, in real Chromium (Debian's, driven by playwright-core from
first_run_browser.mjs).

A fresh HOME for the agent and the browser alike (Chromium reads $HOME/.pki/nssdb, which
does not exist yet), a fresh Chromium profile, no `imza-agent trust install` and no flag
that excuses certificate errors. The agent is started once — its start installs its CA —
then `imza-agent demo --no-browser` serves the portal at https://localhost:<port> with the
agent's own certificate, and Chromium loads it with no interstitial; the SDK on the page
connects over wss:// (plain ws:// is off, its default) and the demo identity logs in.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from daemon import NO_KEYRING, REPO, Daemon
from packed_sdk import packed_sdk, served_packed

pytestmark = [pytest.mark.browser, pytest.mark.daemon]

E2E = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
PORTAL_URL = re.compile(r"https://localhost:\d+/\S*")
FIRST_RUN_LINE = "your browsers now trust the agent's local certificate (Chromium)"


def _user_env(user_home: Path) -> dict[str, str]:
    """The person's environment: their HOME, and XDG dirs inside it (never the runner's)."""
    return {"HOME": str(user_home), "XDG_CONFIG_HOME": str(user_home / ".config"),
            "XDG_DATA_HOME": str(user_home / ".local/share")}


def _start_demo(agent: Daemon, user_home: Path, out: Path) -> tuple[subprocess.Popen[str], str]:
    """`imza-agent demo --no-browser` for the running agent; returns it and its portal URL."""
    env = {**os.environ, **_user_env(user_home), "IMZA_AGENT_HOME": str(agent.home),
           "IMZA_AGENT_SYSTEM_POLICY": str(agent.home.parent / f"{agent.home.name}-policy.toml"),
           "PYTHON_KEYRING_BACKEND": NO_KEYRING, "PYTHONUNBUFFERED": "1"}
    config = agent.home.parent / f"{agent.home.name}-config.toml"
    demo = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "--config", str(config), "demo", "--no-browser",
         "--port", "0"], cwd=REPO, env=env, stdout=subprocess.PIPE,
        stderr=out.open("w"), text=True)
    assert demo.stdout is not None
    seen = []
    for line in demo.stdout:  # the portal's line comes once it listens
        seen.append(line)
        found = PORTAL_URL.search(line)
        if found:
            return demo, found.group(0)
    demo.wait(timeout=30)
    raise AssertionError("the demo printed no portal URL:\n" + "".join(seen)
                         + out.read_text(encoding="utf-8", errors="replace"))


def _load(tmp: Path, user_home: Path, url: str) -> dict[str, Any]:
    assert Path(CHROMIUM).is_file(), "Debian's chromium is required: apt-get install chromium"
    assert (E2E / "node_modules" / "playwright-core").is_dir(), \
        "playwright-core is required: (cd tests/e2e && npm ci), or bash scripts/test.sh"
    plan = tmp / "plan.json"
    plan.write_text(json.dumps({"userDataDir": str(tmp / "fresh-profile"),
                                "home": str(user_home), "url": url,
                                "sdk": str(packed_sdk().module)}), encoding="utf-8")
    done = subprocess.run(["node", str(E2E / "first_run_browser.mjs"), str(plan)], cwd=E2E,
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert "failure" not in result, result["failure"]
    served_packed(result)  # the page got the packed SDK, not the source
    return result


def test_a_fresh_home_loads_the_demo_portal_without_a_warning_and_connects_over_wss(
        tmp_path: Path) -> None:
    user_home = tmp_path / "user"  # the person's HOME: no ~/.pki, nothing trusted yet
    user_home.mkdir()
    agent = Daemon(home=tmp_path / "agent", modules=[], env=_user_env(user_home),
                   config={"server": {"ws_enabled": False}},
                   answers={"consent": "once", "certificate": "first", "pin": "0000"})
    agent.start()
    demo = None
    try:
        assert "ws" not in agent.ports and "wss" in agent.ports
        # The agent's first start installed the CA and said so in one line.
        assert agent.log_text().count(FIRST_RUN_LINE) == 1, agent.log_text()[-3000:]
        assert "restart the browser if it was open" in agent.log_text()

        demo, url = _start_demo(agent, user_home, tmp_path / "demo.err")
        assert "wss=" in url and "ws=" not in url.replace("wss=", "")
        result = _load(tmp_path, user_home, url)
    finally:
        if demo is not None:
            demo.terminate()
            demo.wait(timeout=30)
        agent.stop()

    # No interstitial: the page itself loaded, over a certificate from the agent's CA.
    assert result.get("gotoError") is None, result
    assert result["status"] == 200
    assert result["issuer"].startswith("imza-agent local CA"), result["issuer"]
    assert result["title"] == "e-Xidmət — DEMO portal"
    assert result["ready"] is True
    assert "Your connection is not private" not in result["bodyText"]
    assert not [r for r in result["failedRequests"] if "ERR_CERT" in r], result
    assert not [m for m in result["console"] if "ERR_CERT" in m], result
    # The SDK connected straight to the agent over wss:// and the demo identity logged in.
    assert result["transport"] == "wss", result
    assert result["error"] is None, result["errorText"]
    assert "DEMO" in result["user"]
