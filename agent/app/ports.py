"""What the use cases call on the rest of the agent, as interfaces only.

The core is typed against these, never against ``StoreManager``, ``Policy`` or
``Journal``; a test hands it fakes that fit (``tests/fakes.py``).  The dialog port is
``agent.app.dialogs``; one key store's interface is ``agent.keystores.base.KeyStore``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, Protocol

from agent.keystores.base import CertificateEntry, KeyStore, TokenInfo
from agent.policy.policy import OnceGrant
from agent.policy.rules import Permission

ConsentState = Literal["granted", "denied", "ask"]
ConsentReply = Literal["once", "always", "deny"]


class KeyStoresPort(Protocol):
    """All key stores as one."""

    def store(self, store_id: str) -> KeyStore:
        """The store a KeyRef names; raises InvalidHandle for an unknown one."""
        ...

    async def tokens(self) -> list[TokenInfo]:
        """Tokens of all stores, present now."""
        ...

    async def certificates(self) -> list[CertificateEntry]:
        """Certificates of all present tokens, paired with their keys; a certificate that
        several modules read from one card appears once."""
        ...

    async def certificates_in(self, store_id: str) -> list[CertificateEntry]:
        """One store's certificates as that store sees them (what a handle needs)."""
        ...


class PolicyPort(Protocol):
    def has_any_grant(self, origin: str) -> bool:
        """True when any source (defaults, administrator, user) grants ``origin`` at
        least one permission; decides how much ``agent.info`` reveals."""
        ...

    def consent_state(self, origin: str, permission: Permission,
                      once: Iterable[OnceGrant] = ()) -> ConsentState: ...

    def record_consent(self, origin: str, permissions: Iterable[Permission],
                       answer: ConsentReply) -> OnceGrant | None:
        """Store "always"/"deny"; for "once" return the grant the connection keeps."""
        ...

    def block_origin(self, origin: str) -> None:
        """"Block this site" in the consent dialog: refuse ``origin``'s connections and
        every permission from now on (kept across restarts)."""
        ...


class JournalPort(Protocol):
    def append(self, *, origin: str, method: str, certificate_sha256: str | None,
               digest_algorithm: str | None, digest_hex: str | None, result: str,
               count: int = 1) -> object: ...


class FormatsPort(Protocol):
    """What this installation can sign besides raw hashes (``agent.info``)."""

    @property
    def formats(self) -> Mapping[str, Sequence[str]]: ...
