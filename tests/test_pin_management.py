"""Changing and unblocking the user PIN on a real SoftHSM2 token, through the worker
process, and proof that no page can start either.

Each test gets a token of its own (SO PIN, user PIN, one P-256 key pair generated on it),
so the session's shared bed keeps its PINs.  What SoftHSM does and does not do, checked
below: it raises CKF_USER_PIN_COUNT_LOW after a wrong PIN but never blocks the PIN
(``test_softhsm_counts_no_tries_and_never_blocks``), so the "blocked" path is tested on
the virtual PIV card (tests/test_pin_piv.py); here unblocking is C_Login(SO) + C_InitPIN.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from testbed.softhsm import MODULE, SOFTHSM_UTIL, _require_softhsm, _write_conf

from agent.errors import PinIncorrect
from agent.keystores.base import KeyRef, Secret, SignMechanism
from agent.keystores.base import KeyType as AgentKeyType
from agent.keystores.pkcs11.pin_management import PinManagementError, PinProblem, TokenPins
from agent.keystores.pkcs11.store import Pkcs11Store
from agent.pinmgmt.use_case import (
    TokenChoiceError,
    change_pin,
    check_new_pin,
    choose_token,
    manageable_tokens,
    unblock_pin,
)
from agent.protocol.enums import EcdsaEncoding, HashAlgorithm, Scheme

pytestmark = [pytest.mark.softhsm]

USER_PIN = "1234"
SO_PIN = "31415926"
LABEL = "PIN test Ə"
P256_OID = "1.2.840.10045.3.1.7"


@dataclass
class PinBed:
    env: dict[str, str]
    key_id: bytes
    public_key: ec.EllipticCurvePublicKey


def _make_token(tmp: Path) -> PinBed:
    util = _require_softhsm()
    conf = _write_conf(tmp)
    env = {"SOFTHSM2_CONF": str(conf)}
    done = subprocess.run([util, "--init-token", "--free", "--label", LABEL, "--so-pin",
                           SO_PIN, "--pin", USER_PIN], env=env, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, f"{SOFTHSM_UTIL} failed: {done.stderr}"
    # A child process: python-pkcs11 reads SOFTHSM2_CONF once per process.
    script = (
        "import sys, pkcs11\n"
        "from pkcs11 import Attribute, KeyType\n"
        "from pkcs11.util.ec import encode_named_curve_parameters, encode_ec_public_key\n"
        f"lib = pkcs11.lib({str(MODULE)!r})\n"
        f"token = lib.get_token(token_label={LABEL!r})\n"
        f"with token.open(rw=True, user_pin={USER_PIN!r}) as s:\n"
        f"    params = s.create_domain_parameters(KeyType.EC, {{Attribute.EC_PARAMS: "
        f"encode_named_curve_parameters({P256_OID!r})}}, local=True)\n"
        "    pub, priv = params.generate_keypair(store=True, id=b'\\x01\\x02', label='k',\n"
        "        private_template={Attribute.SENSITIVE: True, Attribute.SIGN: True})\n"
        "    sys.stdout.buffer.write(encode_ec_public_key(pub))\n")
    out = subprocess.run([sys.executable, "-c", script], env={**_os_env(), **env},
                         capture_output=True, check=True).stdout
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    public = load_der_public_key(out)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    return PinBed(env, b"\x01\x02", public)


def _os_env() -> dict[str, str]:
    import os

    return dict(os.environ)


@pytest.fixture
def bed(tmp_path: Path) -> PinBed:
    return _make_token(tmp_path)


@pytest.fixture
async def store(bed: PinBed) -> AsyncIterator[Pkcs11Store]:
    store = Pkcs11Store(MODULE, env=bed.env, call_timeout=15)
    try:
        yield store
    finally:
        await store.close()


async def _token(store: Pkcs11Store):  # type: ignore[no-untyped-def]
    [token] = [t for t in await store.tokens() if t.label == LABEL]
    return token


async def _sign_with(store: Pkcs11Store, bed: PinBed, pin: str) -> None:
    """Log in with ``pin`` and make a signature that verifies with the token's key."""
    token = await _token(store)
    await store.logout(token)
    await store.login(token, Secret(pin))
    digest = hashlib.sha256(b"signed after the PIN changed").digest()
    key = KeyRef(store.store_id, token.token_id, bed.key_id.hex(), AgentKeyType.EC)
    mechanism = SignMechanism(Scheme.ECDSA, HashAlgorithm.SHA256, EcdsaEncoding.DER)
    signature = await store.sign(key, digest, mechanism)
    bed.public_key.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))


async def _login_fails(store: Pkcs11Store, pin: str) -> None:
    token = await _token(store)
    with pytest.raises(PinIncorrect):
        await store.login(token, Secret(pin))


# --- change ------------------------------------------------------------------------------------

