"""Rules, policy sources, user grants and the decisions built from them."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from agent.errors import PermissionDenied
from agent.policy import (
    GrantStore,
    OnceGrant,
    Permission,
    Policy,
    PolicyError,
    RuleError,
    parse_origin,
    parse_pattern,
    system_policy_path,
)
from agent.policy.sources import PolicyFile, load_defaults, load_system_policy, parse_policy

SELECT, SIGN, AUTH, LIST, TOKENS = (Permission.SELECT, Permission.SIGN, Permission.AUTH,
                                    Permission.LIST, Permission.TOKENS)
NO_DEV: list[str] = []


# --- rules -----------------------------------------------------------------------------

@pytest.mark.parametrize(("pattern", "origin", "expected"), [
    ("https://*.e-gov.az", "https://www.e-gov.az", True),
    ("https://*.e-gov.az", "https://a.b.e-gov.az", True),
    ("https://*.e-gov.az", "https://WWW.E-GOV.AZ:443", True),
    ("https://*.e-gov.az", "https://e-gov.az", False),
    ("https://*.e-gov.az", "https://evile-gov.az", False),
    ("https://*.e-gov.az", "https://e-gov.az.evil.example", False),
    ("https://*.e-gov.az", "https://www.e-gov.az.evil.example", False),
    ("https://*.e-gov.az", "https://xe-gov.az", False),
    ("https://*.e-gov.az", "http://x.e-gov.az", False),
    ("https://*.e-gov.az", "https://x.e-gov.az:8443", False),
    ("https://*.e-gov.az:8443", "https://x.e-gov.az:8443", True),
    ("https://*.e-gov.az:8443", "https://x.e-gov.az", False),
    ("https://*.bücher.de", "https://shop.xn--bcher-kva.de", True),
    ("https://*.xn--bcher-kva.de", "https://shop.bücher.de", True),
    ("https://*.bücher.de", "https://shop.bucher.de", False),
    ("https://e-gov.az", "https://e-gov.az", True),
    ("https://e-gov.az", "https://www.e-gov.az", False),
    ("https://e-gov.az:443", "https://e-gov.az", True),
    ("https://e-gov.az", "https://e-gov.az:8443", False),
    ("http://localhost:8000", "http://localhost:8000", True),
    ("https://[::1]:8443", "https://[0::1]:8443", True),
])
def test_pattern_matching(pattern: str, origin: str, expected: bool) -> None:
    assert parse_pattern(pattern).matches(parse_origin(origin)) is expected


@pytest.mark.parametrize(("text", "serialized"), [
    ("https://*.e-gov.az", "https://*.e-gov.az"),
    ("HTTPS://*.E-GOV.AZ:443", "https://*.e-gov.az"),
    ("https://*.e-gov.az:8443", "https://*.e-gov.az:8443"),
    ("https://*.bücher.de", "https://*.xn--bcher-kva.de"),
    ("https://E-GOV.az", "https://e-gov.az"),
])
def test_pattern_serialization(text: str, serialized: str) -> None:
    assert parse_pattern(text).serialize() == serialized


@pytest.mark.parametrize(("text", "fragment"), [
    ("https://*", "too broad"),
    ("https://*:443", "too broad"),
    ("https://*.az", "single-label"),
    ("https://*.localhost", "single-label"),
    ("https://*.127.0.0.1", "IP"),
    ("https://*e-gov.az", "whole leftmost label"),
    ("https://a.*.e-gov.az", "leftmost"),
    ("https://*.*.e-gov.az", "label"),
    ("*", "leftmost"),
    ("ftp://*.e-gov.az", "scheme"),
    ("https://*.e-gov.az/", "path"),
    ("null", "null"),
    ("https://e-gov.az/", "path"),
    # A trailing dot is another origin in the browser: a rule is never folded onto it.
    ("https://*.E-Gov.AZ.", "trailing dot"),
    ("https://e-gov.az.", "trailing dot"),
])
def test_bad_patterns(text: str, fragment: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_pattern(text)
    assert fragment in str(caught.value)


# --- sources ---------------------------------------------------------------------------

def test_shipped_defaults_are_valid_and_never_grant_list() -> None:
    defaults = load_defaults()
    served = {str(rule.pattern) for rule in defaults.allow}
    assert served == {"https://e-gov.az", "https://www.e-gov.az", "https://turkiye.gov.tr",
                      "https://www.turkiye.gov.tr", "https://giris.turkiye.gov.tr"}
    assert all(LIST not in rule.permissions for rule in defaults.allow)
    assert all(rule.source == "default" for rule in defaults.allow)


def test_shipped_defaults_are_exact_origins() -> None:
    """Issue 11 §12: no wildcard among the shipped portals."""
    assert not any(rule.pattern.wildcard for rule in load_defaults().allow)


@pytest.mark.parametrize("permissions", ['["tokens"]', '["select", "sign", "tokens"]'])
def test_wildcard_default_never_grants_tokens(permissions: str) -> None:
    text = f'[[allow]]\norigins = ["https://*.e-gov.az"]\npermissions = {permissions}\n'
    with pytest.raises(PolicyError, match="never grants 'tokens'"):
        parse_policy(text, "defaults.toml", "default", only_allow=True)
    # The administrator's own wildcard may: that is the administrator's call.
    assert parse_policy(text, "policy.toml", "system").allow[0].permissions >= {TOKENS}


def test_defaults_file_may_only_allow() -> None:
    with pytest.raises(PolicyError, match="unknown key"):
        parse_policy("locked = true", "x", "default", only_allow=True)


def test_system_policy_full_example(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("""
locked = true
remove_defaults = true
plain_websocket = false
remove_default = ["https://*.turkiye.gov.tr"]
block = ["https://*.evil.example", "https://bad.gov.az"]

