"""Card events → store work, in process: ``TokenEventSync`` drives fake stores through the
``CardEvents`` protocol only.  No pcscd, no SoftHSM (the daemon test with a real pcscd is
tests/test_pcsc_daemon.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.config import Config, DemoConfig, Pkcs12File, TokensConfig
from agent.errors import PinStatus
from agent.keystores.base import CardEvents, StoreKind, TokenInfo
from agent.keystores.manager import StoreManager
from agent.pcsc.atr import AtrDatabase
from agent.pcsc.sync import TokenEventSync
from agent.pcsc.watcher import EventKind, PcscEvent

CARD_ATR = bytes.fromhex("3B8880014D5A41544553540A")  # mapped to module A below
UNKNOWN_ATR = bytes.fromhex("3B8880014D5A41544553540B")
READER = "Virtual Reader 0"


class FakeCardStore:
    """Lists the token ids it is told to; records what the sync asked of it."""

    def __init__(self, name: str, module: Path) -> None:
        self.store_id = f"fake:{name}"
        self.module = module
        self.present: set[str] = set()
        self.appears_after_reinit: set[str] = set()  # a driver that reads slots at start
        self.busy = False
        self.calls: list[str] = []

    async def tokens(self) -> list[TokenInfo]:
        self.calls.append("tokens")
        return [TokenInfo(store_id=self.store_id, token_id=t, label=t, manufacturer="",
                          model="", serial=t, kind=StoreKind.PKCS11, pin=PinStatus())
                for t in sorted(self.present)]

    def invalidate(self) -> None:
        self.calls.append("invalidate")

    async def reinitialize(self) -> None:
        self.calls.append("reinitialize")
        self.present |= self.appears_after_reinit
        self.appears_after_reinit = set()

    def token_pulled(self) -> None:
        self.calls.append("token_pulled")
        self.busy = False


class Bed:
    def __init__(self, tmp_path: Path) -> None:
        self.a = FakeCardStore("a", tmp_path / "liba.so")
        self.b = FakeCardStore("b", tmp_path / "libb.so")
        self.a.module.touch()
        self.b.module.touch()
        stores: list[CardEvents] = [self.a, self.b]  # typed: the fakes follow the protocol
        db = AtrDatabase.load([{"atr": CARD_ATR.hex(" "), "name": "Test card",
                                "modules": [str(self.a.module)]}])
        self.published = 0
        self._changed = asyncio.Event()
        self.sync = TokenEventSync(stores, db, self._publish, pull_grace=0.2)

    async def _publish(self) -> None:
        self.published += 1
        self._changed.set()

    async def event(self, *events: PcscEvent) -> None:
        """Post events as the watcher would and wait until they were published."""
        self._changed.clear()
        for event in events:
            self.sync.on_event(event)
        await asyncio.wait_for(self._changed.wait(), 5)

    def forget_calls(self) -> None:
        self.a.calls.clear()
        self.b.calls.clear()


@pytest.fixture
async def bed(tmp_path: Path) -> AsyncIterator[Bed]:
    bed = Bed(tmp_path)
    task = asyncio.ensure_future(bed.sync.run())
    await asyncio.sleep(0)
    try:
        yield bed
    finally:
        task.cancel()
        await bed.sync.close()


def inserted(atr: bytes) -> PcscEvent:
    return PcscEvent(EventKind.CARD_INSERTED, READER, atr)


def removed(atr: bytes | None = None) -> PcscEvent:
    return PcscEvent(EventKind.CARD_REMOVED, READER, atr)


async def test_a_known_card_refreshes_only_its_own_module(bed: Bed) -> None:
    bed.forget_calls()
    bed.a.present = {"card-1"}
    await bed.event(inserted(CARD_ATR))
    assert bed.a.calls == ["invalidate", "tokens"]  # a new token: no re-initialisation
    assert bed.b.calls == []
    assert bed.published == 1
    assert bed.sync.cards[READER].entry is not None


async def test_an_unknown_card_refreshes_every_module_and_restarts_a_silent_one(
        bed: Bed) -> None:
    bed.forget_calls()
    bed.b.appears_after_reinit = {"card-2"}
    bed.a.busy = True  # busy modules are never re-initialised under a running call
    await bed.event(inserted(UNKNOWN_ATR))
    assert bed.a.calls == ["invalidate", "tokens"]
    assert bed.b.calls == ["invalidate", "tokens", "reinitialize", "tokens"]
    assert {t.token_id for t in await bed.b.tokens()} == {"card-2"}
    assert bed.sync.cards[READER].entry is None


async def test_removal_ends_a_call_that_outlives_its_card(bed: Bed) -> None:
    bed.a.present = {"card-1"}
    await bed.event(inserted(CARD_ATR))
    bed.forget_calls()
    bed.a.present = set()
    bed.a.busy = True  # e.g. a signature hanging in the module
    await bed.event(removed())  # the ATR is known from the insertion
    await asyncio.sleep(0.5)  # past pull_grace
    assert bed.a.calls[-1] == "token_pulled"
    assert bed.b.calls == []
    assert READER not in bed.sync.cards


async def test_a_module_still_showing_a_removed_card_is_restarted(bed: Bed) -> None:
    bed.a.present = {"card-1"}
    await bed.event(inserted(CARD_ATR))
    bed.forget_calls()
    await bed.event(removed())  # the driver did not notice: it still lists card-1
    assert bed.a.calls == ["invalidate", "tokens", "reinitialize", "tokens"]
    assert "token_pulled" not in bed.a.calls


async def test_a_burst_of_events_is_published_once(bed: Bed) -> None:
    await bed.event(inserted(UNKNOWN_ATR), removed(UNKNOWN_ATR), inserted(CARD_ATR),
                    PcscEvent(EventKind.SERVICE_DOWN, reason="stopped"))
    await asyncio.sleep(0.1)
    assert bed.published == 1


def test_only_smart_card_stores_follow_card_events(agent_home: Path, tmp_path: Path) -> None:
    module = tmp_path / "libvendor-pkcs11.so"
    module.write_bytes(b"")  # never loaded: building the store does not load it
    p12 = tmp_path / "key.p12"
    manager = StoreManager.from_config(Config(
        tokens=TokensConfig(modules=[module], known_modules=False,
                            pkcs12=[Pkcs12File(path=p12)]),
        demo=DemoConfig(enabled="auto")))
    [events] = manager.card_stores()
    assert events.module == module and events.store_id.startswith("pkcs11:")
    assert {m.store.card_events is None for m in manager.managed} == {True, False}
