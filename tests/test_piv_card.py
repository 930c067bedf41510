"""The agent and a PIV card through real middleware: OpenSC's opensc-pkcs11.so and CACKey.

The card is ``tests/piv_card.py``'s virtual PIV applet in vpcd's reader of a private
pcscd.  The agent runs as on a user's machine: no module configured, the built-in table
of known modules (``tokens.known_modules``) loads every middleware installed here
(OpenSC, CACKey and Yubico's ykcs11), and the ATR table (``agent/pcsc/atr_db.toml``)
names the card's modules for the PC/SC events.  Nothing here talks to the card except
to set it up and to read its counters.

Yubico's ykcs11 is installed and loaded but serves only readers whose name starts with
"Yubico" (``is_yubico_reader`` in yubico-piv-tool's ykcs11), which vpcd's reader is not,
so CACKey is the independent module.  CACKey has no ECC and no CKA_ALWAYS_AUTHENTICATE:
its card holds RSA keys in both slots, and its 9C key is used right after the login's
VERIFY (see docs/smartcards.md).  With both modules reading the card, the picker offers
each certificate once, from the module the ATR table prefers, naming the reader.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from authverify import verify_login_token
from cryptography.hazmat.primitives.serialization import Encoding
from daemon import Client, Daemon, b64, unb64, verify_hash_signature
from piv_card import PIV_ATR, CardInReader, piv_card_in_reader
from testbed.pki import TestPKI, build_pki
from vcard import Pcscd

from agent.pcsc.atr import AtrDatabase, same_file

pytestmark = [pytest.mark.pcscd, pytest.mark.daemon]

GOV = "https://www.e-gov.az"  # granted by the shipped defaults: no consent dialog
OPENSC = Path("/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so")
CACKEY = Path("/usr/lib/pkcs11/libcackey.so")
HOLDER = "Əliyev Vüqar"
EVENT_TIMEOUT = 20.0  # generous for CI; never asserted on
# Both modules label the card's token with the holder's name; the selected certificate's
# token object tells them apart by manufacturer.
MANUFACTURER = {OPENSC: "piv_II", CACKEY: "U.S. Government"}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def middleware() -> None:
    """The two modules must be installed: without them the agent would just find no
    card, and the tests would fail for a reason they do not name."""
    for module, package in ((OPENSC, "opensc-pkcs11"), (CACKEY, "cackey")):
        if not module.is_file():
            pytest.fail(f"{module} is missing (`apt-get install -y {package}`)",
                        pytrace=False)


@pytest.fixture(scope="module")
def pki() -> TestPKI:
    return build_pki()


@pytest.fixture
def pcscd(tmp_path: Path) -> Iterator[Pcscd]:
    server = Pcscd(tmp_path / "pcscd").start()
    try:
        yield server
    finally:
        server.stop()


def user_daemon(tmp_path: Path, *, prefer: Path | None = None) -> Daemon:
    """An agent configured as a user's: the known modules, no module named.  ``prefer``
    re-routes the card's ATR to that module in the user's config, as a user may; without
    it the built-in table names CACKey first (then OpenSC)."""
    config: dict[str, Any] = {"tokens": {"known_modules": True, "poll_interval": 3600.0}}
    if prefer is not None:
        config["pcsc"] = {"atr": [{"atr": PIV_ATR.hex(" "), "name": "PIV test card",
                                   "modules": [str(prefer)]}]}
    return Daemon(home=tmp_path / "home", modules=[], env={}, config=config)


async def choose(daemon: Daemon, page: Client, purpose: str, serial: int,
                 module: Path) -> dict[str, Any]:
    """certificates.select answered with the certificate ``serial``, which must be in one
    row of the picker however many modules read the card, and served by ``module``; plus
    that row (``row``, ``choice``).  The scripted user looks first (cancels), then picks."""
    daemon.set_answers({"certificate": "cancel"})
    mark = daemon.transcript_mark()
    looked = await page.error("certificates.select", {"purpose": purpose})
    assert looked.code == 4001, looked
    [picker] = [d for d in daemon.transcript(mark) if d["dialog"] == "certificate"]
    rows = [i for i, c in enumerate(picker["choices"]) if c["serial_hex"] == f"{serial:X}"]
    assert len(rows) == 1, picker["choices"]
    daemon.set_answers({"certificate": {"index": rows[0]}})
    chosen = await page.call("certificates.select", {"purpose": purpose})
    assert chosen["token"]["manufacturer"] == MANUFACTURER[module], (module, chosen["token"])
    return {"row": rows[0], "choice": picker["choices"][rows[0]], **chosen}


async def both_modules_read(page: Client, label: str) -> None:
    """The card is read by both modules: each lists a token for it (the holder's name
    labels both; their serials differ)."""
    tokens = (await page.call("tokens.subscribe"))["tokens"]
    assert len({t["serial"] for t in tokens if t["label"] == label}) == 2, tokens


def test_atr_table_names_the_piv_middleware() -> None:
    """The card's ATR leads to the modules installed here, as the agent looks them up."""
    db = AtrDatabase.load()
    entry = db.match(PIV_ATR)
    assert entry is not None and "PIV" in entry.name
    paths = db.module_paths(entry, "linux")
    assert any(same_file(p, CACKEY) for p in paths) and any(same_file(p, OPENSC) for p in paths)
    assert CACKEY.is_file() and OPENSC.is_file(), "opensc-pkcs11 and cackey are test packages"