[[allow]]
origin = "https://intranet.corp.az"
permissions = ["select", "sign", "list"]
note = "HR signing"

[[allow]]
origins = ["https://*.e-gov.az", "https://e-gov.az"]
permissions = ["select", "sign"]
""", encoding="utf-8")
    policy = load_system_policy(path)
    assert policy.locked and policy.remove_defaults and not policy.plain_websocket
    assert [str(p) for p in policy.block] == ["https://*.evil.example", "https://bad.gov.az"]
    assert [str(r.pattern) for r in policy.allow] == [
        "https://intranet.corp.az", "https://*.e-gov.az", "https://e-gov.az"]
    assert policy.allow[0].permissions == {SELECT, SIGN, LIST}
    assert all(rule.source == "system" for rule in policy.allow)
    assert policy.path == path


@pytest.mark.parametrize(("text", "fragment"), [
    ("locked = 1", "locked: expected true or false"),
    ("lokced = true", "unknown key(s) lokced"),
    ("block = \"https://a.az\"", "expected a list"),
    ("block = [\"https://*\"]", "too broad"),
    ("[[allow]]\norigin = \"https://a.az\"", "permissions is required"),
    ("[[allow]]\norigin = \"https://a.az\"\npermissions = [\"write\"]", "unknown permission"),
    ("[[allow]]\norigin = \"https://a.az\"\npermissions = \"sign\"", "got a string"),
    # Not a list: refused as a policy error, neither a crash nor a table read as its keys.
    ("[[allow]]\norigin = \"https://a.az\"\npermissions = 5", "expected a list of perm"),
    ("[[allow]]\norigin = \"https://a.az\"\npermissions = {sign = true}",
     "expected a list of perm"),
    ("[[allow]]\npermissions = [\"sign\"]", "exactly one of origin or origins"),
    ("[[allow]]\norigin = \"https://*.az\"\npermissions = [\"sign\"]", "single-label"),
    ("[[allow]]\norigin = \"https://a.az\"\npermissions = []\nextra = 1", "unknown key"),
    ("locked = ", "policy.toml"),
])
def test_bad_system_policy_refuses_to_load(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_system_policy(path)
    assert fragment in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_system_policy_is_empty(tmp_path: Path) -> None:
    policy = load_system_policy(tmp_path / "absent.toml")
    assert policy == PolicyFile()


def test_system_policy_path_env_override(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    monkeypatch.setenv("IMZA_AGENT_SYSTEM_POLICY", str(tmp_path / "p.toml"))
    assert system_policy_path() == tmp_path / "p.toml"
    monkeypatch.delenv("IMZA_AGENT_SYSTEM_POLICY")
    expected = {"linux": "/etc/imza-agent/policy.toml",
                "darwin": "/Library/Application Support/imza-agent/policy.toml"}
    if sys.platform in expected:
        assert str(system_policy_path()) == expected[sys.platform]
    else:
        assert system_policy_path().parts[-2:] == ("imza-agent", "policy.toml")


# --- helpers for policy decisions -------------------------------------------------------

def make_policy(tmp_path: Path, system_toml: str = "", remove_defaults: bool = False) -> Policy:
    path = tmp_path / "policy.toml"
    path.write_text(system_toml, encoding="utf-8")
    return Policy.load(system_policy=path, grants_file=tmp_path / "grants.json",
                       remove_defaults=remove_defaults)


INTRANET = """
[[allow]]
origin = "https://intranet.corp.az"
permissions = ["select", "sign", "list"]
"""


# --- connection decisions ---------------------------------------------------------------

@pytest.mark.parametrize(("origin", "allowed", "reason"), [
    (None, False, "missing"),
    ("", False, "missing"),
    ("null", False, "null"),
    ("https://a.gov.az/", False, "path"),
    ("http://portal.test", False, "not an https origin"),
    ("http://localhost:8000", True, "allowed"),
    ("http://LOCALHOST:8000", True, "allowed"),
    ("http://localhost:8001", False, "not an https origin"),
    ("https://unknown.example", True, "allowed"),
    ("https://www.e-gov.az", True, "allowed"),
    ("https://x.evil.example", False, "blocked"),
])
def test_connection_decision(tmp_path: Path, origin: str | None, allowed: bool,
                             reason: str) -> None:
    policy = make_policy(tmp_path, 'block = ["https://*.evil.example"]')
    decision = policy.connection_decision(origin, ["http://localhost:8000", "not an origin"])
    assert decision.allowed is allowed
    assert reason in decision.reason
    if origin and allowed:
        assert decision.origin == parse_origin(origin)


def test_locked_policy_refuses_unlisted_origins_at_connection(tmp_path: Path) -> None:
    policy = make_policy(tmp_path, "locked = true\n" + INTRANET)
    assert policy.connection_decision("https://intranet.corp.az", NO_DEV).allowed
    assert policy.connection_decision("https://www.e-gov.az", NO_DEV).allowed  # defaults kept
    refused = policy.connection_decision("https://unknown.example", NO_DEV)
    assert not refused.allowed and "allow-list" in refused.reason
    dev = policy.connection_decision("http://localhost:8000", ["http://localhost:8000"])
    assert not dev.allowed


def test_locked_policy_ignores_user_grants(tmp_path: Path) -> None:
    open_policy = make_policy(tmp_path)
    open_policy.record_consent("https://portal.example", [SIGN, SELECT], "always")
    locked = make_policy(tmp_path, "locked = true\n" + INTRANET)
    assert locked.grants.get(parse_origin("https://portal.example")) is not None
    assert not locked.connection_decision("https://portal.example", NO_DEV).allowed
    assert locked.permissions("https://portal.example") == frozenset()
    assert locked.consent_state("https://portal.example", SIGN) == "denied"
    assert not locked.has_any_grant("https://portal.example")


def test_locked_policy_never_asks(tmp_path: Path) -> None:
    policy = make_policy(tmp_path, "locked = true\n" + INTRANET)
    assert policy.consent_state("https://intranet.corp.az", SIGN) == "granted"
    assert policy.consent_state("https://intranet.corp.az", AUTH) == "denied"
    with pytest.raises(PermissionDenied):
        policy.record_consent("https://intranet.corp.az", [AUTH], "once")


def test_remove_defaults_with_lock_gives_exact_list(tmp_path: Path) -> None:
    policy = make_policy(tmp_path, "locked = true\nremove_defaults = true\n" + INTRANET)
    assert not policy.connection_decision("https://www.e-gov.az", NO_DEV).allowed
    assert policy.connection_decision("https://intranet.corp.az", NO_DEV).allowed


# --- permissions and precedence ---------------------------------------------------------

def test_defaults_grant_without_asking(tmp_path: Path) -> None:
    policy = make_policy(tmp_path)
    assert policy.permissions("https://www.e-gov.az") == {SELECT, SIGN, AUTH, TOKENS}
    assert policy.permissions("https://e-gov.az") == {SELECT, SIGN, AUTH, TOKENS}
    assert policy.permissions("https://giris.turkiye.gov.tr") == {SELECT, SIGN, AUTH, TOKENS}
    assert policy.permissions("https://evile-gov.az") == frozenset()
    assert policy.permissions("https://e-gov.az.evil.example") == frozenset()
    assert policy.permissions("http://www.e-gov.az") == frozenset()
    assert policy.consent_state("https://www.e-gov.az", SIGN) == "granted"


@pytest.mark.parametrize("toml", ["remove_defaults = true", ""])
def test_defaults_removable(tmp_path: Path, toml: str) -> None:
    policy = make_policy(tmp_path, toml, remove_defaults=(toml == ""))
    assert policy.permissions("https://www.e-gov.az") == frozenset()
    assert policy.consent_state("https://www.e-gov.az", SIGN) == "ask"


def test_single_default_removable(tmp_path: Path) -> None:
    policy = make_policy(tmp_path, 'remove_default = ["https://giris.turkiye.gov.tr"]')
    assert policy.permissions("https://giris.turkiye.gov.tr") == frozenset()
    assert policy.permissions("https://turkiye.gov.tr") == {SELECT, SIGN, AUTH, TOKENS}
    assert policy.permissions("https://www.e-gov.az") == {SELECT, SIGN, AUTH, TOKENS}


def test_block_beats_every_allow(tmp_path: Path) -> None:
    policy = make_policy(tmp_path, """
