"""PIN management end to end on the virtual PIV card (tests/piv_card.py) through OpenSC's
``opensc-pkcs11.so`` over pcscd and vpcd: block the PIN, unblock it with the PUK, sign with
the new PIN; change the PIN; a wrong PUK counts down; the CLI with a real terminal; the
doctor's PIN state.  Run under the pcscd lock (docs/testing.md).

OpenSC unblocks through PKCS#11 only with ``user_pin_unblock_style`` set (its default is
"none"); the agent supplies that for the unblock call (agent/keystores/pkcs11/
pin_management.py).  OpenSC reports the user PIN's FINAL_TRY and LOCKED flags, but no flag
for the PUK: the PUK's countdown is seen on the card here.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from piv_card import CardInReader, piv_card_in_reader
from testbed.pki import TestPKI, build_pki
from vcard import Pcscd

from agent.errors import PinIncorrect, PinLocked
from agent.keystores.base import CertificateEntry, Secret, SignMechanism, TokenInfo
from agent.keystores.pkcs11.pin_management import PinManagementError, PinProblem
from agent.keystores.pkcs11.store import Pkcs11Store
from agent.pinmgmt.use_case import change_pin, manageable_tokens, unblock_pin
from agent.protocol.enums import EcdsaEncoding, HashAlgorithm, Scheme

pytestmark = [pytest.mark.pcscd]

OPENSC = Path("/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pki() -> TestPKI:
    return build_pki()


@pytest.fixture
def card(tmp_path: Path, pki: TestPKI) -> Iterator[CardInReader]:
    if not OPENSC.is_file():
        pytest.fail(f"{OPENSC} is missing (`apt-get install -y opensc-pkcs11`)", pytrace=False)
    pcscd = Pcscd(tmp_path / "pcscd").start()
    try:
        with piv_card_in_reader(pcscd, pki=pki, holder="Hüseynov Pin") as placed:
            yield placed
    finally:
        pcscd.stop()


@pytest.fixture
async def store(card: CardInReader) -> AsyncIterator[Pkcs11Store]:
    store = Pkcs11Store(OPENSC, call_timeout=30)
    try:
        yield store
    finally:
        await store.close()


async def _token(store: Pkcs11Store) -> TokenInfo:
    [token] = await store.tokens()
    return token


async def _sign_with(store: Pkcs11Store, pin: str) -> int:
    """Log in with ``pin`` and sign with every key of the card; each signature verifies
    with its certificate's key.  Returns how many keys signed."""
    token = await _token(store)
    await store.logout(token)
    await store.login(token, Secret(pin))
    digest = hashlib.sha256(b"a signature after the PIN was managed").digest()
    signed = 0
    for entry in await store.certificates(token):
        if entry.key is None:
            continue
        await sign_verified(store, entry, digest,
                            Secret(pin) if entry.key.always_authenticate else None)
        signed += 1
    return signed


