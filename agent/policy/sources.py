"""The three sources of the allow-list: shipped defaults, the administrator's policy file,
and the user's own grants (see docs/policy.md for the formats)."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from agent.policy.rules import (
    OriginPattern,
    Permission,
    Rule,
    RuleError,
    parse_pattern,
    parse_permissions,
)

SYSTEM_POLICY_ENV = "IMZA_AGENT_SYSTEM_POLICY"


class PolicyError(Exception):
    """A policy file is unreadable or invalid.  The agent refuses to start rather than
    run without an administrator's restrictions."""


@dataclass(frozen=True)
class PolicyFile:
    """One parsed policy file.  The defaults file may only contain ``allow`` rules."""

    allow: tuple[Rule, ...] = ()
    block: tuple[OriginPattern, ...] = ()
    locked: bool = False
    remove_defaults: bool = False
    remove_default: tuple[OriginPattern, ...] = ()
    plain_websocket: bool = True
    path: Path | None = field(default=None, compare=False)


_SYSTEM_KEYS = {"allow", "block", "locked", "remove_defaults", "remove_default",
                "plain_websocket"}
_ALLOW_KEYS = {"origin", "origins", "permissions", "note"}


def parse_policy(text: str, where: str, source: str, only_allow: bool = False) -> PolicyFile:
    """Parse policy TOML; ``where`` names the file in errors, ``source`` tags the rules."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{where}: {exc}") from None
    allowed_keys = {"allow"} if only_allow else _SYSTEM_KEYS
    unknown = sorted(set(data) - allowed_keys)
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {', '.join(unknown)}")
    try:
        allow = tuple(_allow_rules(data.get("allow", []), source))
        if only_allow:
            _check_default_wildcards(allow)
        return PolicyFile(
            allow=allow,
            block=tuple(_patterns(data.get("block", []), "block")),
            locked=_flag(data, "locked", False),
            remove_defaults=_flag(data, "remove_defaults", False),
            remove_default=tuple(_patterns(data.get("remove_default", []), "remove_default")),
            plain_websocket=_flag(data, "plain_websocket", True),
        )
    except RuleError as exc:
        raise PolicyError(f"{where}: {exc}") from None


def load_defaults() -> PolicyFile:
    """The allow rules shipped with the agent (``agent/policy/defaults.toml``)."""
    text = resources.files("agent.policy").joinpath("defaults.toml").read_text("utf-8")
    return parse_policy(text, "built-in defaults.toml", "default", only_allow=True)


def system_policy_path() -> Path:
    override = os.environ.get(SYSTEM_POLICY_ENV)
    if override:
        return Path(override)
    from agent.platform import current

    return current().system_policy_file()


def load_system_policy(path: Path | None = None) -> PolicyFile:
    """The administrator's policy; no file means no restrictions beyond the defaults."""
    path = path or system_policy_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _with_os_policy(PolicyFile(path=path))
    except (OSError, UnicodeDecodeError) as exc:
        detail = getattr(exc, "strerror", None) or str(exc)
        raise PolicyError(f"cannot read {path}: {detail}") from None
    parsed = parse_policy(text, str(path), "system")
    return _with_os_policy(PolicyFile(parsed.allow, parsed.block, parsed.locked,
                                      parsed.remove_defaults, parsed.remove_default,
                                      parsed.plain_websocket, path))


def _with_os_policy(policy: PolicyFile) -> PolicyFile:
    """What the OS's own policy store adds (Windows: Group Policy's registry keys)."""
    from agent.platform import current

    return current().admin_policy(policy)


def _allow_rules(entries: object, source: str) -> list[Rule]:
    if not isinstance(entries, list):
        raise RuleError("allow: expected [[allow]] tables")
    rules: list[Rule] = []
    for index, entry in enumerate(entries):
        where = f"allow[{index}]"
        if not isinstance(entry, dict):
            raise RuleError(f"{where}: expected a table with origin and permissions")
        unknown = sorted(set(entry) - _ALLOW_KEYS)
        if unknown:
            raise RuleError(f"{where}: unknown key(s) {', '.join(unknown)}")
        if ("origin" in entry) == ("origins" in entry):
            raise RuleError(f"{where}: give exactly one of origin or origins")
        texts = [entry["origin"]] if "origin" in entry else entry["origins"]
        if "permissions" not in entry:
            raise RuleError(f"{where}: permissions is required")
        permissions = parse_permissions(entry["permissions"], f"{where}.permissions")
        rules.extend(Rule(p, permissions, source) for p in _patterns(texts, where))
    return rules


def _check_default_wildcards(rules: tuple[Rule, ...]) -> None:
    """A shipped wildcard only ever leads to a consent dialog (``policy.py``), and it may
    not name ``tokens``: every sub-domain of a portal would learn when the user's token
    comes and goes without being asked."""
    for rule in rules:
        if rule.pattern.wildcard and Permission.TOKENS in rule.permissions:
            raise RuleError(f"{rule.pattern}: a wildcard default never grants 'tokens'")


def _patterns(values: object, where: str) -> list[OriginPattern]:
    if not isinstance(values, list):
        raise RuleError(f"{where}: expected a list of origins")
    patterns = []
    for value in values:
        try:
            patterns.append(parse_pattern(value))
        except RuleError as exc:
            raise RuleError(f"{where}: {exc}") from None
    return patterns


def _flag(data: Mapping[str, object], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise RuleError(f"{key}: expected true or false")
    return value