block = ["https://*.e-gov.az", "https://portal.example"]
[[allow]]
origin = "https://pay.e-gov.az"
permissions = ["select", "sign", "list"]
""")
    policy.grants.grant(parse_origin("https://portal.example"), [SIGN])
    for origin in ("https://pay.e-gov.az", "https://www.e-gov.az", "https://portal.example"):
        assert policy.permissions(origin) == frozenset()
        assert not policy.has_any_grant(origin)
        assert policy.consent_state(origin, SIGN) == "denied"
        assert not policy.connection_decision(origin, NO_DEV).allowed
    assert policy.permissions("https://e-gov.az") == {SELECT, SIGN, AUTH, TOKENS}
    with pytest.raises(PermissionDenied):
        policy.record_consent("https://portal.example", [SIGN], "always")


def test_rules_union(tmp_path: Path) -> None:
    policy = make_policy(tmp_path, """
[[allow]]
origin = "https://www.e-gov.az"
permissions = ["list"]
""")
    assert policy.permissions("https://www.e-gov.az") == {SELECT, SIGN, AUTH, TOKENS, LIST}
    assert policy.permissions("https://e-gov.az") == {SELECT, SIGN, AUTH, TOKENS}


@pytest.mark.parametrize("origin", ["https://portal.e-gov.az", "https://login.e-gov.az",
                                    "https://a.b.e-gov.az", "https://x.turkiye.gov.tr"])
def test_sub_domains_of_default_portals_are_asked(tmp_path: Path, origin: str) -> None:
    """Issue 11 §12: a sub-domain of a default portal (any of which a hostile page may sit
    on) is granted nothing silently, and never ``tokens``."""
    policy = make_policy(tmp_path)
    assert policy.permissions(origin) == frozenset()
    assert not policy.has_any_grant(origin)
    for permission in (SELECT, SIGN, AUTH, TOKENS):
        assert policy.consent_state(origin, permission) == "ask"
    assert policy.connection_decision(origin, NO_DEV).allowed


def _with_defaults(tmp_path: Path, defaults_toml: str, system_toml: str = "") -> Policy:
    defaults = parse_policy(defaults_toml, "defaults.toml", "default", only_allow=True)
    system = parse_policy(system_toml, "policy.toml", "system")
    return Policy(defaults, system, GrantStore(tmp_path / "grants.json"))


WILDCARD_DEFAULT = """
[[allow]]
origins = ["https://e-gov.az", "https://*.e-gov.az"]
permissions = ["select", "sign", "auth"]
"""


def test_wildcard_default_asks_once_instead_of_granting(tmp_path: Path) -> None:
    """Issue 11 §12: should a wildcard come back into the defaults, an origin it matches
    gets the consent dialog, and the user's "allow always" is what is remembered."""
    policy = _with_defaults(tmp_path, WILDCARD_DEFAULT)
    assert policy.consent_state("https://e-gov.az", SIGN) == "granted"  # the exact one
    for permission in (SELECT, SIGN, AUTH, TOKENS):
        assert policy.consent_state("https://pay.e-gov.az", permission) == "ask"
    assert not policy.has_any_grant("https://pay.e-gov.az")
    policy.record_consent("https://pay.e-gov.az", [SELECT, SIGN], "always")
    again = _with_defaults(tmp_path, WILDCARD_DEFAULT)
    assert again.consent_state("https://pay.e-gov.az", SIGN) == "granted"  # asked once
    assert again.consent_state("https://other.e-gov.az", SIGN) == "ask"


