"""Origin rules: exact origins or ``scheme://*.suffix[:port]`` wildcards, and permissions.

A wildcard stands for one or more whole DNS labels in front of the suffix.  Because both
sides are canonical (see ``origin.py``), "whole labels" is a plain ``endswith("." +
suffix)``: ``evile-gov.az`` and ``e-gov.az.evil.example`` can never match ``*.e-gov.az``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from agent.policy.origin import Origin, OriginError, parse_origin


class Permission(StrEnum):
    SELECT = "select"
    SIGN = "sign"
    AUTH = "auth"
    LIST = "list"
    TOKENS = "tokens"


class RuleError(ValueError):
    """A policy rule or permission list is invalid; the message says which and why."""


def parse_permissions(values: object, where: str = "permissions") -> frozenset[Permission]:
    """``values`` comes from a file (TOML or JSON): anything but a list of names is refused,
    so a table such as ``{sign = true}`` does not pass as its keys."""
    if isinstance(values, str):
        raise RuleError(f"{where}: expected a list of permissions, got a string")
    if not isinstance(values, list | tuple | set | frozenset):
        raise RuleError(f"{where}: expected a list of permissions")
    result: set[Permission] = set()
    for value in values:
        try:
            result.add(Permission(value))
        except ValueError:
            known = ", ".join(p.value for p in Permission)
            raise RuleError(f"{where}: unknown permission {value!r} (known: {known})") from None
    return frozenset(result)


@dataclass(frozen=True)
class OriginPattern:
    """An exact origin (``wildcard`` False, ``host`` the full host) or a wildcard
    (``host`` is the suffix after ``*.``)."""

    scheme: str
    host: str
    port: int
    wildcard: bool = False

    def matches(self, origin: Origin) -> bool:
        if origin.scheme != self.scheme or origin.port != self.port:
            return False
        if not self.wildcard:
            return origin.host == self.host
        return not origin.is_ip_literal and origin.host.endswith("." + self.host)

    def serialize(self) -> str:
        exact = Origin(self.scheme, self.host, self.port).serialize()
        return exact.replace("://", "://*.", 1) if self.wildcard else exact

    def __str__(self) -> str:
        return self.serialize()


def parse_pattern(text: object) -> OriginPattern:
    """Parse an exact origin or a ``scheme://*.suffix[:port]`` wildcard."""
    if not isinstance(text, str):
        raise RuleError("origin rule must be a string")
    scheme, sep, rest = text.partition("://")
    if sep and rest.startswith("*"):
        if rest == "*" or rest.startswith("*:"):
            raise RuleError(f"{text!r}: a wildcard over every host is too broad")
        if not rest.startswith("*."):
            raise RuleError(
                f"{text!r}: a wildcard must be a whole leftmost label, like *.example.az")
        try:
            suffix = parse_origin(f"{scheme}://{rest[2:]}")
        except OriginError as exc:
            raise RuleError(f"{text!r}: {exc.reason}") from None
        if suffix.is_ip_literal:
            raise RuleError(f"{text!r}: a wildcard needs a DNS suffix, not an IP address")
        if "." not in suffix.host:
            raise RuleError(f"{text!r}: wildcard over a single-label suffix is too broad")
        return OriginPattern(suffix.scheme, suffix.host, suffix.port, wildcard=True)
    if "*" in text:
        raise RuleError(f"{text!r}: '*' is only allowed as the whole leftmost label")
    try:
        origin = parse_origin(text)
    except OriginError as exc:
        raise RuleError(f"{text!r}: {exc.reason}") from None
    return OriginPattern(origin.scheme, origin.host, origin.port)


@dataclass(frozen=True)
class Rule:
    """One allow (or block) rule and the source that contributed it."""

    pattern: OriginPattern
    permissions: frozenset[Permission]
    source: str  # "default" | "system" — named in errors and in the tray's listing

    def matches(self, origin: Origin) -> bool:
        return self.pattern.matches(origin)
