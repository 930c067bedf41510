"""The administrator's policy from the Windows registry (agent/platform/windows/policy_registry.py),
read through a dictionary standing in for the registry: the key and value names are the
ones the ADMX template writes (tests/test_msi.py holds the template to them)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from agent.platform.windows import policy_registry as pr
from agent.policy.policy import Policy
from agent.policy.rules import Permission, parse_pattern
from agent.policy.sources import PolicyError, PolicyFile, load_defaults

KEY = pr.POLICY_KEY


class FakeRegistry:
    def __init__(self, keys: Mapping[str, Mapping[str, object]]) -> None:
        self.keys = keys  # "HKLM\\Software\\..." → values

    def values(self, hive: str, path: str) -> Mapping[str, object] | None:
        return self.keys.get(f"{hive}\\{path}")


class _NoGrants:
    def get(self, origin: object) -> None:
        return None


def test_no_keys_no_policy() -> None:
    read = pr.read(FakeRegistry({}))
    assert read.empty
    assert pr.apply(PolicyFile(), read) == PolicyFile()


def test_allow_block_and_lock_from_group_policy() -> None:
    keys = {
        f"HKLM\\{KEY}": {"Locked": 1, "PlainWebSocket": 0},
        f"HKLM\\{KEY}\\Allow": {"https://intranet.corp.az": "select, sign,auth",
                                "https://*.e-gov.az": "select sign"},
        f"HKCU\\{KEY}\\Block": {"1": "https://evil.example", "2": "https://*.bad.example"},
    }
    read = pr.read(FakeRegistry(keys))
    assert {(str(r.pattern), r.permissions) for r in read.allow} == {
        ("https://intranet.corp.az", frozenset({Permission.SELECT, Permission.SIGN,
                                                Permission.AUTH})),
        ("https://*.e-gov.az", frozenset({Permission.SELECT, Permission.SIGN}))}
    assert {str(p) for p in read.block} == {"https://evil.example", "https://*.bad.example"}
    merged = pr.apply(PolicyFile(), read)
    assert merged.locked is True and merged.plain_websocket is False
    assert merged.remove_defaults is False  # not set: the file's (default) value
    p = Policy(load_defaults(), merged, _NoGrants())  # type: ignore[arg-type]  # no user
    assert p.connection_decision("https://intranet.corp.az").allowed
    assert not p.connection_decision("https://other.example").allowed  # locked
    assert not p.connection_decision("https://x.bad.example").allowed  # blocked


def test_machine_wins_over_user_and_lists_add_up() -> None:
    keys = {
        f"HKLM\\{KEY}": {"Locked": 0, "TsaUrl": "http://tsa.machine.example/tsr"},
        f"HKCU\\{KEY}": {"Locked": 1, "RemoveDefaults": 1, "TsaUrl": "http://user.example"},
        f"HKLM\\{KEY}\\RemoveDefault": {"1": "https://giris.turkiye.gov.tr"},
        f"HKCU\\{KEY}\\RemoveDefault": {"1": "https://e-gov.az"},
    }
    read = pr.read(FakeRegistry(keys))
    assert read.flags == {"locked": False, "remove_defaults": True}
    assert read.tsa_url == "http://tsa.machine.example/tsr"
    file = PolicyFile(locked=True, remove_default=(parse_pattern("https://www.e-gov.az"),))
    merged = pr.apply(file, read)
    assert merged.locked is False  # the registry wins over the file
    assert {str(p) for p in merged.remove_default} == {
        "https://www.e-gov.az", "https://giris.turkiye.gov.tr", "https://e-gov.az"}


@pytest.mark.parametrize(("keys", "named"), [
    ({f"HKLM\\{KEY}": {"Locked": "1"}}, "HKLM\\Software\\Policies\\imza-agent value 'Locked'"),
    ({f"HKLM\\{KEY}": {"PlainWebSocket": 2}}, "'PlainWebSocket'"),
    ({f"HKCU\\{KEY}\\Allow": {"https://a.example": "sign,teleport"}}, "teleport"),
    ({f"HKCU\\{KEY}\\Allow": {"https://a.example": ""}}, "no permissions"),
    ({f"HKCU\\{KEY}\\Allow": {"https://a.example/x": "sign"}},
     "Allow value 'https://a.example/x'"),
    ({f"HKLM\\{KEY}\\Block": {"1": "https://*"}}, "Block value '1'"),
    ({f"HKLM\\{KEY}\\Block": {"1": 5}}, "expected a string"),
    ({f"HKLM\\{KEY}": {"TsaUrl": "file:///etc/passwd"}}, "'TsaUrl'"),
])
def test_a_bad_value_stops_the_agent_and_is_named(keys: Mapping[str, Mapping[str, object]],
                                                  named: str) -> None:
    with pytest.raises(PolicyError) as caught:
        pr.read(FakeRegistry(keys))
    assert named in str(caught.value)


def test_the_windows_platform_reads_group_policy_for_the_agent() -> None:
    """What the agent does with the registry on Windows: the platform layer adds Group
    Policy's keys to the policy file and imposes its time-stamping service."""
    from typing import Any

    from agent.platform.windows import WindowsPlatform

    keys = {f"HKLM\\{KEY}": {"Locked": 1, "TsaUrl": "http://tsa.machine.example/tsr"},
            f"HKLM\\{KEY}\\Block": {"1": "https://*.bad.example"}}
    unused: Any = None  # trust, identities and TCP tables play no part in policy
    windows = WindowsPlatform(registry=FakeRegistry(keys), crypt32=unused,  # type: ignore[arg-type]
                              identities=unused, tcp_tables=unused, env={},
                              agent_argv=lambda: [])
    policy = windows.admin_policy(PolicyFile())
    assert policy.locked is True
    assert [p for p in policy.block] == [parse_pattern("https://*.bad.example")]
    assert windows.admin_tsa_url() == "http://tsa.machine.example/tsr"
    # No keys: the file's policy unchanged, no service imposed.
    bare = WindowsPlatform(registry=FakeRegistry({}), crypt32=unused,  # type: ignore[arg-type]
                           identities=unused, tcp_tables=unused, env={}, agent_argv=lambda: [])
    assert bare.admin_policy(PolicyFile(locked=False)) == PolicyFile(locked=False)
    assert bare.admin_tsa_url() is None