def test_wildcard_default_does_not_open_a_locked_policy(tmp_path: Path) -> None:
    policy = _with_defaults(tmp_path, WILDCARD_DEFAULT, "locked = true")
    assert policy.connection_decision("https://e-gov.az", NO_DEV).allowed
    assert not policy.connection_decision("https://pay.e-gov.az", NO_DEV).allowed


def test_administrators_wildcard_still_grants(tmp_path: Path) -> None:
    policy = make_policy(tmp_path, """
[[allow]]
origins = ["https://*.corp.az"]
permissions = ["select", "sign", "tokens"]
""")
    assert policy.permissions("https://hr.corp.az") == {SELECT, SIGN, TOKENS}


def test_list_only_from_rules(tmp_path: Path) -> None:
    policy = make_policy(tmp_path, INTRANET)
    assert policy.consent_state("https://intranet.corp.az", LIST) == "granted"
    assert policy.consent_state("https://www.e-gov.az", LIST) == "denied"
    assert policy.consent_state("https://portal.example", LIST) == "denied"
    with pytest.raises(PermissionDenied):
        policy.record_consent("https://portal.example", [LIST], "always")
    with pytest.raises(PermissionDenied):
        policy.record_consent("https://portal.example", [LIST, SIGN], "once")
    with pytest.raises(ValueError, match="list"):
        policy.grants.grant(parse_origin("https://portal.example"), [LIST])


