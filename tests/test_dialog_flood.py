"""Dialog flooding (issue 11, §8): pages without a grant cannot keep a trusted site's
dialog off the screen, stack windows, or hold a dialog past its time; "block this site"
sticks.

In-process: the real dispatcher, methods, core and policy, with the scripted UI, whose
``ignore`` answer leaves a dialog open until its timeout, as a person away from the desk
would.  ``WatchingUI`` counts the dialogs open at once.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fakes import Bench, Page, make_bench, watch_dialogs

from agent.config import UiConfig

TRUSTED = "https://portal.example.az"


def reason(answer: dict[str, Any]) -> str:
    assert "error" in answer, answer
    value: str = answer["error"]["data"]["reason"]
    return value


async def until(condition: Callable[[], bool], what: str) -> None:
    """Let the event loop run until ``condition`` holds (a hang detector, not a timing)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


def select(page: Page) -> asyncio.Task[dict[str, Any]]:
    return asyncio.create_task(page.call("certificates.select", {"purpose": "sign"}))


def consent_origins(bench: Bench) -> list[str]:
    return [d["origin"] for d in bench.answers.shown() if d["dialog"] == "consent"]


async def test_a_flood_of_sub_domains_does_not_keep_a_granted_site_waiting(
        tmp_path: Path) -> None:
    bench = make_bench(tmp_path, dialog_timeout=30.0)
    bench.issue("signer")
    bench.answers.set(consent="always", certificate="first", pin="1234")
    trusted = Page(bench, TRUSTED)
    handle = await trusted.select()
    watching = watch_dialogs(bench)
    mark = len(bench.answers.shown())

    # Twelve sub-domains of one site ask for consent, and nobody answers them.
    bench.answers.set(consent="ignore", certificate="first", pin="1234")
    flood = [select(Page(bench, f"https://s{i}.flood.example")) for i in range(12)]
    await until(lambda: sum(t.done() for t in flood) == 10, "the over-cap requests end")
    assert sorted(reason(t.result()) for t in flood if t.done()) == ["BUSY"] * 10
    await until(lambda: len(bench.answers.shown()) > mark, "the first flood dialog")
    # That one stays unanswered; dialogs opened from now on are refused (so the test
    # does not wait for timeouts).
    bench.answers.set(consent="deny", certificate="first", pin="1234")

    digest = hashlib.sha256(b"trusted").digest()
    signed = await asyncio.wait_for(trusted.call("sign.hash", {
        "handle": handle, "hash": base64.b64encode(digest).decode(),
        "hashAlgorithm": "SHA-256"}), 10)
    assert "result" in signed, signed

    shown = [(d["dialog"], d["origin"]) for d in bench.answers.shown()[mark:]]
    # The granted site's PIN dialog took the screen from the first flood dialog; the
    # second flood origin was never shown before it.
    assert shown[:2] == [("consent", "https://s0.flood.example"), ("pin", TRUSTED)]
    assert watching.most_open == 1
    results = await asyncio.wait_for(asyncio.gather(*flood), 10)
    assert sorted(reason(r) for r in results) == ["BUSY"] * 10 + ["PERMISSION_DENIED"] * 2
    # The pushed-aside dialog came back afterwards, then the second flood origin's.
    shown = [(d["dialog"], d["origin"]) for d in bench.answers.shown()[mark:]]
    assert shown[2:] == [("consent", "https://s0.flood.example"),
                         ("consent", "https://s1.flood.example")]
    assert watching.most_open == 1


async def test_third_sub_domain_of_a_site_gets_busy_without_a_dialog(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, dialog_timeout=0.5)
    bench.issue("signer")
    bench.answers.set(consent="ignore")
    origins = ["https://a.evil.example", "https://b.evil.example", "https://c.evil.example",
               "https://d.other.example"]
    results = await asyncio.wait_for(
        asyncio.gather(*(select(Page(bench, o)) for o in origins)), 10)
    assert [reason(r) for r in results] == ["USER_TIMEOUT", "USER_TIMEOUT", "BUSY",
                                            "USER_TIMEOUT"]
    assert "https://c.evil.example" not in consent_origins(bench)
    assert bench.core.dialogs.limits.max_pending_per_site == \
        UiConfig().max_pending_dialogs_per_site == 2


async def test_overall_cap_on_pending_dialogs(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, dialog_timeout=0.5, limits=UiConfig(max_pending_dialogs=3))
    bench.answers.set(consent="ignore")
    origins = [f"https://www.site{i}.example" for i in range(5)]
    results = await asyncio.wait_for(
        asyncio.gather(*(select(Page(bench, o)) for o in origins)), 10)
    assert [reason(r) for r in results] == ["USER_TIMEOUT"] * 3 + ["BUSY"] * 2


async def test_time_spent_waiting_counts_and_a_timed_out_dialog_is_never_shown(
        tmp_path: Path) -> None:
    bench = make_bench(tmp_path, dialog_timeout=1.0)
    watching = watch_dialogs(bench)
    bench.answers.set(consent="ignore")
    first = select(Page(bench, "https://one.example"))
    second = select(Page(bench, "https://two.example"))  # asks right after the first
    results = await asyncio.wait_for(asyncio.gather(first, second), 10)
    assert [reason(r) for r in results] == ["USER_TIMEOUT", "USER_TIMEOUT"]
    # The second request waited its whole time behind the first: its dialog never came.
    assert consent_origins(bench) == ["https://one.example"]
    assert watching.most_open == 1
    assert len(bench.core.dialogs) == 0


async def test_block_this_site_refuses_the_next_request_without_asking(
        tmp_path: Path) -> None:
    bench = make_bench(tmp_path)
    bench.issue("signer")
    bench.answers.set(consent="block", certificate="first", pin="1234")
    origin = "https://pushy.example"
    page = Page(bench, origin)
    assert reason(await page.call("certificates.select", {"purpose": "sign"})) == \
        "PERMISSION_DENIED"
    assert reason(await Page(bench, origin).call("certificates.select",
                                                 {"purpose": "sign"})) == "PERMISSION_DENIED"
    assert consent_origins(bench) == [origin]
    assert "certificates" not in bench.store.calls
    # The policy keeps it: the handshake refuses the origin from now on.
    assert not bench.policy.connection_decision(origin).allowed
