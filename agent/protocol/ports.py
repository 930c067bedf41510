"""What method handlers need from the rest of the agent, as interfaces only.

The protocol core imports no concrete key store, dialog backend, policy engine or
journal; the daemon builds a ``Services`` object from real implementations and tests may
build one from real implementations too.  Extend these as handlers need more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from agent.keystores.base import CertificateEntry, KeyStore, TokenInfo
from agent.ui.base import UserInterface

if TYPE_CHECKING:
    from agent.app.core import AgentCore


class PolicyPort(Protocol):
    def has_any_grant(self, origin: str) -> bool:
        """True when any source (defaults, administrator, user) grants ``origin``
        at least one permission; decides how much ``agent.info`` reveals."""
        ...


class KeyStoresPort(Protocol):
    """The store manager as the methods and the core use it."""

    def store(self, store_id: str) -> KeyStore:
        """The store a KeyRef names; raises InvalidHandle for an unknown one."""
        ...

    async def tokens(self) -> list[TokenInfo]:
        """Tokens of all stores, present now."""
        ...

    async def certificates(self) -> list[CertificateEntry]:
        """Certificates of all present tokens, paired with their keys."""
        ...


class JournalPort(Protocol):
    def append(self, *, origin: str, method: str, certificate_sha256: str | None,
               digest_algorithm: str | None, digest_hex: str | None, result: str,
               count: int = 1) -> dict[str, Any]: ...


class Services(Protocol):
    # The use cases (consent, picker, PIN loop, signing) shared by the method modules.
    core: AgentCore
    policy: PolicyPort
    keystores: KeyStoresPort
    ui: UserInterface
    journal: JournalPort | None  # None when the journal is disabled

    @property
    def formats(self) -> Mapping[str, Sequence[str]]:
        """Signature formats available in this installation and their levels, e.g.
        ``{"cms": ["B", "T", "LT"], "pdf": ["B-B", "B-T"]}``; shown by ``agent.info``."""
        ...
