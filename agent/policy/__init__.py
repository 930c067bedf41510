"""Which web origins may talk to the agent, and with which permissions (docs/policy.md)."""

from agent.policy.grants import GrantStore, UserGrant
from agent.policy.origin import (
    Origin,
    OriginError,
    check_host_header,
    escape,
    is_loopback_host,
    origin_from_url,
    parse_origin,
)
from agent.policy.policy import ConsentAnswer, ConsentState, Decision, OnceGrant, Policy
from agent.policy.rules import OriginPattern, Permission, Rule, RuleError, parse_pattern
from agent.policy.sources import PolicyError, PolicyFile, system_policy_path

__all__ = [
    "ConsentAnswer",
    "ConsentState",
    "Decision",
    "GrantStore",
    "OnceGrant",
    "Origin",
    "OriginError",
    "OriginPattern",
    "Permission",
    "Policy",
    "PolicyError",
    "PolicyFile",
    "Rule",
    "RuleError",
    "UserGrant",
    "check_host_header",
    "escape",
    "is_loopback_host",
    "origin_from_url",
    "parse_origin",
    "parse_pattern",
    "system_policy_path",
]