async def sign_verified(store: Pkcs11Store, entry: CertificateEntry, digest: bytes,
                        credential: Secret | None) -> bytes:
    """``entry``'s key signs the SHA-256 ``digest`` on the card; the signature verifies
    with the key of ``entry``'s certificate (else this raises)."""
    from cryptography import x509

    assert entry.key is not None
    public = x509.load_der_x509_certificate(entry.der).public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        mechanism = SignMechanism(Scheme.ECDSA, HashAlgorithm.SHA256, EcdsaEncoding.DER)
        signature = await store.sign(entry.key, digest, mechanism, credential)
        public.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        mechanism = SignMechanism(Scheme.RSA_PKCS1_V15, HashAlgorithm.SHA256)
        signature = await store.sign(entry.key, digest, mechanism, credential)
        public.verify(signature, digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    return signature


async def _block(store: Pkcs11Store, card: CardInReader) -> None:
    token = await _token(store)
    for left in range(card.piv.pin_max_tries - 1, 0, -1):
        with pytest.raises(PinIncorrect) as wrong:
            await store.login(token, Secret("000000"))
        assert card.piv.pin_tries == left
        assert wrong.value.status.final_try == (left == 1)  # OpenSC reports the last try
    with pytest.raises(PinLocked):
        await store.login(token, Secret("000000"))
    assert card.piv.pin_blocked


async def test_block_unblock_with_the_puk_and_sign_with_the_new_pin(
        store: Pkcs11Store, card: CardInReader) -> None:
    await _block(store, card)
    [item] = await manageable_tokens([store])
    assert item.state.pin.locked
    assert (item.state.pin.min_length, item.state.pin.max_length) == (4, 8)
    await unblock_pin(item, Secret(card.piv.puk), Secret("246810"))
    assert card.piv.pin == "246810" and card.piv.pin_tries == card.piv.pin_max_tries
    assert card.piv.puk_tries == card.piv.puk_max_tries
    [after] = await manageable_tokens([store])
    assert not after.state.pin.locked
    assert await _sign_with(store, "246810") == 2


async def test_change_the_pin_then_sign(store: Pkcs11Store, card: CardInReader) -> None:
    old = card.piv.pin
    [item] = await manageable_tokens([store])
    with pytest.raises(PinManagementError) as wrong:
        await change_pin(item, Secret("111111"), Secret("135790"))
    assert wrong.value.problem is PinProblem.WRONG_PIN
    assert card.piv.pin == old and card.piv.pin_tries == card.piv.pin_max_tries - 1
    await change_pin(item, Secret(old), Secret("135790"))
    assert card.piv.pin == "135790"
    assert card.piv.pin_tries == card.piv.pin_max_tries  # a right PIN restores the tries
    with pytest.raises(PinIncorrect):
        await store.login(await _token(store), Secret(old))
    assert await _sign_with(store, "135790") == 2


async def test_a_wrong_puk_counts_down_to_blocked(store: Pkcs11Store,
                                                  card: CardInReader) -> None:
    await _block(store, card)
    [item] = await manageable_tokens([store])
    for left in range(card.piv.puk_max_tries - 1, -1, -1):
        with pytest.raises(PinManagementError) as wrong:
            await unblock_pin(item, Secret("87654321"), Secret("246810"))
        assert card.piv.puk_tries == left
        # The card answers the last wrong PUK with "blocked" (6983), not with 63C0.
        assert wrong.value.problem is (PinProblem.WRONG_PUK if left else PinProblem.PUK_LOCKED)
    assert card.piv.puk_blocked and card.piv.pin_blocked
    with pytest.raises(PinManagementError) as locked:
        await unblock_pin(item, Secret(card.piv.puk), Secret("246810"))
    assert locked.value.problem is PinProblem.PUK_LOCKED  # the right PUK is too late now
    assert card.piv.pin != "246810"


async def test_a_new_pin_the_card_refuses_changes_nothing(store: Pkcs11Store,
                                                          card: CardInReader) -> None:
    old = card.piv.pin
    [item] = await manageable_tokens([store])
    with pytest.raises(PinManagementError) as short:
        await change_pin(item, Secret(old), Secret("123"))  # under OpenSC's 4
    assert short.value.problem is PinProblem.PIN_LENGTH
    # Inside OpenSC's 4–8, but a PIV card wants 6–8 digits: the card's refusal.
    for refused in ("12345", "abcdef"):
        with pytest.raises(PinManagementError) as caught:
            await change_pin(item, Secret(old), Secret(refused))
        assert caught.value.problem is PinProblem.PIN_REJECTED
    assert card.piv.pin == old and card.piv.pin_tries == card.piv.pin_max_tries


# --- the CLI in a real terminal ------------------------------------------------------------

def _config(tmp_path: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(f'[tokens]\nmodules = ["{OPENSC}"]\nknown_modules = false\n',
                      encoding="utf-8")
    return config


def _converse(argv: list[str], answers: list[tuple[str, str]], env: dict[str, str],
              timeout: float = 60) -> tuple[int, str]:
    """Run ``argv`` on a pseudo-terminal; on each expected prompt type its answer.
    Returns the exit status and everything the terminal showed."""
    import pty  # POSIX only: imported here so that collecting this module works on Windows

    pid, fd = pty.fork()
    if pid == 0:  # the child: the command itself
        os.execve(argv[0], argv, env)
    shown = b""
    pending = list(answers)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
        if pending and pending[0][0].encode() in shown.split(b"\n")[-1]:
            os.write(fd, (pending.pop(0)[1] + "\n").encode())
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode("utf-8", "replace")


def test_cli_unblocks_and_changes_without_echo(card: CardInReader, tmp_path: Path) -> None:
    card.piv.pin_tries = 0  # blocked
    env = {**os.environ, "IMZA_AGENT_HOME": str(tmp_path / "home"), "LANGUAGE": "en"}
    argv = [sys.executable, "-m", "agent.cli", "--config", str(_config(tmp_path)),
            "--language", "en", "pin", "unblock"]
    code, shown = _converse(argv, [("PUK", card.piv.puk), ("New PIN (", "97531246"),
                                   ("again", "97531246")], env)
    assert code == 0, shown
    assert "The PIN was unblocked" in shown and "4–8 characters" in shown
    assert card.piv.pin == "97531246"
    assert card.piv.puk not in shown and "97531246" not in shown  # nothing echoed

    argv[-1] = "change"
    code, shown = _converse(argv, [("Current PIN", "97531246"), ("New PIN (", "1357913"),
                                   ("again", "1357912")], env)
    assert code == 1 and "differ" in shown and card.piv.pin == "97531246"
    assert card.piv.pin_tries == card.piv.pin_max_tries  # a typing slip costs no try
    code, shown = _converse(argv, [("Current PIN", "97531246"), ("New PIN (", "1357913"),
                                   ("again", "1357913")], env)
    assert code == 0 and "The PIN was changed" in shown, shown
    assert card.piv.pin == "1357913" and "1357913" not in shown


def test_cli_speaks_the_language_and_refuses_a_wrong_puk(card: CardInReader,
                                                        tmp_path: Path) -> None:
    card.piv.pin_tries = 0
    env = {**os.environ, "IMZA_AGENT_HOME": str(tmp_path / "home")}
    argv = [sys.executable, "-m", "agent.cli", "--config", str(_config(tmp_path)),
            "--language", "az", "pin", "unblock"]
    code, shown = _converse(argv, [("PUK", "11112222"), ("Yeni PIN (", "97531246"),
                                   ("təkrar", "97531246")], env)
    assert code == 1, shown
    assert "PUK səhvdir." in shown and card.piv.puk_tries == card.piv.puk_max_tries - 1
    assert card.piv.pin_blocked


# --- doctor ---------------------------------------------------------------------------------

def test_doctor_names_the_card_the_module_and_the_pin_state(card: CardInReader,
                                                            tmp_path: Path) -> None:
    card.piv.pin_tries = 0
    env = {**os.environ, "IMZA_AGENT_HOME": str(tmp_path / "home")}
    base = [sys.executable, "-m", "agent.cli", "--config", str(_config(tmp_path))]
    done = subprocess.run([*base, "doctor", "--json"], env=env, capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    report = json.loads(done.stdout)
    [token] = [t for t in report["tokens"] if t["kind"] == "pkcs11"]
    assert token["label"] == "Hüseynov Pin" and token["source"] == str(OPENSC)
    assert token["pinState"] == "locked" and token["pukState"] == "ok"
    text = subprocess.run([*base, "--language", "en", "doctor"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=REPO).stdout
    assert "“Hüseynov Pin”" in text and f"module: {OPENSC}" in text
    assert "PIN BLOCKED" in text and "imza-agent pin unblock --token" in text
    card.piv.pin_tries = 1
    text = subprocess.run([*base, "--language", "en", "doctor"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=REPO).stdout
    assert "PIN last try before it is blocked" in text and "BLOCKED" not in text
