"""PC/SC events driving a running agent: a real pcscd with the vpcd reader, a virtual
card paired with a SoftHSM token (``vcard.PairedCard``), pages subscribed to
``tokens.changed``.

The agent polls for token changes only while PC/SC events do not flow; here the poll
interval is an hour, so every ``tokens.changed`` below comes from a PC/SC event.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from daemon import Client, Daemon, b64, copy_softhsm, verify_hash_signature
from testbed import SoftHsmBed
from testbed.native import build_faulty_module
from vcard import PairedCard, Pcscd, VirtualCard

pytestmark = [pytest.mark.pcscd, pytest.mark.softhsm, pytest.mark.daemon]

GOV = "https://www.e-gov.az"  # granted by the shipped defaults: no consent dialog
TEST_ATR = bytes.fromhex("3B8880014D5A41544553540A")  # made up: no real card has it
HOLDER = "Əliyev"
EVENT_TIMEOUT = 15.0  # generous for CI; never asserted on


class CardDaemon(Daemon):
    """The test daemon plus a ``[[pcsc.atr]]`` entry naming the card's module."""

    card_module: Path

    def _config_text(self) -> str:
        entry = {"atr": TEST_ATR.hex(" ").upper(), "name": "Test card (SoftHSM)",
                 "modules": [str(self.card_module)]}
        body = "".join(f"{k} = {json.dumps(v, ensure_ascii=False)}\n" for k, v in entry.items())
        return super()._config_text() + "\n[[pcsc.atr]]\n" + body


@dataclass
class Bed:
    pcscd: Pcscd
    card: PairedCard
    softhsm_conf: Path
    tmp: Path

    def daemon(self, module: Path, card_module: Path | None = None,
               env: dict[str, str] | None = None) -> CardDaemon:
        daemon = CardDaemon(home=self.tmp / "home", modules=[module],
                            env={"SOFTHSM2_CONF": str(self.softhsm_conf), **(env or {})},
                            config={"tokens": {"poll_interval": 3600.0}})
        daemon.card_module = card_module or module
        return daemon


@pytest.fixture
def bed(softhsm: SoftHsmBed, tmp_path: Path) -> Iterator[Bed]:
    pcscd = Pcscd(tmp_path / "pcscd").start()
    conf = copy_softhsm(softhsm.conf, tmp_path / "softhsm")
    token_dir = PairedCard.token_dir_of(tmp_path / "softhsm" / "tokens",
                                        softhsm.tokens["A"].label)
    card = PairedCard(VirtualCard(TEST_ATR, pcscd.port), token_dir)
    try:
        yield Bed(pcscd, card, conf, tmp_path)
    finally:
        card.card.remove()
        pcscd.stop()


async def next_change(page: Client) -> set[str]:
    message = await asyncio.wait_for(page.notifications.get(), EVENT_TIMEOUT)
    assert message["method"] == "tokens.changed"
    return {t["label"] for t in message["params"]["tokens"]}


def sign_params(handle: str, label: str) -> tuple[bytes, dict[str, Any]]:
    digest = hashlib.sha256(label.encode()).digest()
    return digest, {"handle": handle, "hash": b64(digest), "hashAlgorithm": "SHA-256"}


async def select_on_token_a(daemon: Daemon, page: Client, softhsm: SoftHsmBed) -> str:
    daemon.set_answers({"certificate": {"holder": HOLDER}, "pin": softhsm.tokens["A"].pin})
    chosen = await page.call("certificates.select", {"purpose": "sign"})
    return chosen["handle"]


async def sign_and_verify(page: Client, handle: str, label: str) -> None:
    digest, params = sign_params(handle, label)
    signed = await page.call("sign.hash", params)
    verify_hash_signature(signed["certificate"], digest, signed["signature"],
                          scheme=signed.get("scheme", "RSASSA-PKCS1-v1_5"),
                          hash_algorithm="SHA-256")


async def test_card_events_drive_tokens_and_handles_survive_reinsertion(
        bed: Bed, softhsm: SoftHsmBed) -> None:
    label_a, label_b = softhsm.tokens["A"].label, softhsm.tokens["B"].label
    bed.card.insert()
    daemon = bed.daemon(softhsm.module).start()
    try:
        async with daemon.client(GOV) as page:
            listed = await page.call("tokens.subscribe")
            assert {t["label"] for t in listed["tokens"]} == {label_a, label_b}
            handle = await select_on_token_a(daemon, page, softhsm)

            bed.card.remove()
            assert await next_change(page) == {label_b}
            gone = await page.error("sign.hash", sign_params(handle, "while out")[1])
            assert gone.reason == "TOKEN_NOT_PRESENT" and gone.code == 4005

            # SoftHSM shows the returning token only after the agent re-initialises it.
            bed.card.insert()
            assert await next_change(page) == {label_a, label_b}
            await sign_and_verify(page, handle, "after re-insertion")
    finally:
        assert daemon.stop() == 0, daemon.log_text()[-3000:]


async def test_pcscd_restarted_under_a_running_daemon(bed: Bed, softhsm: SoftHsmBed) -> None:
    label_a, label_b = softhsm.tokens["A"].label, softhsm.tokens["B"].label
    bed.card.insert()
    daemon = bed.daemon(softhsm.module).start()
    try:
        async with daemon.client(GOV) as page:
            await page.call("tokens.subscribe")
            await asyncio.to_thread(bed.pcscd.stop)
            bed.card.card.remove()  # its connection died with pcscd
            await asyncio.to_thread(bed.pcscd.start)
            bed.card.card.insert()

            # Only a watcher that re-established its context sees these.
            bed.card.remove()
            assert await next_change(page) == {label_b}
            bed.card.insert()
            assert await next_change(page) == {label_a, label_b}
        assert "the smart card service is not running" in daemon.log_text()
    finally:
        assert daemon.stop() == 0, daemon.log_text()[-3000:]


async def test_card_pulled_during_a_signature(bed: Bed, softhsm: SoftHsmBed) -> None:
    """The module hangs in C_Sign (as some do when their card leaves); pulling the card
    ends the call with TOKEN_NOT_PRESENT, and the handle works once the card is back."""
    faulty = build_faulty_module(bed.tmp / "native")
    mode = bed.tmp / "faulty-mode"
    mode.write_text("", encoding="utf-8")
    bed.card.insert()
    daemon = bed.daemon(faulty, env={"FAULTY_PKCS11_TARGET": str(softhsm.module),
                                     "FAULTY_PKCS11_MODE_FILE": str(mode)}).start()
    try:
        async with daemon.client(GOV) as page:
            await page.call("tokens.subscribe")
            handle = await select_on_token_a(daemon, page, softhsm)
            mark = daemon.transcript_mark()
            mode.write_text("hang_on_sign", encoding="utf-8")
            signing = page.start("sign.hash", sign_params(handle, "pulled")[1])
            while not any(d["dialog"] == "pin" for d in daemon.transcript(mark)):
                assert not signing.done(), signing.result()
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)  # let login and C_SignInit begin; not asserted on
            assert not signing.done()

            bed.card.remove()
            reply = await asyncio.wait_for(signing, EVENT_TIMEOUT)
            assert reply["error"]["data"]["reason"] == "TOKEN_NOT_PRESENT", reply
            assert reply["error"]["code"] == 4005

            mode.write_text("", encoding="utf-8")
            bed.card.insert()
            labels = await next_change(page)
            while softhsm.tokens["A"].label not in labels:
                labels = await next_change(page)
            await sign_and_verify(page, handle, "after the pull")
    finally:
        assert daemon.stop() == 0, daemon.log_text()[-3000:]