async def sign_and_login(daemon: Daemon, placed: CardInReader, module: Path, pki: TestPKI,
                         *, ecdsa: bool) -> None:
    """List both certificates, sign with 9C under its PIN, log in with 9A, verify both."""
    sign_cert = placed.piv.slots[0x9C].cert
    auth_cert = placed.piv.slots[0x9A].cert
    async with daemon.client(GOV) as page:
        await both_modules_read(page, HOLDER)
        # Both modules offer each RSA key, in one row: the preferred module's.  CACKey
        # misreads a P-256 key as RSA and pairs no key with that certificate, so OpenSC
        # serves it even where CACKey is preferred.
        chosen = await choose(daemon, page, "sign", sign_cert.serial_number, module)
        assert unb64(chosen["certificate"]) == sign_cert.public_bytes(Encoding.DER)
        assert chosen["choice"]["reader"] == placed.reader

        pin = placed.piv.pin
        for round_ in range(2):  # the 9C key wants the PIN for every signature
            daemon.set_answers({"pin": pin})
            mark = daemon.transcript_mark()
            digest = hashlib.sha256(f"{module.name} {round_}".encode()).digest()
            signed = await page.call("sign.hash", {"handle": chosen["handle"],
                                                   "hash": b64(digest),
                                                   "hashAlgorithm": "SHA-256"}, timeout=60)
            assert signed["scheme"] == ("ECDSA" if ecdsa else "RSASSA-PKCS1-v1_5")
            verify_hash_signature(signed["certificate"], digest, signed["signature"],
                                  scheme=signed["scheme"], hash_algorithm="SHA-256")
            pins = [d for d in daemon.transcript(mark) if d["dialog"] == "pin"]
            assert len(pins) == 1 and pins[0]["token"] == HOLDER, pins

        challenge = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        row = (await choose(daemon, page, "auth", auth_cert.serial_number, module))["row"]
        daemon.set_answers({"certificate": {"index": row}, "pin": pin})
        result = await page.call("auth.login", {"challenge": challenge}, timeout=60)
    cert = verify_login_token(result["token"], origin=GOV, challenge=challenge,
                              root=pki.root.cert, intermediates=[pki.intermediate.cert])
    assert cert == auth_cert


@pytest.mark.parametrize("module", [OPENSC, CACKEY], ids=["opensc", "cackey"])
async def test_list_sign_and_login_through_the_middleware(
        module: Path, pcscd: Pcscd, pki: TestPKI, tmp_path: Path) -> None:
    """Both modules are loaded and read the card; each certificate is one row, from the
    module the ATR table prefers: CACKey by the built-in table, OpenSC when the user's
    config names it for the card."""
    ecdsa = module == OPENSC  # CACKey reads RSA keys only
    with piv_card_in_reader(pcscd, pki=pki, holder=HOLDER,
                            signature_key="EC" if ecdsa else "RSA") as placed:
        daemon = user_daemon(tmp_path, prefer=OPENSC if module == OPENSC else None).start()
        try:
            await sign_and_login(daemon, placed, module, pki, ecdsa=ecdsa)
            assert placed.piv.pin_tries == placed.piv.pin_max_tries
        finally:
            assert daemon.stop() == 0, daemon.log_text()[-3000:]


# What each module tells the PIN dialog after one and after two wrong PINs (3 tries):
# OpenSC raises "final try" at one left and never "count low" (its PIV driver knows no
# maximum); CACKey raises "count low" after any wrong PIN, "final try" at one left.
RETRY_FLAGS = {OPENSC: [(False, False), (False, True)], CACKEY: [(True, False), (True, True)]}


