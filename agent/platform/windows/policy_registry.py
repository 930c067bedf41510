"""The administrator's policy from the Windows registry: what the Group Policy template
(installer/windows/policy/imza-agent.admx) and the machine MSI write under
``Software\\Policies\\imza-agent``, for the computer (``HKLM``) or the user (``HKCU``).

Both hives are writable by administrators only. A value set for the computer wins over the
same value for the user, which wins over ``policy.toml``; the list keys (``Allow``,
``Block``, ``RemoveDefault``) of both hives and of the file count together, as Chrome's
list policies do. A value of the wrong type or content is a ``PolicyError`` naming it, as
a bad policy file is: the agent does not run without the administrator's restrictions.
tests/test_msi.py holds the template to the names here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from agent.platform.windows.registry import Hive, join
from agent.policy.rules import (
    OriginPattern,
    Permission,
    Rule,
    RuleError,
    parse_pattern,
    parse_permissions,
)
from agent.policy.sources import PolicyError, PolicyFile

POLICY_KEY = "Software\\Policies\\imza-agent"
HIVES: tuple[Hive, ...] = ("HKLM", "HKCU")  # strongest first
FLAGS = {"Locked": "locked", "PlainWebSocket": "plain_websocket",
         "RemoveDefaults": "remove_defaults"}  # DWORD value → PolicyFile field
TSA_URL = "TsaUrl"
ALLOW, BLOCK, REMOVE_DEFAULT = "Allow", "Block", "RemoveDefault"


class PolicyValues(Protocol):
    def values(self, hive: Hive, path: str) -> Mapping[str, object] | None:
        """Every value of the key, name → data (``str`` for REG_SZ, ``int`` for REG_DWORD,
        ``list[str]`` for REG_MULTI_SZ); None when the key does not exist."""


@dataclass(frozen=True)
class RegistryPolicy:
    allow: tuple[Rule, ...] = ()
    block: tuple[OriginPattern, ...] = ()
    remove_default: tuple[OriginPattern, ...] = ()
    flags: Mapping[str, bool] | None = None  # PolicyFile field → value, only those set
    tsa_url: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.allow or self.block or self.remove_default or self.flags
                    or self.tsa_url)


def read(registry: PolicyValues) -> RegistryPolicy:
    allow: list[Rule] = []
    block: list[OriginPattern] = []
    remove_default: list[OriginPattern] = []
    flags: dict[str, bool] = {}
    tsa_url: str | None = None
    for hive in HIVES:
        top = registry.values(hive, POLICY_KEY) or {}
        for name, field in FLAGS.items():
            if name in top and field not in flags:  # HKLM came first: it wins
                flags[field] = _flag(top[name], _where(hive, POLICY_KEY, name))
        if TSA_URL in top and tsa_url is None:
            tsa_url = _url(top[TSA_URL], _where(hive, POLICY_KEY, TSA_URL))
        for name, data in _values(registry, hive, ALLOW).items():
            where = _where(hive, f"{POLICY_KEY}\\{ALLOW}", name)
            permissions = _permissions(data, where)
            allow.append(Rule(_pattern(name, where), permissions, "system"))
        block += [_pattern(_text(d, w), w) for w, d in _listed(registry, hive, BLOCK)]
        remove_default += [_pattern(_text(d, w), w)
                           for w, d in _listed(registry, hive, REMOVE_DEFAULT)]
    return RegistryPolicy(tuple(allow), tuple(block), tuple(remove_default), flags or None,
                          tsa_url)


def apply(file: PolicyFile, registry: RegistryPolicy) -> PolicyFile:
    """The file's policy with the registry's on top (module docstring)."""
    flags = registry.flags or {}
    return replace(file, allow=file.allow + registry.allow, block=file.block + registry.block,
                   remove_default=file.remove_default + registry.remove_default,
                   locked=flags.get("locked", file.locked),
                   plain_websocket=flags.get("plain_websocket", file.plain_websocket),
                   remove_defaults=flags.get("remove_defaults", file.remove_defaults))


def _values(registry: PolicyValues, hive: Hive, sub: str) -> Mapping[str, object]:
    return registry.values(hive, f"{POLICY_KEY}\\{sub}") or {}


def _listed(registry: PolicyValues, hive: Hive, sub: str) -> list[tuple[str, object]]:
    # Group Policy names list entries 1, 2, ...; any name is accepted, in name order.
    found = _values(registry, hive, sub)
    return [(_where(hive, f"{POLICY_KEY}\\{sub}", n), found[n])
            for n in sorted(found, key=lambda n: (len(n), n))]


def _where(hive: Hive, path: str, name: str) -> str:
    return f"{join(hive, path)} value {name!r}"


def _flag(data: object, where: str) -> bool:
    if isinstance(data, int) and not isinstance(data, bool) and data in (0, 1):
        return bool(data)
    raise PolicyError(f"{where}: expected a DWORD 0 or 1")


def _text(data: object, where: str) -> str:
    if not isinstance(data, str):
        raise PolicyError(f"{where}: expected a string (REG_SZ)")
    return data.strip()


def _url(data: object, where: str) -> str:
    text = _text(data, where)
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", text):
        raise PolicyError(f"{where}: expected an http(s) URL")
    return text


def _permissions(data: object, where: str) -> frozenset[Permission]:
    words = [w for w in re.split(r"[\s,;]+", _text(data, where)) if w]
    if not words:
        raise PolicyError(f"{where}: no permissions")
    try:
        return parse_permissions(words, where)
    except RuleError as exc:
        raise PolicyError(str(exc)) from None


def _pattern(text: str, where: str) -> OriginPattern:
    try:
        return parse_pattern(text)
    except RuleError as exc:
        raise PolicyError(f"{where}: {exc}") from None