async def test_change_pin_then_sign_with_the_new_pin(store: Pkcs11Store, bed: PinBed) -> None:
    await _sign_with(store, bed, USER_PIN)  # logged in: the change must cope with that
    [item] = await manageable_tokens([store])
    assert item.state.pin.min_length == 4 and item.state.pin.max_length == 255
    after = await change_pin(item, Secret(USER_PIN), Secret("86420"))
    assert after is not None and not after.pin.locked
    await _login_fails(store, USER_PIN)
    await _sign_with(store, bed, "86420")


async def test_wrong_old_pin_changes_nothing_and_says_so(store: Pkcs11Store,
                                                         bed: PinBed) -> None:
    [item] = await manageable_tokens([store])
    assert not item.state.pin.count_low
    with pytest.raises(PinManagementError) as caught:
        await change_pin(item, Secret("0000"), Secret("5555"))
    assert caught.value.problem is PinProblem.WRONG_PIN
    # SoftHSM raises COUNT_LOW after a wrong PIN: the state read after the failure has it.
    assert caught.value.state is not None and caught.value.state.pin.count_low
    await _login_fails(store, "5555")
    await _sign_with(store, bed, USER_PIN)


async def test_a_new_pin_out_of_the_length_rule_costs_no_try(store: Pkcs11Store,
                                                             bed: PinBed) -> None:
    [item] = await manageable_tokens([store])
    assert check_new_pin(Secret("12"), Secret("12"), item.state.pin) is PinProblem.PIN_LENGTH
    assert check_new_pin(Secret("1234"), Secret("1243"), item.state.pin) is PinProblem.MISMATCH
    assert check_new_pin(Secret("12345"), Secret("12345"), item.state.pin) is None
    # Past the front end's check, the worker refuses it before the token is asked.
    with pytest.raises(PinManagementError) as caught:
        await change_pin(item, Secret("0000"), Secret("12"))
    assert caught.value.problem is PinProblem.PIN_LENGTH
    [again] = await manageable_tokens([store])
    assert not again.state.pin.count_low  # the wrong old PIN never reached the token
    await _sign_with(store, bed, USER_PIN)


# --- unblock -----------------------------------------------------------------------------------

async def test_softhsm_counts_no_tries_and_never_blocks(store: Pkcs11Store) -> None:
    token = await _token(store)
    for _ in range(12):
        with pytest.raises(PinIncorrect):
            await store.login(token, Secret("0000"))
    [item] = await manageable_tokens([store])
    assert item.state.pin.count_low and not item.state.pin.final_try
    assert not item.state.pin.locked  # SoftHSM2 has no retry counter that blocks


async def test_unblock_with_the_so_pin_sets_a_new_pin(store: Pkcs11Store, bed: PinBed) -> None:
    await _sign_with(store, bed, USER_PIN)  # a user login open in the worker
    await _login_fails(store, "0000")
    [item] = await manageable_tokens([store])
    after = await unblock_pin(item, Secret(SO_PIN), Secret("97531"))
    assert after is not None and not after.pin.count_low  # C_InitPIN reset the counter
    await _login_fails(store, USER_PIN)
    await _sign_with(store, bed, "97531")


async def test_a_wrong_puk_is_a_wrong_puk_and_sets_nothing(store: Pkcs11Store,
                                                           bed: PinBed) -> None:
    [item] = await manageable_tokens([store])
    with pytest.raises(PinManagementError) as caught:
        await unblock_pin(item, Secret("00000000"), Secret("97531"))
    assert caught.value.problem is PinProblem.WRONG_PUK
    state = caught.value.state
    assert state is not None and not state.puk_locked
    # SoftHSM raises the SO PIN's COUNT_LOW as it does the user PIN's.
    assert state.puk_count_low
    await _login_fails(store, "97531")
    await _sign_with(store, bed, USER_PIN)
    # And the right SO PIN still works afterwards.
    await unblock_pin(item, Secret(SO_PIN), Secret("24680"))
    await _sign_with(store, bed, "24680")


