"""SP 800-73's four key slots of the virtual PIV card, through the real middleware.

The other PIV tests put keys in 9A and 9C, the two a signing agent uses.  Here the card
holds all four (9A PIV authentication, 9C digital signature, 9D key management, 9E card
authentication), and the agent's PKCS#11 store reads it through OpenSC and through
CACKey as it would a card in a user's reader: each certificate is found in its own
container and paired with its key, and each key signs on the card (the card's log shows
GENERAL AUTHENTICATE for each slot).  CACKey 0.7.11 knows three PIV slots: it never
asks for 9E's container, so it offers 9A, 9C and 9D.  Nothing here talks to the card
except to set it up and to look at what it was sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from piv_card import CardInReader, piv_card_in_reader
from test_pin_piv import sign_verified
from testbed.pki import TestPKI, build_pki
from vcard import Pcscd

from agent.keystores.base import CertificateEntry, KeyType, Secret
from agent.keystores.pkcs11.store import Pkcs11Store

pytestmark = [pytest.mark.pcscd]

OPENSC = Path("/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so")
CACKEY = Path("/usr/lib/pkcs11/libcackey.so")
HOLDER = "Dörd Slot Kartı"
FOUR_SLOTS = {0x9A, 0x9C, 0x9D, 0x9E}
GENERAL_AUTHENTICATE, GET_DATA = 0x87, 0xCB
CARD_AUTH_CONTAINER = bytes.fromhex("5C035FC101")  # 9E's certificate (GET DATA's data)
# The slots each module offers: CACKey's PIV support stops at key management.
SLOTS = {OPENSC: FOUR_SLOTS, CACKEY: FOUR_SLOTS - {0x9E}}


@pytest.fixture(scope="module")
def pki() -> TestPKI:
    return build_pki()


@pytest.fixture(params=[OPENSC, CACKEY], ids=["opensc", "cackey"])
def module(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    if not path.is_file():
        pytest.fail(f"{path} is missing (opensc-pkcs11 and cackey are test packages)",
                    pytrace=False)
    return path


@pytest.fixture
def card(tmp_path: Path, pki: TestPKI, module: Path) -> Iterator[CardInReader]:
    """A card with keys in all four slots; RSA only for CACKey, which reads every PIV key
    as RSA (docs/smartcards.md)."""
    pcscd = Pcscd(tmp_path / "pcscd").start()
    try:
        with piv_card_in_reader(pcscd, pki=pki, holder=HOLDER, all_slots=True,
                                signature_key="EC" if module == OPENSC else "RSA") as placed:
            yield placed
    finally:
        pcscd.stop()


async def _entries(module: Path, *, pin: str | None) -> tuple[Pkcs11Store, list[CertificateEntry]]:
    """A fresh store's view of the card's token, logged in with ``pin`` when given (a
    fresh store: the certificate listing is cached per store)."""
    store = Pkcs11Store(module, call_timeout=30)
    [token] = [t for t in await store.tokens() if t.label == HOLDER]
    if pin is not None:
        await store.login(token, Secret(pin))
    return store, await store.certificates(token)


def _slot_of(card: CardInReader) -> dict[bytes, int]:
    return {key.cert.public_bytes(Encoding.DER): slot for slot, key in card.piv.slots.items()}


async def test_each_slot_is_found_in_its_container_and_signs(module: Path,
                                                             card: CardInReader) -> None:
    slot_of = _slot_of(card)
    assert set(slot_of.values()) == FOUR_SLOTS

    # Before any PIN: every certificate is read from its container.
    store, entries = await _entries(module, pin=None)
    await store.close()
    assert sorted(slot_of[e.der] for e in entries) == sorted(SLOTS[module])
    asked_9e = any(a[1] == GET_DATA and a[5:10] == CARD_AUTH_CONTAINER for a in card.piv.apdus)
    assert asked_9e == (0x9E in SLOTS[module])  # left out by the module, not lost
    if module == OPENSC:
        # The card-authentication key needs no PIN (SP 800-73-4), and OpenSC shows it
        # before the login; the other three are private objects until then.
        assert {slot_of[e.der] for e in entries if e.key is not None} == {0x9E}

    store, entries = await _entries(module, pin=card.piv.pin)
    try:
        keys = {slot_of[e.der]: e for e in entries if e.key is not None}
        assert set(keys) == SLOTS[module], [(hex(slot_of[e.der]), e.key) for e in entries]
        # Only the signature key wants the PIN again per use; CACKey knows no
        # CKA_ALWAYS_AUTHENTICATE (it VERIFYs at each login instead).
        always = {slot for slot, e in keys.items() if e.key and e.key.always_authenticate}
        assert always == ({0x9C} if module == OPENSC else set())

        seen = len(card.piv.apdus)
        for slot, entry in sorted(keys.items()):
            assert entry.key is not None
            digest = hashlib.sha256(f"slot {slot:X}".encode()).digest()
            public = x509.load_der_x509_certificate(entry.der).public_key()
            assert (entry.key.key_type is KeyType.EC) == \
                isinstance(public, ec.EllipticCurvePublicKey)
            await sign_verified(store, entry, digest, Secret(card.piv.pin)
                                if entry.key.always_authenticate else None)
        # Each signature was made on the card, by the key in its own slot (P2).
        used = {apdu[3] for apdu in card.piv.apdus[seen:] if apdu[1] == GENERAL_AUTHENTICATE}
        assert used == SLOTS[module]
        assert card.piv.pin_tries == card.piv.pin_max_tries
    finally:
        await store.close()
