"""End to end in real Chromium (Debian's, driven by playwright-core from browser.mjs):
the demo portal under an https origin of its own, the page SDK, the extension, the
native messaging host and the agent with the demo identity.

(a) direct WebSocket: the portal is a public site granted local-network access;
(b) the same without the grant: direct sockets are blocked and the SDK uses the extension;
(c) the extension alone, with no agent running: the native host starts it;
(d) a hostile page on another origin gets no certificate, no dialog and no signature.

In (a)–(c) the declaration is signed with ``sign.cms`` (CAdES over the digest of the
document the portal composed) and the portal's server verifies it with pyHanko.

The administrator's policy is locked to the portal's origin (docs/integration.md).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser_bed import (
    E2E,
    PERMISSIONS,
    require_chromium_tools,
    spki_hash,
    trusting_home,
    valid_pdfsig,
)
from daemon import REPO, Daemon, stop_pid, to_toml
from packed_sdk import packed_sdk, served_packed

from agent import PROTOCOL_VERSION, __version__
from agent.demo_portal.server import PortalServer, sample_pdf
from agent.platform.native_messaging import CHROMIUM_EXTENSION_ID, HOST_NAME

pytestmark = [pytest.mark.browser, pytest.mark.daemon, pytest.mark.verifiers]

PIN = "0000"  # the demo identity's documented PIN


@dataclass
class Bed:
    tmp: Path
    portal: PortalServer
    agent: Daemon  # running: scenarios (a), (b), (d)
    idle_home: Path  # no agent running until the native host starts one: (c)
    extension: Path
    browser_home: Path  # HOME with an NSS db trusting the running agent's CA

    @property
    def portal_origin(self) -> str:
        return self.portal.origin

    def hostile_origin(self) -> str:
        return f"https://evil.test:{self.portal.port}"


def _policy(origin: str) -> dict[str, Any]:
    return {"locked": True, "allow": [{"origin": origin, "permissions": PERMISSIONS}]}


def _env(home: Path, policy_file: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "IMZA_AGENT_HOME": str(home),
            "IMZA_AGENT_SYSTEM_POLICY": str(policy_file), **extra}


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    require_chromium_tools()
    with tempfile.TemporaryDirectory(prefix="imza-e2e-") as tmp_text:
        tmp = Path(tmp_text)
        built = json.loads(subprocess.run(
            ["node", str(REPO / "extension" / "build.mjs"), str(tmp / "extension")],
            check=True, capture_output=True, text=True, timeout=60).stdout)
        assert built["chromiumId"] == CHROMIUM_EXTENSION_ID
        agent_home, idle_home = tmp / "agent", tmp / "idle"
        portal = PortalServer(
            anchors=[agent_home / "demo" / "demo-root-ca.pem",
                     idle_home / "demo" / "demo-root-ca.pem"],
            public_host="portal.test").start()
        agent = Daemon(home=agent_home, modules=[], env={}, policy=_policy(portal.origin),
                       answers={"certificate": "first", "pin": PIN})
        try:
            agent.start()
            yield Bed(tmp, portal, agent, idle_home, Path(built["chromium"]),
                      trusting_home(agent, tmp / "browser-home"))
        finally:
            agent.stop()
            portal.stop()


def _register_host(bed: Bed, profile: Path, home: Path, config: Path, policy: Path) -> None:
    """`imza-agent native-host install` into this Chromium profile, for this agent home."""
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "--config", str(config), "native-host", "install",
         "--target-dir", str(profile / "NativeMessagingHosts")],
        cwd=REPO, env=_env(home, policy), capture_output=True, text=True, timeout=60,
        check=False)
    assert done.returncode == 0, done.stderr
    assert (profile / "NativeMessagingHosts" / f"{HOST_NAME}.json").is_file()


def _run_browser(bed: Bed, name: str, **plan: Any) -> dict[str, Any]:
    plan.setdefault("userDataDir", str(bed.tmp / f"profile-{name}"))
    plan.setdefault("hosts", ["portal.test", "evil.test"])
    plan.setdefault("spki", [spki_hash(bed.portal.cert_path)])
    plan.setdefault("home", str(bed.browser_home))
    plan.setdefault("origin", bed.portal_origin)
    plan.setdefault("portalOrigin", bed.portal_origin)
    ports = bed.agent.ports
    plan.setdefault("wsUrl", f"ws://127.0.0.1:{ports['ws']}/v1")
    plan.setdefault("wssUrl", f"wss://127.0.0.1:{ports['wss']}/v1")
    query = f"?wss={plan['wssUrl']}&ws={plan['wsUrl']}"
    plan.setdefault("url", f"{plan['origin']}/{query}")
    plan["sdk"] = str(packed_sdk().module)  # the page gets the packed SDK, not the source
    plan_file = bed.tmp / f"plan-{name}.json"
    plan_file.write_text(json.dumps(plan), encoding="utf-8")
    done = subprocess.run(["node", str(E2E / "browser.mjs"), str(plan_file)], cwd=E2E,
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "failure" not in result, result["failure"]
    served_packed(result)
    return result


def _dialogs(agent_transcript: list[dict[str, Any]], origin: str) -> list[str]:
    return [d["dialog"] for d in agent_transcript if d.get("origin") == origin]


def _assert_logged_in_and_signed(bed: Bed, result: dict[str, Any], signed_before: int,
                                 transcript: list[dict[str, Any]]) -> None:
    assert result["login"]["error"] is None, result["login"]
    assert "DEMO" in result["user"]
    assert result["declaration"]["error"] is None, result["declaration"]
    assert "Accepted: signed by DEMO" in result["declarationText"]
    # the portal's server verified it (not the page saying so): a CAdES signature (sign.cms)
    # over the declaration it composed, checked with pyHanko against its trust anchors
    assert len(bed.portal.portal.signed) == signed_before + 1
    record = bed.portal.portal.signed[-1]
    assert record["format"] == "CAdES-B-B" and "DEMO" in record["signer"]["name"]
    # and the PIN dialog showed the user that declaration
    shown = [d.get("display_text") or "" for d in transcript
             if d["dialog"] == "pin" and d.get("origin") == bed.portal_origin]
    assert any("Income tax declaration" in text for text in shown), shown


def test_a_direct_websocket_from_a_public_site_granted_local_network_access(bed: Bed) -> None:
    mark = bed.agent.transcript_mark()
    signed = len(bed.portal.portal.signed)
    result = _run_browser(bed, "a", scenario="portal", publicPort=bed.portal.port,
                          grantLocalNetwork=True, actions=["versions", "login", "declaration"])
    assert result["direct"]["ws"] == "open"
    # version negotiation with the real agent: the packed SDK speaks its protocol; asking
    # for a newer agent than this one is AGENT_TOO_OLD with what was required and found
    versions = result["versions"]
    assert versions["sdkProtocol"] == PROTOCOL_VERSION == versions["agent"]["protocol"]
    assert versions["agent"]["version"] == __version__
    assert versions["sdkVersion"] == packed_sdk().manifest["version"]
    assert versions["sameVersion"] == "wss"
    too_old = versions["tooOld"]
    assert too_old["isImzaError"] and too_old["kind"] == "AGENT_TOO_OLD", too_old
    assert too_old["reason"] == "VERSION_MISMATCH"
    assert too_old["data"]["subject"] == "version"
    assert (too_old["data"]["required"], too_old["data"]["found"]) == ("999.0.0", __version__)
    assert result["transport"] == "wss"  # trusted through NSS, no certificate errors
    _assert_logged_in_and_signed(bed, result, signed, bed.agent.transcript(mark))
    dialogs = _dialogs(bed.agent.transcript(mark), bed.portal_origin)
    assert dialogs == ["certificate", "pin", "certificate", "pin"]


def test_b_without_local_network_access_the_sdk_falls_back_to_the_extension(bed: Bed) -> None:
    profile = bed.tmp / "profile-b"
    _register_host(bed, profile, bed.agent.home, bed.agent.home.parent / "agent-config.toml",
                   bed.agent.home.parent / "agent-policy.toml")
    mark = bed.agent.transcript_mark()
    signed = len(bed.portal.portal.signed)
    result = _run_browser(bed, "b", scenario="portal", publicPort=bed.portal.port,
                          grantLocalNetwork=False, extensionDir=str(bed.extension),
                          actions=["fallback", "login", "declaration", "pdf", "tokens"])
    assert result["extensionId"] == CHROMIUM_EXTENSION_ID
    assert result["direct"]["ws"] == "error"  # blocked by the local network access check
    assert result["fallback"] == {"transport": "extension", "seen": "extension",
                                  "origin": bed.portal_origin}
    assert result["transport"] == "extension"
    _assert_logged_in_and_signed(bed, result, signed, bed.agent.transcript(mark))
    assert result["tokens"]["tokens"][0]["present"] is True
    assert _dialogs(bed.agent.transcript(mark), bed.portal_origin) == [
        "certificate", "pin", "certificate", "pin", "certificate", "pin"]
    # "sign a PDF": the downloadable file is the sample with a signature poppler accepts
    assert result["pdf"]["error"] is None, result["pdf"]
    _assert_signed_pdf(bed, base64.b64decode(result["pdfFile"]))


def _assert_signed_pdf(bed: Bed, pdf: bytes) -> None:
    assert pdf.startswith(sample_pdf()[:-1].split(b"%%EOF")[0][:20])
    valid_pdfsig(pdf, bed.tmp / "signed.pdf")


def test_c_the_extension_alone_starts_the_agent(bed: Bed) -> None:
    # An agent home with config, policy and answers but no agent running.
    idle = Daemon(home=bed.idle_home, modules=[], env={}, policy=_policy(bed.portal_origin),
                  answers={"certificate": "first", "pin": PIN})
    idle.home.mkdir()
    config = idle.home.parent / "idle-config.toml"
    config.write_text(idle._config_text(), encoding="utf-8")
    policy = idle.home.parent / "idle-policy.toml"
    policy.write_text(to_toml(_policy(bed.portal_origin)), encoding="utf-8")
    idle.set_answers(idle.answers)
    profile = bed.tmp / "profile-c"
    _register_host(bed, profile, idle.home, config, policy)
    assert not (idle.home / "runtime.json").exists()
    signed = len(bed.portal.portal.signed)
    pid = None
    try:
        plain_home = bed.tmp / "plain-home"  # no NSS trust; nothing on the socket URLs
        plain_home.mkdir()
        result = _run_browser(bed, "c", scenario="portal", extensionDir=str(bed.extension),
                              home=str(plain_home), wsUrl="ws://127.0.0.1:9/v1",
                              wssUrl="wss://127.0.0.1:9/v1")
        runtime = json.loads((idle.home / "runtime.json").read_text(encoding="utf-8"))
        pid = runtime["pid"]
        assert result["transport"] == "extension"
        _assert_logged_in_and_signed(bed, result, signed, idle.transcript())
        assert _dialogs(idle.transcript(), bed.portal_origin) == [
            "certificate", "pin", "certificate", "pin"]
    finally:
        if pid is None and (idle.home / "runtime.json").exists():
            pid = json.loads((idle.home / "runtime.json").read_text(encoding="utf-8"))["pid"]
        if pid is not None:
            stop_pid(pid)


def test_d_a_hostile_page_gets_no_certificate_no_dialog_no_signature(bed: Bed) -> None:
    profile = bed.tmp / "profile-d"
    _register_host(bed, profile, bed.agent.home, bed.agent.home.parent / "agent-config.toml",
                   bed.agent.home.parent / "agent-policy.toml")
    hostile = bed.hostile_origin()
    mark = bed.agent.transcript_mark()
    signed = len(bed.portal.portal.signed)
    # The worst case: the extension installed AND local network access granted to it.
    result = _run_browser(bed, "d", scenario="hostile", origin=hostile,
                          publicPort=bed.portal.port, grantLocalNetwork=True,
                          extensionDir=str(bed.extension))
    hostile_view = result["hostile"]
    assert "certificate" not in hostile_view and "connected" not in hostile_view
    assert hostile_view["connectError"] == "PERMISSION_DENIED"
    assert {a["transport"] for a in hostile_view["attempts"]} == {"extension", "wss", "ws"}
    # Claiming the portal's origin in the message changes nothing: the background uses
    # the browser's sender.url, and the agent refuses evil.test.
    assert hostile_view["spoof"]["reason"] == "REFUSED"
    assert "opened" not in hostile_view["spoof"]["events"]
    # Direct sockets reach the agent (access granted) and are refused before any message
    # is read: closed with 1008 and the reason, so the SDK can say "refused this site".
    for transport in ("ws", "wss"):
        assert result["direct"][transport].startswith("closed 1008 refused"), result["direct"]
    assert bed.agent.transcript(mark) == []  # not one dialog
    assert len(bed.portal.portal.signed) == signed
    assert "evil.test" in bed.agent.log_text()  # refusals were logged with the origin
