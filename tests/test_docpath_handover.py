"""``wait_for_handover`` (agent/formats/handover.py): how sign.batch and build_together wait
for every item to be handed over."""

from __future__ import annotations

import asyncio

import pytest

from agent.errors import InternalError, Unsupported
from agent.formats.handover import wait_for_handover


async def test_returns_once_every_item_is_handed_over() -> None:
    complete: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    handed: list[int] = []

    async def item(index: int) -> None:
        await asyncio.sleep(0.001 * index)
        handed.append(index)
        if len(handed) == 3:
            complete.set_result(None)
        await asyncio.Event().wait()  # waits for its result, as a batch item does

    tasks = [asyncio.create_task(item(i)) for i in range(3)]
    try:
        await wait_for_handover(tasks, complete, "stray")
        assert sorted(handed) == [0, 1, 2]
    finally:
        for task in tasks:
            task.cancel()


async def test_an_item_refused_before_the_handover_is_the_batch_error() -> None:
    complete: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def refused() -> None:
        raise Unsupported("item 2 is not a PDF")

    waiting = asyncio.create_task(asyncio.Event().wait())
    try:
        with pytest.raises(Unsupported, match="item 2"):
            await wait_for_handover([waiting, asyncio.create_task(refused())], complete,
                                    "stray")
    finally:
        waiting.cancel()


async def test_an_item_that_ends_without_a_handover_is_internal() -> None:
    complete: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def finished() -> None:
        return None

    with pytest.raises(InternalError, match="built without a worker"):
        await wait_for_handover([asyncio.create_task(finished())], complete,
                                "a batch item was built without a worker")