@pytest.mark.parametrize("module", [OPENSC, CACKEY], ids=["opensc", "cackey"])
async def test_wrong_pins_count_down_to_blocked(module: Path, pcscd: Pcscd, pki: TestPKI,
                                                tmp_path: Path) -> None:
    """Three wrong PINs: the dialog is told "wrong" (and "final try" before the last),
    then the card blocks, the user is told to unlock with the PUK, and the page gets
    PIN_LOCKED with data.unlock, also on the next request."""
    with piv_card_in_reader(pcscd, pki=pki, holder=HOLDER,
                            signature_key="EC" if module == OPENSC else "RSA") as placed:
        daemon = user_daemon(tmp_path).start()
        try:
            async with daemon.client(GOV) as page:
                serial = placed.piv.slots[0x9C].cert.serial_number
                chosen = await choose(daemon, page, "sign", serial, module)
                params = {"handle": chosen["handle"], "hashAlgorithm": "SHA-256",
                          "hash": b64(hashlib.sha256(b"blocked").digest())}
                daemon.set_answers({"pin": ["000000", "111111", "222222", "333333"]})
                mark = daemon.transcript_mark()
                failed = await page.error("sign.hash", params, timeout=60)
                assert (failed.code, failed.reason) == (4006, "PIN_LOCKED")
                assert failed.data["unlock"] == "PUK"
                shown = daemon.transcript(mark)
                assert [d["dialog"] for d in shown] == ["pin", "pin", "pin", "pin_locked"]
                assert shown[0]["retry"] is None  # the first ask
                told = [(d["retry"]["countLow"], d["retry"]["finalTry"]) for d in shown[1:3]]
                assert told == RETRY_FLAGS[module]
                assert not any(d["retry"]["locked"] for d in shown[1:3])
                assert shown[3]["unlock"] == "PUK" and shown[3]["token"] == HOLDER
                assert placed.piv.pin_tries == 0 and placed.piv.pin_blocked

                # The right PIN cannot help now.  Both modules report the token locked
                # when its own slot is read (the agent reads just the handle's token at
                # each request; CACKey would forget it at a full slot listing), so the PIN
                # is not even asked for.
                daemon.set_answers({"pin": placed.piv.pin})
                mark = daemon.transcript_mark()
                again = await page.error("sign.hash", params, timeout=60)
                assert (again.reason, again.data["unlock"]) == ("PIN_LOCKED", "PUK")
                assert [d["dialog"] for d in daemon.transcript(mark)] == ["pin_locked"]
                assert placed.piv.pin_tries == 0
        finally:
            assert daemon.stop() == 0, daemon.log_text()[-3000:]


async def next_tokens(page: Client) -> set[str]:
    """The serials of the tokens present, from the next tokens.changed."""
    message = await asyncio.wait_for(page.notifications.get(), EVENT_TIMEOUT)
    assert message["method"] == "tokens.changed"
    return {t["serial"] for t in message["params"]["tokens"] if t.get("present", True)}


async def test_card_pulled_during_a_signature_then_back(pcscd: Pcscd, pki: TestPKI,
                                                        tmp_path: Path) -> None:
    """A slow card pulled while GENERAL AUTHENTICATE runs: the page gets
    TOKEN_NOT_PRESENT, the agent keeps serving, and once the card is back the same
    handle signs again (OpenSC names the token by the card's CHUID, not by its slot)."""
    with piv_card_in_reader(pcscd, pki=pki, holder=HOLDER) as placed:
        daemon = user_daemon(tmp_path).start()
        try:
            async with daemon.client(GOV) as page:
                await page.call("tokens.subscribe")
                serial = placed.piv.slots[0x9C].cert.serial_number
                chosen = await choose(daemon, page, "sign", serial, OPENSC)
                digest = hashlib.sha256(b"pulled").digest()
                params = {"handle": chosen["handle"], "hash": b64(digest),
                          "hashAlgorithm": "SHA-256"}
                daemon.set_answers({"pin": placed.piv.pin})
                # A slow signature: GENERAL AUTHENTICATE takes two seconds.
                placed.piv.delay, placed.piv.delay_ins = 2.0, frozenset({0x87})
                seen = len(placed.piv.apdus)
                signing = page.start("sign.hash", params)
                while not any(a[1] == 0x87 for a in placed.piv.apdus[seen:]):
                    assert not signing.done(), signing.result()
                    await asyncio.sleep(0.02)
                await asyncio.to_thread(placed.remove)  # mid GENERAL AUTHENTICATE
                reply = await asyncio.wait_for(signing, EVENT_TIMEOUT)
                assert reply["error"]["data"]["reason"] == "TOKEN_NOT_PRESENT", reply
                assert reply["error"]["code"] == 4005
                token = chosen["token"]["serial"]
                assert token  # OpenSC's serial, from the card's CHUID
                while token in await next_tokens(page):
                    pass  # the listing follows the PC/SC event

                placed.piv.delay = 0.0
                await asyncio.to_thread(placed.insert)
                while token not in await next_tokens(page):
                    pass
                signed = await page.call("sign.hash", params, timeout=60)
                verify_hash_signature(signed["certificate"], digest, signed["signature"],
                                      scheme="ECDSA", hash_algorithm="SHA-256")
                assert (await page.call("agent.info"))["origin"] == GOV
        finally:
            assert daemon.stop() == 0, daemon.log_text()[-3000:]