def test_unknown_origin_is_asked(tmp_path: Path) -> None:
    policy = make_policy(tmp_path)
    for permission in (SELECT, SIGN, AUTH, TOKENS):
        assert policy.consent_state("https://portal.example", permission) == "ask"
    assert not policy.has_any_grant("https://portal.example")


# --- consent answers --------------------------------------------------------------------

def test_allow_always_persists(tmp_path: Path) -> None:
    policy = make_policy(tmp_path)
    assert policy.record_consent("https://portal.example", [SIGN, SELECT], "always") is None
    assert policy.consent_state("https://portal.example", SIGN) == "granted"
    assert policy.consent_state("https://portal.example", AUTH) == "ask"
    reloaded = make_policy(tmp_path)
    assert reloaded.permissions("https://portal.example") == {SIGN, SELECT}
    assert reloaded.has_any_grant("https://portal.example")
    assert reloaded.permissions("https://www.portal.example") == frozenset()


def test_allow_once_is_not_persisted(tmp_path: Path) -> None:
    policy = make_policy(tmp_path)
    once = policy.record_consent("https://portal.example", [SIGN], "once")
    assert once == OnceGrant(parse_origin("https://portal.example"), frozenset({SIGN}))
    assert policy.consent_state("https://portal.example", SIGN) == "ask"
    assert policy.consent_state("https://portal.example", SIGN, once=[once]) == "granted"
    assert policy.consent_state("https://portal.example", AUTH, once=[once]) == "ask"
    assert policy.consent_state("https://other.example", SIGN, once=[once]) == "ask"
    assert not (tmp_path / "grants.json").exists()


def test_denial_is_remembered_and_beats_grants(tmp_path: Path) -> None:
    policy = make_policy(tmp_path)
    policy.record_consent("https://portal.example", [SIGN, SELECT], "always")
    policy.record_consent("https://portal.example", [SIGN], "deny")
    reloaded = make_policy(tmp_path)
    assert reloaded.consent_state("https://portal.example", SIGN) == "denied"
    assert reloaded.consent_state("https://portal.example", SELECT) == "granted"
    once = OnceGrant(parse_origin("https://portal.example"), frozenset({SIGN}))
    assert reloaded.consent_state("https://portal.example", SIGN, once=[once]) == "denied"
    with pytest.raises(PermissionDenied):
        reloaded.record_consent("https://portal.example", [SIGN], "once")
    # A denial also overrides a default rule (the user refused it once already).
    reloaded.record_consent("https://www.e-gov.az", [AUTH], "deny")
    assert reloaded.consent_state("https://www.e-gov.az", AUTH) == "denied"
    assert AUTH not in reloaded.permissions("https://www.e-gov.az")


