"""Issue 12 §9: the page SDK tells a page what went wrong in a small set of ``kind`` values
(docs/integration.md, "What to tell the user"): no extension, extension without agent,
agent not running, site refused, user cancelled, timed out, connection lost; every other
agent reason passes through as it is.

The SDK runs unchanged in Node (tests/sdk_fake_page.mjs) on a stand-in page with a
scripted extension (the messages content.js and background.js post) and a scripted
WebSocket (what a browser reports: a refused connection, one that never opens, a close
with a code and reason). The real browser, portal and agent: tests/e2e/test_sdk_outcomes.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
from daemon import REPO

SDK = REPO / "extension" / "sdk" / "imza.js"
DRIVER = REPO / "tests" / "sdk_fake_page.mjs"

INFO = {"result": {"name": "imza-agent", "version": "0.1.0", "protocol": 1}}
FAST = {"extensionTimeout": 300, "socketTimeout": 300, "openTimeout": 300, "infoTimeout": 300}


def _error(code: int, reason: str, **data: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": reason.lower(), "data": {"reason": reason,
                                                                       **data}}}


def run_page(plan: dict[str, Any]) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None, "node is needed to run the page SDK: apt-get install nodejs"
    plan = {**plan, "options": {**FAST, **plan.get("options", {})}}
    done = subprocess.run([node, str(DRIVER), SDK.as_uri(), json.dumps(plan)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- connect(): which part is missing, or who said no ------------------------------------

def test_no_extension_and_nothing_on_wss_is_agent_not_running() -> None:
    result = run_page({"extension": None, "ws": {"open": "refuse"}})
    error = result["connectError"]
    assert error["kind"] == "AGENT_NOT_RUNNING" and error["isImzaError"]
    assert error["reason"] == "EXTENSION_UNAVAILABLE"  # the reason stays what it was
    assert error["data"]["extension"] is False
    # wss: one try per port of its range (5 by default); ws: not tried without the opt-in
    assert [a["kind"] for a in error["data"]["attempts"]] == [
        "NO_EXTENSION", *["AGENT_NOT_RUNNING"] * 5, None]
    assert len(result["seen"]["sockets"]) == 5  # wss only, its whole range


def test_extension_whose_native_host_is_missing_is_extension_without_agent() -> None:
    result = run_page({"extension": {"open": "no-host"}, "ws": {"open": "refuse"}})
    error = result["connectError"]
    assert error["kind"] == "EXTENSION_WITHOUT_AGENT"
    assert error["reason"] == "AGENT_UNAVAILABLE"
    assert error["data"]["extension"] is True
    assert error["data"]["agentMissing"] is True  # not installed for this browser


def test_extension_whose_agent_does_not_answer_is_extension_without_agent() -> None:
    result = run_page({"extension": {"open": "unreachable"}, "ws": {"open": "refuse"}})
    error = result["connectError"]
    assert error["kind"] == "EXTENSION_WITHOUT_AGENT"
    assert error["data"]["agentMissing"] is False  # installed, not running


def test_only_the_extension_asked_for_and_none_there_is_no_extension() -> None:
    result = run_page({"extension": None, "options": {"transports": ["extension"]}})
    assert result["connectError"]["kind"] == "NO_EXTENSION"
    assert result["seen"]["sockets"] == []


def test_the_agent_refusing_the_site_through_the_extension_is_site_refused() -> None:
    result = run_page({"extension": {"open": "refused"}, "ws": {"open": "refuse"}})
    error = result["connectError"]
    assert error["kind"] == "SITE_REFUSED" and error["reason"] == "PERMISSION_DENIED"


def test_a_wss_close_1008_refused_is_site_refused() -> None:
    # The agent accepts the upgrade of an origin it will not serve and closes at once with
    # 1008 "refused: …" (a page cannot see an HTTP 403: it looks like "nothing there").
    result = run_page({"extension": None, "ws": {
        "open": "opened", "closeOnSend": {"method": "agent.info", "code": 1008,
                                          "reason": "refused: origin is not allowed"}}})
    error = result["connectError"]
    assert error["kind"] == "SITE_REFUSED" and error["reason"] == "PERMISSION_DENIED"
    assert "origin is not allowed" in error["data"]["attempts"][1]["message"]


def test_a_close_1008_without_refused_is_not_taken_for_a_refusal() -> None:
    result = run_page({"extension": None, "ws": {
        "open": "opened", "closeOnSend": {"method": "agent.info", "code": 1008,
                                          "reason": "not admitted"}}})
    assert result["connectError"]["kind"] == "AGENT_NOT_RUNNING"


def test_a_websocket_that_never_opens_is_timed_out() -> None:
    result = run_page({"extension": None, "ws": {"open": "hang"}})
    error = result["connectError"]
    assert error["kind"] == "TIMED_OUT"
    assert error["data"]["attempts"][1]["kind"] == "TIMED_OUT"


def test_an_extension_whose_agent_never_answers_is_timed_out() -> None:
    result = run_page({"extension": {"open": "hang"}, "ws": {"open": "refuse"}})
    assert result["connectError"]["kind"] == "TIMED_OUT"


def test_a_refusal_beats_a_transport_that_was_not_there() -> None:
    result = run_page({"extension": {"open": "unreachable"}, "ws": {
        "open": "opened", "closeOnSend": {"method": "agent.info", "code": 1008,
                                          "reason": "refused: blocked by policy"}}})
    assert result["connectError"]["kind"] == "SITE_REFUSED"


def test_a_connection_that_never_answers_agent_info_is_timed_out() -> None:
    result = run_page({"extension": None, "ws": {"open": "opened", "answers": {}}})
    assert result["connectError"]["kind"] == "TIMED_OUT"


def test_an_agent_error_at_connect_is_passed_through() -> None:
    result = run_page({"extension": None, "ws": {
        "open": "opened", "answers": {"agent.info": _error(4013, "RATE_LIMITED")}}})
    error = result["connectError"]
    assert error["kind"] == "RATE_LIMITED" and error["reason"] == "RATE_LIMITED"


# --- the transport the SDK prefers --------------------------------------------------------

def test_the_extension_is_preferred_when_present() -> None:
    result = run_page({"extension": {"open": "opened", "answers": {"agent.info": INFO}},
                       "ws": {"open": "opened", "answers": {"agent.info": INFO}}})
    assert result["connected"] == "extension"
    assert result["seen"]["sockets"] == []  # wss not even tried


def test_wss_is_used_when_the_extension_cannot_reach_the_agent() -> None:
    result = run_page({"extension": {"open": "no-host"},
                       "ws": {"open": "opened", "answers": {"agent.info": INFO}}})
    assert result["connected"] == "wss"
    assert result["seen"]["sockets"] == ["wss://127.0.0.1:29170/v1"]


def test_wss_is_used_without_an_extension() -> None:
    result = run_page({"extension": None,
                       "ws": {"open": "opened", "answers": {"agent.info": INFO}}})
    assert result["connected"] == "wss"


# --- calls: the agent's answers -----------------------------------------------------------

@pytest.mark.parametrize(("answer", "kind"), [
    (_error(4001, "USER_CANCELLED"), "USER_CANCELLED"),
    (_error(4002, "USER_TIMEOUT"), "TIMED_OUT"),
    (_error(4003, "PERMISSION_DENIED"), "SITE_REFUSED"),
    (_error(4004, "NO_CERTIFICATE"), "NO_CERTIFICATE"),
    (_error(4006, "PIN_LOCKED", unlock="PUK"), "PIN_LOCKED"),
    (_error(4008, "BUSY"), "BUSY"),
    (_error(4013, "RATE_LIMITED"), "RATE_LIMITED"),
    # an agent that sends only the code: the reason (and kind) come from it
    ({"error": {"code": 4001, "message": "cancelled"}}, "USER_CANCELLED"),
])
@pytest.mark.parametrize("transport", ["extension", "wss"])
def test_agent_errors_have_a_kind(transport: str, answer: dict[str, Any], kind: str) -> None:
    answers = {"agent.info": INFO, "auth.login": answer}
    plan: dict[str, Any] = {"call": {"method": "auth.login", "params": {"challenge": "x" * 32}}}
    if transport == "extension":
        plan |= {"extension": {"open": "opened", "answers": answers}}
    else:
        plan |= {"extension": None, "ws": {"open": "opened", "answers": answers}}
    result = run_page(plan)
    assert result["connected"] == transport
    assert result["error"]["kind"] == kind
    assert result["error"]["code"] == answer["error"]["code"]


def test_a_connection_dropped_during_a_call_is_connection_lost() -> None:
    result = run_page({"extension": None, "ws": {
        "open": "opened", "answers": {"agent.info": INFO},
        "closeOnSend": {"method": "sign.hash", "code": 1006, "reason": ""}},
        "call": {"method": "sign.hash", "params": {}}})
    assert result["connected"] == "wss"
    assert result["error"]["kind"] == "CONNECTION_LOST"
    assert result["error"]["reason"] == "AGENT_UNAVAILABLE"


def test_the_extension_losing_the_agent_during_a_call_is_connection_lost() -> None:
    result = run_page({"extension": {"open": "lost-after-open",
                                     "answers": {"agent.info": INFO}},
                       "call": {"method": "sign.hash", "params": {}}})
    assert result["connected"] == "extension"
    assert result["error"]["kind"] == "CONNECTION_LOST"
    assert result["seen"]["extensionMessages"] == ["agent.info", "sign.hash"]


def test_an_extension_that_loses_the_agent_at_connect_is_extension_without_agent() -> None:
    result = run_page({"extension": {"open": "lost-after-open"},
                       "options": {"transports": ["extension"]}})
    # agent.info itself loses the connection: the agent is not there, and not "no extension"
    assert result["connectError"]["kind"] == "EXTENSION_WITHOUT_AGENT"


@pytest.mark.parametrize(("code", "reason", "kind"), [
    (1008, "refused: origin is blocked", "SITE_REFUSED"),
    (4003, "", "SITE_REFUSED"),
    (4013, "too many requests", "RATE_LIMITED"),
])
def test_a_close_with_a_code_during_a_call_says_why(code: int, reason: str,
                                                    kind: str) -> None:
    result = run_page({"extension": None, "ws": {
        "open": "opened", "answers": {"agent.info": INFO},
        "closeOnSend": {"method": "sign.hash", "code": code, "reason": reason}},
        "call": {"method": "sign.hash", "params": {}}})
    assert result["error"]["kind"] == kind


# --- version negotiation (issue 18 §2) ----------------------------------------------------

def _info(version: str = "0.1.0", protocol: Any = 1) -> dict[str, Any]:
    return {"result": {"name": "imza-agent", "version": version, "protocol": protocol}}


@pytest.mark.parametrize("transport", ["extension", "wss"])
def test_an_agent_speaking_an_older_protocol_is_agent_too_old(transport: str) -> None:
    answers = {"agent.info": _info("0.0.9", protocol=0)}
    if transport == "extension":
        plan: dict[str, Any] = {"extension": {"open": "opened", "answers": answers},
                                "ws": {"open": "opened", "answers": {"agent.info": INFO}}}
    else:
        plan = {"extension": None, "ws": {"open": "opened", "answers": answers}}
    result = run_page(plan)
    error = result["connectError"]
    assert error["isImzaError"] and error["kind"] == "AGENT_TOO_OLD"
    assert error["reason"] == "VERSION_MISMATCH"
    assert error["data"]["subject"] == "protocol"
    assert error["data"]["required"] == 1 and error["data"]["found"] == 0
    assert error["data"]["agentVersion"] == "0.0.9" and error["data"]["sdkProtocol"] == 1
    # the connection that answered is closed, and no other transport is tried: the same
    # agent is behind all of them
    assert len(result["seen"]["closes"]) == 1
    assert result["seen"]["sockets"] == ([] if transport == "extension"
                                         else ["wss://127.0.0.1:29170/v1"])


def test_an_agent_speaking_a_newer_protocol_is_page_too_old() -> None:
    result = run_page({"extension": None,
                       "ws": {"open": "opened", "answers": {"agent.info": _info("3.0.0", 2)}}})
    error = result["connectError"]
    assert error["kind"] == "PAGE_TOO_OLD" and error["reason"] == "VERSION_MISMATCH"
    assert (error["data"]["required"], error["data"]["found"]) == (1, 2)
    assert "newer" in error["message"]


def test_an_agent_info_without_a_protocol_is_agent_too_old() -> None:
    result = run_page({"extension": None, "ws": {"open": "opened", "answers": {
        "agent.info": {"result": {"name": "imza-agent", "version": "0.0.1"}}}}})
    error = result["connectError"]
    assert error["kind"] == "AGENT_TOO_OLD" and error["data"]["found"] is None


@pytest.mark.parametrize(("agent", "minimum", "accepted"), [
    ("0.1.0", "0.2.0", False),
    ("0.1.0", "0.1.0", True),
    ("0.1", "0.1.0", True),  # missing parts count as 0
    ("0.10.0", "0.9.1", True),  # numbers, not text
    ("0.9.1", "0.10.0", False),
    ("1.0.0", "0.2.0", True),
    ("0.2.0rc1", "0.2.0", False),  # a pre-release comes before its release
    ("0.2.0-beta.2", "0.2.0", False),
    ("0.2.0+local.7", "0.2.0", True),  # build metadata is not a pre-release
    ("0.2.0.post1", "0.2.0", True),  # nor is a PEP 440 post-release
    ("0.2.0.dev3", "0.2.0", False),  # a development release is
    ("0.2.0", "0.2.0rc1", True),
    ("unknown", "0.1.0", False),  # a version the page cannot read is not enough
])
def test_minimum_agent_version(agent: str, minimum: str, accepted: bool) -> None:
    result = run_page({"extension": None,
                       "ws": {"open": "opened", "answers": {"agent.info": _info(agent)}},
                       "options": {"minimumAgentVersion": minimum}})
    if accepted:
        assert result.get("connected") == "wss", result
        assert result["agent"]["version"] == agent
        return
    error = result["connectError"]
    assert error["kind"] == "AGENT_TOO_OLD" and error["reason"] == "VERSION_MISMATCH"
    assert error["data"]["subject"] == "version"
    assert error["data"]["required"] == minimum and error["data"]["found"] == agent
    assert minimum in error["message"]


def test_an_unreadable_minimum_version_is_the_pages_own_bug() -> None:
    result = run_page({"extension": None,
                       "ws": {"open": "opened", "answers": {"agent.info": INFO}},
                       "options": {"minimumAgentVersion": "latest"}})
    error = result["connectError"]
    assert error["isImzaError"] is False and error["name"] == "TypeError"
    assert result["seen"]["sockets"] == []  # refused before trying anything


@pytest.mark.parametrize("transport", ["extension", "wss"])
@pytest.mark.parametrize("options", [None, {"format": "web-eid:1.0"},
                                     {"format": "imza-auth:1"}])
def test_login_passes_the_format_only_when_the_page_gives_one(
        transport: str, options: dict[str, str] | None) -> None:
    challenge = "A" * 43
    token = {"token": {"format": (options or {}).get("format", "imza-auth:1")}}
    answers = {"agent.info": INFO, "auth.login": {"result": token}}
    plan: dict[str, Any] = {"login": {"challenge": challenge, "options": options}}
    if transport == "extension":
        plan |= {"extension": {"open": "opened", "answers": answers}}
    else:
        plan |= {"extension": None, "ws": {"open": "opened", "answers": answers}}
    result = run_page(plan)
    assert result["connected"] == transport
    (sent,) = [r["params"] for r in result["seen"]["requests"] if r["method"] == "auth.login"]
    # an agent that predates `format` refuses unknown params: never send it unasked
    assert sent == ({"challenge": challenge} if options is None
                    else {"challenge": challenge, "format": options["format"]})
    assert result["value"] == token
