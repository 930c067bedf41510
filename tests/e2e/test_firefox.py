"""End to end in real Firefox: Debian's firefox-esr, driven over WebDriver BiDi by
puppeteer-core (tests/e2e/firefox.mjs; no browser download), gets the Firefox package that
`installer/extension/package.py` builds, reaches the agent through the native messaging
host that `imza-agent native-host install --browser firefox` registered in ~/.mozilla, and
logs in on the demo portal with the demo identity. The .xpi goes in the two ways
docs/extension.md describes:

- as a person trying it: a temporary add-on (BiDi's webExtension.install, what
  about:debugging's "Load Temporary Add-on" does);
- as an administrator: the documented `ExtensionSettings` policy (force_installed,
  install_url), taken from docs/extension.md itself with install_url pointing at the built
  .xpi.

Nothing but the extension can reach the agent: the page's WebSocket URL points at a closed
port, so a login proves the extension → native host → agent path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from daemon import REPO, Daemon
from packed_sdk import packed_sdk, served_packed

from agent.demo_portal.server import PortalServer
from agent.platform.native_messaging import FIREFOX_EXTENSION_ID, HOST_NAME

pytestmark = [pytest.mark.firefox, pytest.mark.daemon]

E2E = Path(__file__).resolve().parent
FIREFOX = "/usr/bin/firefox-esr"
PIN = "0000"  # the demo identity's documented PIN
PERMISSIONS = ["select", "sign", "auth", "tokens"]
CLOSED = "127.0.0.1:9"  # the discard port: nothing listens there


@dataclass
class Bed:
    tmp: Path
    portal: PortalServer
    agent: Daemon
    xpi: Path
    home: Path  # the browser's HOME, with the native host registered in ~/.mozilla


def _env(agent: Daemon, **extra: str) -> dict[str, str]:
    return {**os.environ, "IMZA_AGENT_HOME": str(agent.home),
            "IMZA_AGENT_SYSTEM_POLICY": str(agent.home.parent / "agent-policy.toml"), **extra}


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    # The session-start check (tests/components.py) says the same; a test installs nothing.
    assert shutil.which("node"), "node is required: apt-get install nodejs npm"
    assert Path(FIREFOX).is_file(), "Debian's firefox-esr is required: apt-get install firefox-esr"
    assert (E2E / "node_modules" / "puppeteer-core").is_dir(), \
        "puppeteer-core is required: (cd tests/e2e && npm ci), or bash scripts/test.sh"
    with tempfile.TemporaryDirectory(prefix="imza-firefox-") as tmp_text:
        tmp = Path(tmp_text)
        # The package a person or an administrator gets, built by the one project command.
        built = subprocess.run(
            [sys.executable, str(REPO / "installer" / "extension" / "package.py"),
             "--out", str(tmp / "packages"), "--json"],
            cwd=REPO, check=True, capture_output=True, text=True, timeout=60)
        xpi = Path(json.loads(built.stdout)["firefox"])
        agent_home = tmp / "agent"
        portal = PortalServer(anchors=[agent_home / "demo" / "demo-root-ca.pem"],
                              public_host="portal.test").start()
        agent = Daemon(home=agent_home, modules=[], env={},
                       policy={"locked": True, "allow": [
                           {"origin": portal.origin, "permissions": PERMISSIONS}]},
                       answers={"certificate": "first", "pin": PIN})
        try:
            agent.start()
            home = tmp / "browser-home"
            home.mkdir()
            registered = subprocess.run(
                [sys.executable, "-m", "agent.cli", "--config",
                 str(agent.home.parent / "agent-config.toml"), "native-host", "install",
                 "--browser", "firefox"],
                cwd=REPO, env=_env(agent, HOME=str(home)), capture_output=True, text=True,
                timeout=60, check=False)
            assert registered.returncode == 0, registered.stderr
            yield Bed(tmp, portal, agent, xpi, home)
        finally:
            agent.stop()
            portal.stop()


def _documented_firefox_policy() -> dict[str, Any]:
    """The Firefox policies.json example of docs/extension.md."""
    text = (REPO / "docs" / "extension.md").read_text(encoding="utf-8")
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", text, re.S)]
    (policy,) = [b for b in blocks if "policies" in b]
    assert isinstance(policy, dict)
    return policy


def _run_firefox(bed: Bed, name: str, **plan: Any) -> dict[str, Any]:
    plan.setdefault("install", "bidi")
    plan.setdefault("profileDir", str(bed.tmp / f"profile-{name}"))
    plan.setdefault("extension", str(bed.xpi))
    plan.setdefault("hosts", ["portal.test"])
    plan.setdefault("home", str(bed.home))
    plan.setdefault("url", f"{bed.portal.origin}/?wss=wss://{CLOSED}/v1")
    plan["sdk"] = str(packed_sdk().module)  # the page gets the packed SDK, not the source
    Path(plan["profileDir"]).mkdir()
    plan_file = bed.tmp / f"plan-{name}.json"
    plan_file.write_text(json.dumps(plan), encoding="utf-8")
    done = subprocess.run(["node", str(E2E / "firefox.mjs"), str(plan_file)], cwd=E2E,
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert "failure" not in result, result["failure"]
    served_packed(result)  # the page got the packed SDK, not the source
    return result


def test_the_native_host_is_registered_for_firefox_in_the_users_mozilla_dir(bed: Bed) -> None:
    manifest = json.loads((bed.home / ".mozilla" / "native-messaging-hosts"
                           / f"{HOST_NAME}.json").read_text(encoding="utf-8"))
    assert manifest["allowed_extensions"] == [FIREFOX_EXTENSION_ID]
    assert manifest["type"] == "stdio" and Path(manifest["path"]).is_file()


def test_firefox_esr_loads_the_xpi_reaches_the_agent_and_logs_in(bed: Bed) -> None:
    mark = bed.agent.transcript_mark()
    signed = len(bed.portal.portal.signed)
    result = _run_firefox(bed, "login", actions=["login", "declaration"])
    assert result["browserVersion"].lower().startswith("firefox/"), result["browserVersion"]
    # the add-on ID Firefox gave it is the one the native host manifest allows
    assert result["extensionId"] == FIREFOX_EXTENSION_ID
    # the SDK found the extension and, through the native host, the agent, which saw the
    # portal's origin as Firefox reported it (not as the page claimed it)
    assert result["probe"] == {"transport": "extension", "seen": "extension",
                               "origin": bed.portal.origin}, result
    assert result["login"]["error"] is None, result["login"]
    assert result["transport"] == "extension"
    assert "DEMO" in result["user"]
    assert result["declaration"]["error"] is None, result["declaration"]
    assert "Accepted: signed by DEMO" in result["declarationText"]
    # the portal's server verified the signature itself
    assert len(bed.portal.portal.signed) == signed + 1
    dialogs = [d["dialog"] for d in bed.agent.transcript(mark)
               if d.get("origin") == bed.portal.origin]
    assert dialogs == ["certificate", "pin", "certificate", "pin"]


def test_the_documented_firefox_policy_force_installs_the_xpi_which_logs_in(bed: Bed) -> None:
    policy = _documented_firefox_policy()
    settings = policy["policies"]["ExtensionSettings"]
    assert list(settings) == [FIREFOX_EXTENSION_ID]
    assert settings[FIREFOX_EXTENSION_ID]["installation_mode"] == "force_installed"
    # The administrator's file, with install_url pointing at the package just built.
    settings[FIREFOX_EXTENSION_ID]["install_url"] = bed.xpi.as_uri()
    policy_file = bed.tmp / "policies.json"
    policy_file.write_text(json.dumps(policy), encoding="utf-8")
    profile = bed.tmp / "profile-policy"
    mark = bed.agent.transcript_mark()
    result = _run_firefox(bed, "policy", install="policy", policyFile=str(policy_file),
                          profileDir=str(profile), actions=["login"])
    assert "extensionId" not in result  # nothing installed it but the policy
    assert result["probe"] == {"transport": "extension", "seen": "extension",
                               "origin": bed.portal.origin}, result
    assert result["login"]["error"] is None, result["login"]
    assert result["transport"] == "extension" and "DEMO" in result["user"]
    assert [d["dialog"] for d in bed.agent.transcript(mark)
            if d.get("origin") == bed.portal.origin] == ["certificate", "pin"]
    # Firefox's own record of the add-on: installed by the enterprise policy, permanent
    # (not a temporary add-on), active.
    addons = json.loads((profile / "extensions.json").read_text(encoding="utf-8"))["addons"]
    (ours,) = [a for a in addons if a["id"] == FIREFOX_EXTENSION_ID]
    assert ours["installTelemetryInfo"]["source"] == "enterprise-policy"
    assert ours["active"] is True and not ours.get("temporarilyInstalled")