def test_revoke_forgets_grants_and_denials(tmp_path: Path) -> None:
    policy = make_policy(tmp_path)
    policy.record_consent("https://portal.example", [SELECT], "always")
    policy.record_consent("https://portal.example", [SIGN], "deny")
    policy.record_consent("https://b.example", [SIGN], "always")
    assert [str(g.origin) for g in policy.user_grants()] == [
        "https://b.example", "https://portal.example"]
    assert policy.revoke("https://PORTAL.example:443") is True
    assert policy.revoke("https://portal.example") is False
    reloaded = make_policy(tmp_path)
    assert reloaded.consent_state("https://portal.example", SIGN) == "ask"
    assert reloaded.consent_state("https://portal.example", SELECT) == "ask"
    assert [str(g.origin) for g in reloaded.user_grants()] == ["https://b.example"]


# --- "block this site" -----------------------------------------------------------------

def test_block_origin_refuses_it_from_then_on(tmp_path: Path) -> None:
    policy = make_policy(tmp_path)
    policy.record_consent("https://portal.example", [SIGN, SELECT], "always")
    policy.block_origin("https://PORTAL.example:443")
    for current in (policy, make_policy(tmp_path)):  # kept across restarts
        decision = current.connection_decision("https://portal.example", NO_DEV)
        assert not decision.allowed and decision.reason == "blocked by the user"
        assert current.is_blocked_by_user("https://portal.example")
        assert current.permissions("https://portal.example") == frozenset()
        assert not current.has_any_grant("https://portal.example")
        for permission in Permission:
            assert current.consent_state("https://portal.example", permission) == "denied"
        once = OnceGrant(parse_origin("https://portal.example"), frozenset({SIGN}))
        assert current.consent_state("https://portal.example", SIGN, once=[once]) == "denied"
        with pytest.raises(PermissionDenied):
            current.record_consent("https://portal.example", [SIGN], "once")
    # Exactly that origin: neither its sub-domains nor its other ports.
    assert policy.connection_decision("https://www.portal.example", NO_DEV).allowed
    assert policy.connection_decision("https://portal.example:8443", NO_DEV).allowed
    [entry] = json.loads((tmp_path / "grants.json").read_text(encoding="utf-8"))["grants"]
    assert entry["blocked"] is True and entry["permissions"] == []


def test_block_beats_a_default_portal(tmp_path: Path) -> None:
    policy = make_policy(tmp_path)
    policy.block_origin("https://www.e-gov.az")
    assert not policy.connection_decision("https://www.e-gov.az", NO_DEV).allowed
    assert policy.consent_state("https://www.e-gov.az", TOKENS) == "denied"
    assert policy.permissions("https://e-gov.az") == {SELECT, SIGN, AUTH, TOKENS}


def test_block_answer_through_record_consent(tmp_path: Path) -> None:
    policy = make_policy(tmp_path)
    assert policy.record_consent("https://portal.example", [SIGN], "block") is None
    assert not policy.connection_decision("https://portal.example", NO_DEV).allowed


def test_revoke_lifts_a_block(tmp_path: Path) -> None:
    policy = make_policy(tmp_path)
    policy.block_origin("https://portal.example")
    assert [(str(g.origin), g.blocked) for g in policy.user_grants()] == [
        ("https://portal.example", True)]
    assert policy.revoke("https://portal.example") is True
    reloaded = make_policy(tmp_path)
    assert reloaded.connection_decision("https://portal.example", NO_DEV).allowed
    assert reloaded.consent_state("https://portal.example", SIGN) == "ask"


def test_block_origin_refuses_a_malformed_origin(tmp_path: Path) -> None:
    policy = make_policy(tmp_path)
    with pytest.raises(ValueError):
        policy.block_origin("https://portal.example/")
    assert not (tmp_path / "grants.json").exists()


def test_bad_answer_rejected(tmp_path: Path) -> None:
    policy = make_policy(tmp_path)
    with pytest.raises(ValueError, match="answer"):
        policy.record_consent("https://portal.example", [SIGN], "sure")  # type: ignore[arg-type]


