"""The one look at the tokens (agent/daemon/token_watch.py) and the tray following it
(agent/ui/tray_model.py ``watch_changes``: new facts for the UI process's tray when a look
sees something new), in process and without a display: the tray has no polling loop of its
own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from types import SimpleNamespace

import pytest

from agent.daemon.token_watch import TokenSnapshot, TokenWatch
from agent.keystores.base import StoreKind, TokenInfo
from agent.ui.tray_model import watch_changes


def _token(label: str, *, present: bool = True, demo: bool = False) -> TokenInfo:
    return TokenInfo(store_id="s", token_id=label, label=label, manufacturer="Fake",
                     model="Fake", serial="1", kind=StoreKind.DEMO if demo else StoreKind.PKCS11,
                     present=present, demo=demo)


class Stores:
    """The part of StoreManager a look needs, counting the looks."""

    def __init__(self) -> None:
        self.current: list[TokenInfo] = []
        self.problems: list[object] = []
        self.looks = 0
        self.fail = False

    async def tokens(self) -> list[TokenInfo]:
        self.looks += 1
        if self.fail:
            raise OSError("the module went away")
        return list(self.current)


class Pages:
    """The core's side: whether pages watch, and how often they were told."""

    def __init__(self) -> None:
        self.watching = False
        self.published = 0
        self.told: list[list[TokenInfo]] = []

    async def publish(self, tokens: Sequence[TokenInfo]) -> None:
        self.published += 1
        self.told.append(list(tokens))


def _watch(stores: Stores, pages: Pages,
           smartcard_down: Callable[[], bool] = lambda: False) -> TokenWatch:
    return TokenWatch(stores, pages.publish, pages_watching=lambda: pages.watching,
                      smartcard_down=smartcard_down)


# --- the watch -----------------------------------------------------------------------------

async def test_nobody_following_means_no_look() -> None:
    stores, pages = Stores(), Pages()
    watch = _watch(stores, pages)
    await watch.look()
    assert (stores.looks, pages.published) == (0, 0)
    assert not watch.followed
    pages.watching = True
    await watch.look()
    assert pages.published == 1 and stores.looks == 1


async def test_listeners_get_each_snapshot_and_the_latest_at_once() -> None:
    stores, pages = Stores(), Pages()
    stores.current = [_token("A")]
    watch = _watch(stores, pages)
    first: list[TokenSnapshot] = []
    watch.subscribe(first.append)
    await watch.look()
    assert [s.real_token_present for s in first] == [True]
    late: list[TokenSnapshot] = []
    stop = watch.subscribe(late.append)
    assert late == first  # no waiting for the next look
    stop()
    stores.current = []
    await watch.look()
    assert [s.real_token_present for s in first] == [True, False]
    assert len(late) == 1 and pages.published == 0


async def test_a_card_event_tells_pages_and_listeners_at_once() -> None:
    stores, pages = Stores(), Pages()
    watch = _watch(stores, pages)
    seen: list[TokenSnapshot] = []
    watch.subscribe(seen.append)
    stores.current = [_token("card")]
    await watch.changed()
    assert pages.published == 1  # as before: the PC/SC path always publishes
    assert seen[-1].tokens == (stores.current[0],)
    # One listing served both: pages and the tray are told the same tokens.
    assert stores.looks == 1 and pages.told == [stores.current]


async def test_a_failed_listing_never_tells_pages_the_tokens_are_gone() -> None:
    stores, pages = Stores(), Pages()
    pages.watching = True
    watch = _watch(stores, pages)
    stores.fail = True
    await watch.look()  # the periodic look logs and goes on
    assert pages.published == 0
    with pytest.raises(RuntimeError):
        await watch.changed()  # a card event's caller hears of it
    assert pages.published == 0


async def test_problems_a_failed_look_and_a_broken_listener() -> None:
    stores, pages = Stores(), Pages()
    down = [False]
    watch = _watch(stores, pages, smartcard_down=lambda: down[0])
    seen: list[TokenSnapshot] = []

    def broken(_snapshot: TokenSnapshot) -> None:
        raise RuntimeError("a listener bug")

    watch.subscribe(broken)
    watch.subscribe(seen.append)
    assert not (await watch.refresh()).problem
    down[0] = True
    assert (await watch.refresh()).problem
    down[0] = False
    stores.problems = ["MODULE_NOT_FOUND"]
    assert (await watch.refresh()).problem
    stores.problems = []
    stores.fail = True
    failed = await watch.refresh()
    assert failed.problem and failed.tokens == ()
    assert [s.problem for s in seen] == [False, True, True, True]


async def test_the_loop_looks_only_while_someone_follows() -> None:
    stores, pages = Stores(), Pages()
    watch = _watch(stores, pages)
    loop = asyncio.create_task(watch.run(0.01))
    try:
        await asyncio.sleep(0.1)
        assert stores.looks == 0
        watch.subscribe(lambda _s: None)
        for _ in range(200):
            if stores.looks >= 2:
                break
            await asyncio.sleep(0.01)
        assert stores.looks >= 2
    finally:
        loop.cancel()


# --- the tray follows it -----------------------------------------------------------------------

async def test_the_tray_hears_of_new_tokens_and_trouble_only_and_starts_no_poller() -> None:
    stores, pages = Stores(), Pages()
    watch = _watch(stores, pages)
    runtime = SimpleNamespace(token_watch=watch, stores=stores)
    told: list[int] = []
    tasks = asyncio.all_tasks()
    stop = watch_changes(runtime, lambda: told.append(stores.looks))
    assert asyncio.all_tasks() == tasks  # no loop of its own
    await asyncio.sleep(0.05)
    assert stores.looks == 0  # nothing looked at the stores on the tray's behalf

    stores.current = [_token("A")]
    await watch.look()  # the runtime's look: a token appeared
    await watch.look()  # the same again: the tray's facts stand
    assert told == [1]
    stores.fail = True
    await watch.look()  # trouble: the tray says so
    assert told == [1, 3]
    stores.fail = False
    stores.problems = ["MODULE_NOT_FOUND"]
    await watch.look()  # the same token, but a store's problem now
    assert told == [1, 3, 4]

    stop()
    assert watch.listeners == []
    assert not watch.followed
    await watch.look()
    assert told == [1, 3, 4]


def test_no_token_watch_no_subscription() -> None:
    """A runtime without a token watch (headless tools): nothing to follow, and the stop
    call is still safe."""
    stop = watch_changes(SimpleNamespace(), lambda: None)
    stop()