async def test_no_pin_leaves_the_worker_in_errors(store: Pkcs11Store, bed: PinBed,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    [item] = await manageable_tokens([store])
    for call, first in ((change_pin, "7777"), (unblock_pin, "66666666")):
        with pytest.raises(PinManagementError) as caught:
            await call(item, Secret(first), Secret("12121"))
        assert first not in repr(caught.value) and first not in str(caught.value.__dict__)
    assert "7777" not in caplog.text and "66666666" not in caplog.text
    assert "12121" not in caplog.text


async def test_token_gone_is_token_not_present(store: Pkcs11Store, bed: PinBed) -> None:
    [item] = await manageable_tokens([store])
    gone = type(item)(token=type(item.token)(**{**item.token.__dict__,
                                                "token_id": "nobody/0000"}),
                      state=item.state, pins=TokenPins(store))
    with pytest.raises(PinManagementError) as caught:
        await change_pin(gone, Secret(USER_PIN), Secret("5555"))
    assert caught.value.problem is PinProblem.TOKEN_NOT_PRESENT


async def test_choose_token_by_serial_or_label(store: Pkcs11Store) -> None:
    tokens = await manageable_tokens([store])
    [item] = tokens
    assert choose_token(tokens, None) is item
    assert choose_token(tokens, item.token.serial) is item
    assert choose_token(tokens, LABEL.upper()) is item
    with pytest.raises(TokenChoiceError):
        choose_token(tokens, "no such token")
    with pytest.raises(TokenChoiceError):
        choose_token([], None)


# --- a page can start neither ------------------------------------------------------------------

PIN_METHODS = ("pin.change", "pin.unblock", "token.unblock", "token.changePin", "pin.set",
               "tokens.unblock", "pin.reset", "token.initPin")


def test_no_registered_method_manages_a_pin() -> None:
    from agent.methods import register_all
    from agent.protocol.catalog import METHODS  # the published contract
    from agent.protocol.dispatch import Dispatcher

    dispatcher = Dispatcher()
    register_all(dispatcher, object())  # type: ignore[arg-type]  # registration only
    names = set(dispatcher.methods) | set(METHODS)
    assert "sign.hash" in names  # the check sees the real registry
    for name in names:
        lowered = name.lower()
        assert "pin" not in lowered and "unblock" not in lowered and "puk" not in lowered, name


def test_pages_layers_never_load_pin_management() -> None:
    """Importing every protocol method, the dispatcher and the transports loads none of
    the PIN-management modules (a direct import is also banned in tests/test_layers.py)."""
    script = (
        "import sys, pkgutil, importlib\n"
        "import agent.methods, agent.protocol, agent.transport\n"
        "for pkg in (agent.methods, agent.protocol, agent.transport):\n"
        "    for info in pkgutil.iter_modules(pkg.__path__):\n"
        "        importlib.import_module(pkg.__name__ + '.' + info.name)\n"
        "from agent.methods import register_all\n"
        "bad = [m for m in sys.modules if m.startswith(('agent.pinmgmt', 'agent.ui.qt')) or\n"
        "    m in ('agent.keystores.pkcs11.pin_management', 'agent.keystores.pkcs11.pin_ops',\n"
        "          'agent.commands.pin_command')]\n"
        "print(len([m for m in sys.modules if m.startswith('agent.methods.')]), bad)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1]).stdout.split(" ", 1)
    assert int(out[0]) >= 5  # the methods were really imported
    assert out[1].strip() == "[]"


@pytest.fixture(scope="module")
def daemon_bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, PinBed]]:
    from daemon import Daemon

    tmp = tmp_path_factory.mktemp("pinpage")
    bed = _make_token(tmp / "softhsm")
    daemon = Daemon(home=tmp / "home", modules=[MODULE], env=bed.env).start()
    yield daemon, bed
    assert daemon.stop() == 0, daemon.log_text()[-3000:]


@pytest.mark.daemon
@pytest.mark.parametrize("transport", ["ws", "wss"])
async def test_a_page_cannot_change_or_unblock_a_pin(daemon_bed: tuple[object, PinBed],
                                                     transport: str) -> None:
    from daemon import Daemon

    daemon, bed = daemon_bed
    assert isinstance(daemon, Daemon)
    params = {"tokenId": "x", "oldPin": USER_PIN, "newPin": "5555", "puk": SO_PIN}
    async with daemon.client("https://www.e-gov.az", transport) as page:
        info = await page.call("agent.info")
        assert info  # the page is served: the refusals below are about the methods
        for name in PIN_METHODS:
            error = await page.error(name, params)
            assert error.code == -32601, (name, error.error)
            assert error.reason == "METHOD_NOT_FOUND", (name, error.error)
    # The token's PIN is what it was.
    lib_env = {**_os_env(), **bed.env}
    check = ("import pkcs11\n"
             f"t = pkcs11.lib({str(MODULE)!r}).get_token(token_label={LABEL!r})\n"
             f"t.open(user_pin={USER_PIN!r}).close(); print('ok')\n")
    done = subprocess.run([sys.executable, "-c", check], env=lib_env, capture_output=True,
                          text=True, check=False)
    assert done.stdout.strip() == "ok", done.stderr[-500:]



async def test_cli_asks_before_the_last_puk_try(store: Pkcs11Store, bed: PinBed,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A token that reports the SO PIN's last try (SoftHSM never does: the state is set
    here as such a token reports it) gets the warning and a typed "yes" first."""
    import dataclasses

    from agent import i18n
    from agent.commands.pin_command import _unblock

    [item] = await manageable_tokens([store])
    last = dataclasses.replace(item, state=dataclasses.replace(item.state, puk_final_try=True))
    typed = iter([SO_PIN, "97531", "97531"])
    i18n.set_language("tr")
    try:
        code = await _unblock(last, lambda _p: next(typed), lambda _p: "hayır")
        shown = capsys.readouterr().out
        assert code == 1 and "SON PUK DENEMESİ" in shown and "Hiçbir şey değiştirilmedi." in shown
        await _login_fails(store, "97531")
        code = await _unblock(last, lambda _p: next(typed), lambda _p: " Evet ")
        assert code == 0 and "PIN blokesi kaldırıldı" in capsys.readouterr().out
    finally:
        i18n.set_language("en")
    await _sign_with(store, bed, "97531")
