"""Issue 12 §9 in real Chromium (Debian's, driven by tests/e2e/sdk_outcomes.mjs): the demo
portal says what went wrong next to the button that was pressed, as a sentence in the
language chosen on the page, with the SDK's kind in small print — for a real agent that
is not running, a real user who cancels (the scripted dialog answers "cancel"), a real
agent whose policy refuses the portal, and the real extension without an agent.

Everything is pressed with the keyboard (focus, Enter), so the language switch and the
buttons are shown to be keyboard-usable, and the message areas to be live regions that
the pressed button is described by.
"""

from __future__ import annotations

import json
import socket
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
    agent_env,
    require_chromium_tools,
    spki_hash,
    trusting_home,
)
from daemon import REPO, Daemon
from packed_sdk import packed_sdk, served_packed

from agent.demo_portal.server import PortalServer
from agent.platform.native_messaging import CHROMIUM_EXTENSION_ID, HOST_NAME

pytestmark = [pytest.mark.browser, pytest.mark.daemon]


@dataclass
class Bed:
    tmp: Path
    portal: PortalServer
    agent: Daemon  # allows the portal; its scripted user cancels every dialog
    refusing: Daemon  # its administrator's policy does not allow the portal
    extension: Path
    homes: dict[str, Path]  # HOME per agent, with an NSS db trusting that agent's CA


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens once it is closed


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    require_chromium_tools()
    with tempfile.TemporaryDirectory(prefix="imza-outcomes-") as tmp_text:
        tmp = Path(tmp_text)
        built = json.loads(subprocess.run(
            ["node", str(REPO / "extension" / "build.mjs"), str(tmp / "extension")],
            check=True, capture_output=True, text=True, timeout=60).stdout)
        assert built["chromiumId"] == CHROMIUM_EXTENSION_ID
        portal = PortalServer(anchors=[tmp / "agent" / "demo" / "demo-root-ca.pem"],
                              public_host="portal.test").start()
        agent = Daemon(home=tmp / "agent", modules=[], env={},
                       policy={"locked": True, "allow": [
                           {"origin": portal.origin, "permissions": PERMISSIONS}]},
                       answers={"certificate": "cancel", "pin": "cancel"})
        refusing = Daemon(home=tmp / "refusing", modules=[], env={},
                          policy={"locked": True, "allow": [
                              {"origin": "https://elsewhere.test", "permissions": PERMISSIONS}]},
                          answers={"certificate": "first", "pin": "0000"})
        try:
            agent.start()
            refusing.start()
            homes = {"agent": trusting_home(agent, tmp / "home-agent"),
                     "refusing": trusting_home(refusing, tmp / "home-refusing"),
                     "plain": tmp / "home-plain"}
            homes["plain"].mkdir()
            yield Bed(tmp, portal, agent, refusing, Path(built["chromium"]), homes)
        finally:
            agent.stop()
            refusing.stop()
            portal.stop()


def _register_host(profile: Path, agent: Daemon) -> None:
    """`imza-agent native-host install` into this Chromium profile, for this agent."""
    config = agent.config_file
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "--config", str(config), "native-host", "install",
         "--target-dir", str(profile / "NativeMessagingHosts")],
        cwd=REPO, env=agent_env(agent), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert (profile / "NativeMessagingHosts" / f"{HOST_NAME}.json").is_file()


