"""Policy decisions: who may connect, which permissions an origin has, when to ask.

Precedence, strongest first: an administrator's block and the user's ("block this site");
the lock (only allow-listed origins, no user grants, no dialogs); the user's remembered
denial; allow rules (defaults and the administrator's); the user's grants ("always"
stored, "once" on the connection); ask.  ``list`` is never obtained by asking: only a rule
can grant it.

The shipped defaults name exact origins.  A wildcard among them (``https://*.e-gov.az``)
grants nothing silently: an origin it matches gets the consent dialog, whose "allow
always" is remembered, so the user is asked once; and the defaults loader refuses a
wildcard default that would grant ``tokens``.  An administrator's wildcard is the
administrator's decision and grants what it says.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from agent.errors import PermissionDenied
from agent.policy.grants import GrantStore, UserGrant
from agent.policy.origin import Origin, OriginError, parse_origin
from agent.policy.rules import Permission, Rule
from agent.policy.sources import PolicyFile, load_defaults, load_system_policy

log = logging.getLogger(__name__)

ConsentState = Literal["granted", "denied", "ask"]
ConsentAnswer = Literal["once", "always", "deny", "block"]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # short, for logs and the 403 body; never contains anything secret
    origin: Origin | None


@dataclass(frozen=True)
class OnceGrant:
    """"Allow once": valid for the connection that asked, never stored.  The connection
    keeps these and passes them back to ``consent_state(..., once=...)``."""

    origin: Origin
    permissions: frozenset[Permission]


class Policy:
    def __init__(self, defaults: PolicyFile, system: PolicyFile, grants: GrantStore,
                 remove_defaults: bool = False) -> None:
        self.system = system
        self.grants = grants
        kept = () if (remove_defaults or system.remove_defaults) else tuple(
            rule for rule in defaults.allow if rule.pattern not in system.remove_default)
        # A wildcard default is a hint, not a grant (module docstring): it is kept apart,
        # so no permission, allow-list entry or connection limit follows from it.
        self.ask_rules: tuple[Rule, ...] = tuple(r for r in kept if r.pattern.wildcard)
        self.allow_rules: tuple[Rule, ...] = tuple(
            r for r in kept if not r.pattern.wildcard) + system.allow

    @classmethod
    def load(cls, *, system_policy: Path | None = None, grants_file: Path | None = None,
             remove_defaults: bool = False) -> Policy:
        """Build from the installed sources; raises ``PolicyError`` on a bad policy file."""
        return cls(load_defaults(), load_system_policy(system_policy),
                   GrantStore(grants_file), remove_defaults)

    @property
    def locked(self) -> bool:
        return self.system.locked

    @property
    def plain_websocket_allowed(self) -> bool:
        return self.system.plain_websocket

    # --- handshake ------------------------------------------------------------------------

    def connection_decision(self, origin_text: str | None, dev_origins: Iterable[str] = ()
                            ) -> Decision:
        try:
            origin = parse_origin(origin_text)
        except OriginError as exc:
            return Decision(False, f"bad origin: {exc.reason}", None)
        if not origin.is_https and origin not in _parse_dev_origins(dev_origins):
            return Decision(False, "not an https origin", origin)
        if self.is_blocked(origin):
            return Decision(False, "blocked by policy", origin)
        if self.is_blocked_by_user(origin):
            return Decision(False, "blocked by the user", origin)
        if self.locked and not self.is_allow_listed(origin):
            return Decision(False, "not on the administrator's allow-list", origin)
        return Decision(True, "allowed", origin)

    # --- permissions ----------------------------------------------------------------------

    def is_blocked(self, origin: Origin | str) -> bool:
        """Blocked by the administrator's policy."""
        origin = _as_origin(origin)
        return any(pattern.matches(origin) for pattern in self.system.block)

    def is_blocked_by_user(self, origin: Origin | str) -> bool:
        """The user chose "block this site" for exactly this origin."""
        user = self.grants.get(_as_origin(origin))
        return user is not None and user.blocked

    def is_allow_listed(self, origin: Origin | str) -> bool:
        origin = _as_origin(origin)
        return any(rule.matches(origin) for rule in self.allow_rules)

    def rule_permissions(self, origin: Origin | str) -> frozenset[Permission]:
        """What the defaults and the administrator grant, ignoring the user."""
        origin = _as_origin(origin)
        if self.is_blocked(origin):
            return frozenset()
        granted: set[Permission] = set()
        for rule in self.allow_rules:
            if rule.matches(origin):
                granted |= rule.permissions
        return frozenset(granted)

    def permissions(self, origin: Origin | str) -> frozenset[Permission]:
        """Everything granted without asking.  Invariant: ``p in permissions(o)`` exactly
        when ``consent_state(o, p) == "granted"`` (no once-grants)."""
        origin = _as_origin(origin)
        if self.is_blocked(origin) or (self.locked and not self.is_allow_listed(origin)):
            return frozenset()
        user = self.grants.get(origin)
        if user is not None and user.blocked:
            return frozenset()
        granted = set(self.rule_permissions(origin))
        if user is not None:
            if not self.locked:
                granted |= user.permissions - {Permission.LIST}
            granted -= user.denied
        return frozenset(granted)

    def has_any_grant(self, origin: Origin | str) -> bool:
        return bool(self.permissions(origin))

    def consent_state(self, origin: Origin | str, permission: Permission,
                      once: Iterable[OnceGrant] = ()) -> ConsentState:
        origin = _as_origin(origin)
        if permission in self.permissions(origin):
            return "granted"
        if self._may_not_ask(origin, permission):
            return "denied"
        if any(g.origin == origin and permission in g.permissions for g in once):
            return "granted"
        return "ask"

    def record_consent(self, origin: Origin | str, permissions: Iterable[Permission],
                       answer: ConsentAnswer) -> OnceGrant | None:
        """Apply the user's answer.  "always", "deny" and "block" are stored; "once" returns
        the grant for the caller to keep on the connection (and None otherwise)."""
        origin = _as_origin(origin)
        wanted = frozenset(Permission(p) for p in permissions)
        if answer == "block":
            self.block_origin(origin)
            return None
        if answer == "deny":
            self.grants.deny(origin, wanted)
            return None
        if answer not in ("once", "always"):
            raise ValueError(f"unknown consent answer {answer!r}")
        refused = [p for p in sorted(wanted) if self._may_not_ask(origin, p)]
        if refused:
            # The dispatcher should never have asked; refuse rather than store a grant
            # that policy forbids.
            raise PermissionDenied(permission=refused[0].value)
        if answer == "always":
            self.grants.grant(origin, wanted)
            return None
        return OnceGrant(origin, wanted)

    # --- the tray -------------------------------------------------------------------------

    def user_grants(self) -> list[UserGrant]:
        return self.grants.all()

    def revoke(self, origin: Origin | str) -> bool:
        """Forget the user's answers for ``origin``: grants, denials and a block."""
        return self.grants.revoke(_as_origin(origin))

    def block_origin(self, origin: Origin | str) -> None:
        """"Block this site" (the consent dialog's ``ConsentAnswer.BLOCK``): persist a
        block of exactly this origin.  From now on ``connection_decision`` refuses it and
        ``consent_state`` is "denied"; connections already open are the caller's to close.
        ``revoke(origin)`` (the tray's "forget") lifts it.  Raises ``OriginError`` for a
        malformed origin."""
        origin = _as_origin(origin)
        self.grants.block(origin)
        log.info("the user blocked %s", origin.serialize())

    def _may_not_ask(self, origin: Origin, permission: Permission) -> bool:
        """True when no dialog may grant ``permission``: the answer is already "denied"."""
        if self.is_blocked(origin) or self.locked or permission is Permission.LIST:
            return True
        user = self.grants.get(origin)
        return user is not None and (user.blocked or permission in user.denied)


def _as_origin(origin: Origin | str) -> Origin:
    return origin if isinstance(origin, Origin) else _parsed_origin(origin)


@lru_cache(maxsize=256)
def _parsed_origin(text: str) -> Origin:
    """Parsed once per origin string: a request asks the policy about 13 times and a
    parse (IDNA checks) costs about 20 µs.  Origin is frozen; errors are not cached."""
    return parse_origin(text)


def _parse_dev_origins(texts: Iterable[str]) -> set[Origin]:
    origins = set()
    for text in texts:
        try:
            origins.add(parse_origin(text))
        except OriginError as exc:
            log.warning("ignoring dev origin %r: %s", text, exc.reason)
    return origins
