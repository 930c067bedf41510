"""The confirm phase of a key use (agent/app/signing.py ``KeyUse``): the dialog, the PIN and
the login happen in ``confirm``; the token stays logged in for the request's signatures
only, and no other request gets in between (one lock per token)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fakes import Bench, Page, make_bench

from agent.app.signing import KeyUse, SigningRequest, mechanism_for, sign_with_key
from agent.errors import InternalError, Unsupported
from agent.protocol.enums import HashAlgorithm


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    return make_bench(tmp_path)


async def _selected(bench: Bench, origin: str = "https://portal.example.az"
                    ) -> tuple[Page, str]:
    bench.answers.set(consent="always", certificate="first", pin="1234")
    page = Page(bench, origin)
    return page, await page.select()


def _token_calls(bench: Bench) -> list[str]:
    return [c for c in bench.store.calls if c in ("login", "sign", "logout")]


def _pin_dialogs(bench: Bench) -> int:
    return [d["dialog"] for d in bench.answers.shown()].count("pin")


async def test_confirm_logs_in_once_and_the_last_signature_logs_out(bench: Bench) -> None:
    bench.issue("signer")
    page, handle = await _selected(bench)
    seen: list[object] = []

    async def two_documents(use: KeyUse) -> None:
        await use.confirm()
        await use.confirm()  # a no-op
        seen.append(("after confirm", bench.store.logged_in, _token_calls(bench)))
        mechanism = mechanism_for(use.entry, None, HashAlgorithm.SHA256)
        await use.sign([bytes(32)], mechanism)
        seen.append(("after one", bench.store.logged_in))
        await use.sign([bytes(range(32))], mechanism)
        seen.append(("after two", bench.store.logged_in))
        with pytest.raises(InternalError):
            await use.sign([bytes(32)], mechanism)

    bench.store.calls.clear()
    request = SigningRequest(method="sign.batch", purpose="sign", handle=handle)
    await sign_with_key(bench.core, page.ctx, request, two_documents, allowed=2)
    assert seen == [("after confirm", True, ["login"]), ("after one", True),
                    ("after two", False)]
    assert _token_calls(bench) == ["login", "sign", "sign", "logout"]
    assert _pin_dialogs(bench) == 1
    assert bench.journal.lines[-1]["count"] == 2  # one entry for the request


async def test_a_request_that_fails_after_confirming_logs_out(bench: Bench) -> None:
    bench.issue("signer")
    page, handle = await _selected(bench)

    async def refused_after_the_pin(use: KeyUse) -> None:
        await use.confirm()
        raise Unsupported("the document changed its mind")

    request = SigningRequest(method="sign.pdf", purpose="sign", handle=handle)
    with pytest.raises(Unsupported):
        await sign_with_key(bench.core, page.ctx, request, refused_after_the_pin)
    assert not bench.store.logged_in and _token_calls(bench)[-1] == "logout"


async def test_another_request_waits_for_the_session_to_end(bench: Bench) -> None:
    bench.issue("signer")
    first_page, first_handle = await _selected(bench)
    second_page, second_handle = await _selected(bench, "https://other.example.az")
    bench.store.calls.clear()
    in_session = asyncio.Event()
    release = asyncio.Event()

    async def long_document(use: KeyUse) -> None:
        await use.confirm()
        in_session.set()
        await release.wait()  # building the document while logged in
        await use.sign([bytes(32)], mechanism_for(use.entry, None, HashAlgorithm.SHA256))

    async def one_hash(use: KeyUse) -> None:
        await use.sign([bytes(32)], mechanism_for(use.entry, None, HashAlgorithm.SHA256))

    first = asyncio.ensure_future(sign_with_key(
        bench.core, first_page.ctx,
        SigningRequest(method="sign.pdf", purpose="sign", handle=first_handle),
        long_document))
    await in_session.wait()
    second = asyncio.ensure_future(sign_with_key(
        bench.core, second_page.ctx,
        SigningRequest(method="sign.hash", purpose="sign", handle=second_handle), one_hash))
    while _pin_dialogs(bench) < 2:  # the second request got its PIN...
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert _token_calls(bench) == ["login"]  # ...but does not log in inside the first's
    release.set()
    await asyncio.gather(first, second)
    assert _token_calls(bench) == ["login", "sign", "logout", "login", "sign", "logout"]