def test_invariant_permissions_match_consent(tmp_path: Path) -> None:
    policy = make_policy(tmp_path, 'block = ["https://bad.example"]\n' + INTRANET)
    policy.record_consent("https://portal.example", [SIGN], "always")
    policy.record_consent("https://portal.example", [AUTH], "deny")
    policy.record_consent("https://shut.example", [SIGN], "always")
    policy.block_origin("https://shut.example")
    for origin in ("https://portal.example", "https://intranet.corp.az", "https://bad.example",
                   "https://www.e-gov.az", "https://nobody.example", "https://shut.example",
                   "https://sub.e-gov.az"):
        granted = policy.permissions(origin)
        for permission in Permission:
            state = policy.consent_state(origin, permission)
            assert (state == "granted") == (permission in granted)


# --- the grants file --------------------------------------------------------------------

@pytest.mark.posix
def test_grants_file_format_and_mode(tmp_path: Path) -> None:
    store = GrantStore(tmp_path / "grants.json")
    entry = store.grant(parse_origin("https://bücher.de"), [SIGN, SELECT])
    store.deny(parse_origin("https://bücher.de"), [AUTH])
    data = json.loads((tmp_path / "grants.json").read_text(encoding="utf-8"))
    assert data["version"] == 1
    [stored] = data["grants"]
    assert stored["origin"] == "https://xn--bcher-kva.de"
    assert stored["permissions"] == ["select", "sign"]
    assert stored["denied"] == ["auth"]
    assert stored["granted_at"].endswith("Z") and stored["granted_at"][:2] == "20"
    assert entry.granted_at[:4] == stored["granted_at"][:4]
    if os.name == "posix":
        assert stat.S_IMODE((tmp_path / "grants.json").stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grants.json"]  # no temp left


@pytest.mark.posix
def test_grants_file_mode_survives_loose_umask(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        GrantStore(tmp_path / "grants.json").grant(parse_origin("https://a.example"), [SIGN])
    finally:
        os.umask(old)
    if os.name == "posix":
        assert stat.S_IMODE((tmp_path / "grants.json").stat().st_mode) == 0o600


def test_grant_then_deny_moves_permission(tmp_path: Path) -> None:
    store = GrantStore(tmp_path / "grants.json")
    origin = parse_origin("https://a.example")
    store.deny(origin, [SIGN])
    entry = store.grant(origin, [SIGN])
    assert entry.permissions == {SIGN} and entry.denied == frozenset()
    entry = store.deny(origin, [SIGN])
    assert entry.permissions == frozenset() and entry.denied == {SIGN}


def test_default_location_is_user_data_dir(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.setenv("IMZA_AGENT_HOME", str(tmp_path / "home"))
    store = GrantStore()
    assert store.path == tmp_path / "home" / "grants.json"
    store.grant(parse_origin("https://a.example"), [SIGN])
    assert (tmp_path / "home" / "grants.json").is_file()


def test_damaged_grants_file_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "grants.json"
    path.write_text("{not json", encoding="utf-8")
    store = GrantStore(path)
    assert store.all() == []
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("grants.json.corrupt-")]
    assert len(aside) == 1 and aside[0].read_text(encoding="utf-8") == "{not json"
    assert not path.exists()


def test_hand_edited_entries_are_sanitised(tmp_path: Path) -> None:
    path = tmp_path / "grants.json"
    path.write_text(json.dumps({"version": 1, "grants": [
        {"origin": "https://a.example", "permissions": ["sign", "list"], "denied": [],
         "granted_at": "2024-01-01T00:00:00Z"},
        {"origin": "https://b.example/", "permissions": ["sign"]},
        {"origin": "https://c.example", "permissions": ["teleport"]},
        {"origin": "https://d.example", "permissions": ["sign"], "denied": ["sign"]},
        {"origin": "https://e.example", "permissions": {"sign": True}},  # not a list
        {"origin": "https://f.example", "permissions": ["sign"], "blocked": "yes"},
        {"origin": "https://g.example", "permissions": ["sign"], "blocked": True},
        "junk",
    ]}), encoding="utf-8")
    store = GrantStore(path)
    assert [str(g.origin) for g in store.all()] == ["https://a.example", "https://d.example",
                                                    "https://g.example"]
    g = store.get(parse_origin("https://g.example"))
    assert g is not None and g.blocked and g.permissions == frozenset()
    a = store.get(parse_origin("https://a.example"))
    assert a is not None and a.permissions == {SIGN}
    d = store.get(parse_origin("https://d.example"))
    assert d is not None and d.permissions == frozenset() and d.denied == {SIGN}