async def test_two_readers_two_cards(pcscd: Pcscd, pki: TestPKI, tmp_path: Path) -> None:
    """A card in each of vpcd's two readers: the picker offers both cards' certificates,
    each under its own token and naming its own reader (OpenSC's for the P-256 signing
    key, CACKey's, preferred by the ATR table, for the RSA login key), and each card
    signs with its own key."""
    holders = ("Məmmədova Leyla", "Yılmaz Ayşe")
    with piv_card_in_reader(pcscd, pki=pki, holder=holders[0], reader=0) as first, \
            piv_card_in_reader(pcscd, pki=pki, holder=holders[1], reader=1) as second:
        daemon = user_daemon(tmp_path).start()
        try:
            async with daemon.client(GOV) as page:
                tokens = (await page.call("tokens.subscribe"))["tokens"]
                assert {t["label"] for t in tokens} >= set(holders)
                for placed, holder in ((first, holders[0]), (second, holders[1])):
                    login = await choose(daemon, page, "auth",
                                         placed.piv.slots[0x9A].cert.serial_number, CACKEY)
                    assert login["choice"]["reader"] == placed.reader
                    assert login["choice"]["token_label"] == holder
                    cert = placed.piv.slots[0x9C].cert
                    chosen = await choose(daemon, page, "sign", cert.serial_number, OPENSC)
                    assert chosen["token"]["label"] == holder
                    assert chosen["choice"]["reader"] == placed.reader
                    digest = hashlib.sha256(holder.encode()).digest()
                    daemon.set_answers({"pin": placed.piv.pin})
                    signed = await page.call("sign.hash", {"handle": chosen["handle"],
                                                           "hash": b64(digest),
                                                           "hashAlgorithm": "SHA-256"},
                                             timeout=60)
                    assert unb64(signed["certificate"]) == cert.public_bytes(Encoding.DER)
                    verify_hash_signature(signed["certificate"], digest, signed["signature"],
                                          scheme="ECDSA", hash_algorithm="SHA-256")
                assert first.reader != second.reader
        finally:
            assert daemon.stop() == 0, daemon.log_text()[-3000:]


def test_doctor_names_the_reader_the_card_the_modules_and_the_pin_state(
        pcscd: Pcscd, pki: TestPKI, tmp_path: Path) -> None:
    """``imza-agent doctor`` on a user's machine: the card's reader and product with both
    modules, and each module's token with its reader and PIN state (one try left)."""
    config = tmp_path / "config.toml"
    config.write_text("[tokens]\nknown_modules = true\n", encoding="utf-8")
    env = {**os.environ, "IMZA_AGENT_HOME": str(tmp_path / "home")}
    base = [sys.executable, "-m", "agent.cli", "--config", str(config)]
    with piv_card_in_reader(pcscd, pki=pki, holder=HOLDER, signature_key="RSA",
                            reader=1) as placed:
        placed.piv.pin_tries = 1
        done = subprocess.run([*base, "doctor", "--json"], env=env, capture_output=True,
                              text=True, timeout=120, cwd=REPO)
        report = json.loads(done.stdout)
        [card] = report["pcsc"]["cards"]
        assert card["reader"] == placed.reader == "Virtual PCD 00 01"
        assert card["product"].startswith("PIV card")
        assert card["modules"] == [str(CACKEY), str(OPENSC)]  # the ATR table's order
        tokens = {t["source"]: t for t in report["tokens"] if t["label"] == HOLDER}
        assert set(tokens) == {str(OPENSC), str(CACKEY)}
        # OpenSC names its slot after the reader; CACKey 0.7.11 calls every slot
        # "CACKey Slot" and leaves the slot's manufacturer blank.
        assert tokens[str(OPENSC)]["reader"] == placed.reader
        assert tokens[str(CACKEY)]["reader"] is None
        assert tokens[str(OPENSC)]["pinState"] == "final try"
        text = subprocess.run([*base, "--language", "en", "doctor"], env=env,
                              capture_output=True, text=True, timeout=120, cwd=REPO).stdout
        assert f"Card in “{placed.reader}”: PIV card" in text
        assert text.count(f"“{HOLDER}” — {placed.reader}") == 1, text
        assert "PIN last try before it is blocked" in text
