"""What the agent keeps for one page connection: its certificate handles and what the
user allowed "once".  Both die with the connection (``CallContext.on_close``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from weakref import WeakKeyDictionary

from agent.keystores.base import KeyRef
from agent.policy.policy import OnceGrant
from agent.protocol.dispatch import CallContext
from agent.protocol.handles import HandleTable


@dataclass(frozen=True)
class HandleTarget:
    """What a handle names: one certificate (by DER) with its key on one token (by the
    token's stable id, so the handle survives re-insertion of the same token)."""

    key: KeyRef
    certificate_der: bytes
    purpose: str  # "sign" or "auth"


@dataclass
class ConnectionState:
    handles: HandleTable[HandleTarget] = field(default_factory=HandleTable)
    once_grants: list[OnceGrant] = field(default_factory=list)


class Connections:
    """Per-connection state, found from the transport's ``CallContext``."""

    def __init__(self) -> None:
        # Weak: a context a transport forgot to close still frees its state.
        self._states: WeakKeyDictionary[CallContext, ConnectionState] = WeakKeyDictionary()

    def of(self, ctx: CallContext) -> ConnectionState:
        state = self._states.get(ctx)
        if state is None:
            state = self._states[ctx] = ConnectionState()
            ctx.on_close(lambda: self._forget(ctx))
        return state

    def _forget(self, ctx: CallContext) -> None:
        state = self._states.pop(ctx, None)
        if state is not None:
            state.handles.clear()
            state.once_grants.clear()

    def __len__(self) -> int:
        return len(self._states)
