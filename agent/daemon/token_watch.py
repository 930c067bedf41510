"""The one look at the tokens that everybody in the daemon follows.

Two kinds of followers want to know when tokens come and go: pages that subscribed to
``tokens.changed`` (the core's ``publish_tokens`` tells them) and in-process listeners such
as the tray icon (``subscribe``). Card and reader events reach ``changed`` at once through
the PC/SC path; the periodic ``run`` loop still looks now and then for what no reader reports
(PKCS#12 files, modules with no reader behind them, a PC/SC service that is down), and only
while somebody needs it: a subscribed page, or a listener while card events do not flow.
With nobody connected the PKCS#11 workers are not asked anything (idle is idle: no
wake-ups of the workers, no CPU). Each look lists the stores once, and that listing serves
both kinds of followers. Nobody else polls the key stores.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agent.keystores.base import TokenInfo

Publish = Callable[[Sequence[TokenInfo]], Awaitable[None]]

log = logging.getLogger(__name__)


class TokenLister(Protocol):
    """The part of ``StoreManager`` a look needs."""

    async def tokens(self) -> list[TokenInfo]: ...

    @property
    def problems(self) -> Sequence[object]: ...


@dataclass(frozen=True)
class TokenSnapshot:
    tokens: tuple[TokenInfo, ...]
    # A store failed to load or to list, the smart card service does not answer, or the
    # look itself failed.
    problem: bool

    @property
    def real_token_present(self) -> bool:
        """A token the user plugged in (the demo identity does not count)."""
        return any(t.present and not t.demo for t in self.tokens)


Listener = Callable[[TokenSnapshot], None]


class TokenWatch:
    def __init__(self, stores: TokenLister, publish: Publish, *,
                 pages_watching: Callable[[], bool],
                 smartcard_down: Callable[[], bool] = lambda: False,
                 card_events: Callable[[], bool] = lambda: False) -> None:
        self.stores = stores
        # Tells the subscribed pages, when the set of tokens changed; given the listing, so
        # one look at the stores serves pages and listeners alike.
        self._publish = publish
        self._pages_watching = pages_watching
        self._smartcard_down = smartcard_down
        # Card and reader events reach ``changed`` (PC/SC watched and its service up): the
        # listeners then need no periodic look.
        self._card_events = card_events
        self.looks = 0  # listings of the stores so far (status, tests)
        self.listeners: list[Listener] = []
        # Told of every look like a listener, without making the watch "followed" (so no
        # periodic looks for its sake): runtime.json's token list for `imza-agent status`.
        self.observer: Listener | None = None
        self.latest: TokenSnapshot | None = None

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Follow the snapshots (called on the event loop's thread); the latest one, if
        any, at once. Returns the call that stops following."""
        self.listeners.append(listener)
        if self.latest is not None:
            self._tell(listener, self.latest)

        def unsubscribe() -> None:
            if listener in self.listeners:
                self.listeners.remove(listener)

        return unsubscribe

    @property
    def followed(self) -> bool:
        return bool(self.listeners) or self._pages_watching()

    @property
    def needs_looks(self) -> bool:
        """Whether the periodic look runs now. A subscribed page always gets it: software
        stores (PKCS#12 files, modules without a reader) send no event. A listener (the
        tray) only while card events do not reach ``changed``."""
        if self._pages_watching():
            return True
        return bool(self.listeners) and not self._card_events()

    async def changed(self) -> None:
        """Tokens may have changed (a card or reader event): tell everyone now. A failure
        to list or to publish propagates to the caller, which logs it."""
        await self._look(publish=True, quiet=False)

    async def look(self) -> None:
        """The periodic look, for those who need it (``needs_looks``)."""
        if self.needs_looks:
            await self._look(publish=self._pages_watching(), quiet=True)

    async def refresh(self) -> TokenSnapshot:
        """List the tokens once and hand the snapshot to the listeners."""
        snapshot, _ = await self._list()
        return snapshot

    async def _look(self, *, publish: bool, quiet: bool) -> None:
        _, listed = await self._list()
        if not publish:
            return
        if listed is None:  # never tell pages "every token is gone" for a failed look
            if not quiet:
                raise RuntimeError("the key stores could not be listed")
            return
        try:
            await self._publish(listed)
        except Exception:
            if not quiet:
                raise
            log.warning("telling pages about token changes failed", exc_info=True)

    async def _list(self) -> tuple[TokenSnapshot, list[TokenInfo] | None]:
        listed: list[TokenInfo] | None
        self.looks += 1
        try:
            listed = await self.stores.tokens()
            problem = bool(self.stores.problems) or self._smartcard_down()
        except Exception:
            log.warning("listing the tokens failed", exc_info=True)
            listed, problem = None, True
        snapshot = TokenSnapshot(tuple(listed or ()), problem)
        self.latest = snapshot
        for listener in list(self.listeners):
            self._tell(listener, snapshot)
        if self.observer is not None:
            self._tell(self.observer, snapshot)
        return snapshot, listed

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.look()

    @staticmethod
    def _tell(listener: Listener, snapshot: TokenSnapshot) -> None:
        try:
            listener(snapshot)
        except Exception:  # one broken follower must not stop the others or the loop
            log.warning("a token listener failed", exc_info=True)


def smartcard_service_down(pcsc: Any) -> bool:
    """PC/SC is watched (``pcsc``: the runtime's ``PcscService`` or None) and its service
    does not answer."""
    if pcsc is None:
        return False
    from agent.pcsc.watcher import ServiceState

    return bool(pcsc.status.service is ServiceState.NOT_RUNNING)


def smartcard_events_flow(pcsc: Any) -> bool:
    """PC/SC is watched and its service answers: card and reader events arrive by
    themselves, so nothing needs to poll the tokens on their behalf."""
    if pcsc is None:
        return False
    from agent.pcsc.watcher import ServiceState

    return bool(pcsc.status.service is ServiceState.RUNNING)
