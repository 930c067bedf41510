"""Silent probing (issue 11, §10): a site holding ``select`` cannot test personal ID
numbers or issuer names through ``filter`` without the user seeing a picker for every
try, and only ``[ui] max_filtered_selects_per_site`` tries per window.

In-process, with the scripted UI: its transcript shows every picker the user saw."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fakes import Bench, Page, make_bench

from agent.app.select_limit import FilteredSelects
from agent.config import UiConfig
from agent.errors import RateLimited
from agent.policy.rules import Permission

SITE = "https://portal.example.az"


def reason(answer: dict[str, Any]) -> str:
    assert "error" in answer, answer
    value: str = answer["error"]["data"]["reason"]
    return value


def granted_page(bench: Bench, origin: str = SITE) -> Page:
    bench.policy.record_consent(origin, [Permission.SELECT], "always")
    return Page(bench, origin)


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    bench = make_bench(tmp_path)
    bench.issue("signer")
    bench.answers.set(certificate="first")  # closes a picker that offers nothing
    return bench


async def test_probing_costs_a_visible_picker_each_and_is_rate_limited(bench: Bench) -> None:
    page = granted_page(bench)
    answers = []
    for i in range(100):
        before = len(bench.answers.shown())
        answer = await page.call("certificates.select", {
            "purpose": "sign", "filter": {"subjectSerialNumber": f"XYZ{i:07d}"}})
        shown = bench.answers.shown()[before:]
        if reason(answer) == "NO_CERTIFICATE":
            # The answer came only after the user had the picker in front of them.
            [picker] = shown
            assert (picker["dialog"], picker["choices"], picker["filtered"]) == (
                "certificate", [], True)
        else:
            assert shown == []
        answers.append(reason(answer))
    limit = UiConfig().max_filtered_selects_per_site
    assert answers == ["NO_CERTIFICATE"] * limit + ["RATE_LIMITED"] * (100 - limit)
    assert len(bench.answers.shown()) == limit


async def test_the_limit_is_per_site(bench: Bench) -> None:
    probe = {"purpose": "sign", "filter": {"issuer": "No Such CA"}}
    limit = bench.core.filtered_selects.limit
    for origin in ("https://a.probe.example", "https://b.probe.example"):
        page = granted_page(bench, origin)
        for _ in range(limit // 2):
            assert reason(await page.call("certificates.select", probe)) == "NO_CERTIFICATE"
    assert reason(await page.call("certificates.select", probe)) == "RATE_LIMITED"
    other = granted_page(bench, "https://www.elsewhere.example")
    assert reason(await other.call("certificates.select", probe)) == "NO_CERTIFICATE"
    # Without a filter the picker is not limited: it narrows nothing a page could learn.
    chosen = await page.call("certificates.select", {"purpose": "sign"})
    assert "result" in chosen


async def test_a_matching_filter_shows_only_what_matches(bench: Bench) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    serial = "AZE-PROBE-0001"
    cert = bench.pki.issue("probe-second", private.public_key(), purpose="sign",
                           common_name="İkinci Şəxs", country="AZ", serial_number=serial)
    bench.store.add_key(private, cert)
    page = granted_page(bench)
    answer = await page.call("certificates.select", {
        "purpose": "sign", "filter": {"subjectSerialNumber": serial}})
    assert "result" in answer, answer
    [picker] = bench.answers.shown()
    assert picker["filtered"] is True
    assert [c["holder"] for c in picker["choices"]] == ["İkinci Şəxs"]


async def test_no_certificate_at_all_still_shows_the_picker(tmp_path: Path) -> None:
    bench = make_bench(tmp_path)  # a token without keys
    bench.answers.set(certificate="cancel")
    page = granted_page(bench)
    assert reason(await page.call("certificates.select", {"purpose": "auth"})) == \
        "NO_CERTIFICATE"
    [picker] = bench.answers.shown()
    assert (picker["dialog"], picker["choices"], picker["filtered"]) == (
        "certificate", [], False)


def test_the_window_slides_and_idle_sites_are_forgotten() -> None:
    now = [0.0]
    limiter = FilteredSelects(limit=2, window=60.0, clock=lambda: now[0])
    limiter.take("https://a.example")
    limiter.take("https://b.a.example")
    with pytest.raises(RateLimited):
        limiter.take("https://a.example")
    now[0] = 30.0
    limiter.take("https://other.example")
    now[0] = 61.0
    limiter.take("https://a.example")  # the first two fell out of the window
    assert len(limiter) == 2
    now[0] = 200.0
    limiter.take("https://third.example")
    assert len(limiter) == 1