def _run(bed: Bed, name: str, *, wss: str, home: str, steps: list[dict[str, Any]],
         lang: str | None = None, extension: bool = False) -> list[dict[str, Any]]:
    query = f"?wss={wss}" + (f"&lang={lang}" if lang else "")
    plan: dict[str, Any] = {
        "userDataDir": str(bed.tmp / f"profile-{name}"), "url": f"{bed.portal.origin}/{query}",
        "home": str(bed.homes[home]), "hosts": ["portal.test"],
        "spki": [spki_hash(bed.portal.cert_path)], "steps": steps,
        "sdk": str(packed_sdk().module)}  # the page gets the packed SDK, not the source
    if extension:
        plan["extensionDir"] = str(bed.extension)
    plan_file = bed.tmp / f"plan-{name}.json"
    plan_file.write_text(json.dumps(plan), encoding="utf-8")
    done = subprocess.run(["node", str(E2E / "sdk_outcomes.mjs"), str(plan_file)], cwd=E2E,
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "failure" not in result, result["failure"]
    served_packed(result)
    # app.js checks at load that it has a sentence for every kind in every language
    assert [m for m in result.get("console", []) if "demo portal:" in m] == []
    if extension:
        assert result["extensionId"] == CHROMIUM_EXTENSION_ID
    steps_seen: list[dict[str, Any]] = result["steps"]
    return steps_seen


def _assert_said(step: dict[str, Any], area: str, kind: str, sentence: str) -> None:
    """The pressed button's own message area says ``sentence`` (a sentence, not the
    code), the code follows in small print, and the other areas say nothing."""
    seen = step["area"]
    assert seen["outcome"] == "error" and seen["kind"] == kind, seen
    assert sentence in seen["message"], seen
    assert kind not in seen["message"]  # never a bare code: the code is apart
    assert seen["code"] is not None and kind in seen["code"], seen
    assert seen["live"] == "polite" and seen["describes"] == step["focused"], seen
    others = {name: text for name, text in step["state"]["areas"].items() if name != area}
    assert set(others.values()) <= {""}, others


def test_agent_not_running_is_said_next_to_the_button_in_russian(bed: Bed) -> None:
    steps = _run(bed, "not-running", wss=f"wss://127.0.0.1:{_closed_port()}/v1",
                 home="plain", lang="az",
                 steps=[{"language": "ru"}, {"press": "login", "area": "login"}])
    switched, pressed = steps
    assert switched["focused"] == "ru"
    assert switched["state"]["lang"] == "ru" and switched["state"]["pressed"] == ["ru"]
    assert switched["state"]["buttonLangs"] == ["az", "tr", "ru", "en"]
    assert switched["state"]["loginButton"] == "Войти с электронной подписью"
    assert pressed["focused"] == "login"
    _assert_said(pressed, "login", "AGENT_NOT_RUNNING",
                 "Программа imza-agent на этом компьютере не запущена")


def test_the_user_cancelling_is_said_next_to_each_pressed_button(bed: Bed) -> None:
    mark = bed.agent.transcript_mark()
    steps = _run(bed, "cancelled", wss=bed.agent.url("wss"), home="agent",
                 steps=[{"language": "tr"}, {"press": "login", "area": "login"},
                        {"language": "en"},
                        {"press": "sign-pdf", "area": "pdf"}])
    login, pdf = steps[1], steps[3]
    assert login["transport"] == "wss"
    _assert_said(login, "login", "USER_CANCELLED", "İptal ettiniz")
    # the second button's own area speaks; the first keeps its outcome, now in English
    assert pdf["focused"] == "sign-pdf" and pdf["area"]["kind"] == "USER_CANCELLED"
    assert "You cancelled" in pdf["area"]["message"]
    assert "You cancelled" in pdf["state"]["areas"]["login"]
    assert pdf["state"]["areas"]["declaration"] == ""
    # a real dialog was shown to the portal and cancelled by the (scripted) user
    dialogs = [d["dialog"] for d in bed.agent.transcript(mark)
               if d.get("origin") == bed.portal.origin]
    assert dialogs == ["certificate", "certificate"]


def test_the_agent_refusing_the_site_is_said_through_the_extension(bed: Bed) -> None:
    profile = bed.tmp / "profile-refused-extension"
    _register_host(profile, bed.refusing)
    steps = _run(bed, "refused-extension", wss=f"wss://127.0.0.1:{_closed_port()}/v1",
                 home="plain", extension=True,
                 steps=[{"language": "en"}, {"press": "sign-pdf", "area": "pdf"}])
    _assert_said(steps[1], "pdf", "SITE_REFUSED",
                 "does not allow this site to use your e-signature")
    assert bed.refusing.transcript() == []  # not one dialog
    assert "portal.test" in bed.refusing.log_text()  # the refusal, logged with the origin


def test_the_extension_without_an_agent_is_said_in_azerbaijani(bed: Bed) -> None:
    # The extension is loaded but no native host is registered for this profile: the
    # browser answers "Specified native messaging host not found."
    steps = _run(bed, "no-host", wss=f"wss://127.0.0.1:{_closed_port()}/v1", home="plain",
                 extension=True, lang="en",
                 steps=[{"language": "az"}, {"press": "login", "area": "login"}])
    _assert_said(steps[1], "login", "EXTENSION_WITHOUT_AGENT",
                 "imza-agent brauzer genişlənməsi quraşdırılıb")


def test_the_agent_refusing_the_site_is_said_over_wss(bed: Bed) -> None:
    steps = _run(bed, "refused-wss", wss=bed.refusing.url("wss"), home="refusing",
                 steps=[{"language": "en"}, {"press": "login", "area": "login"}])
    _assert_said(steps[1], "login", "SITE_REFUSED",
                 "does not allow this site to use your e-signature")
