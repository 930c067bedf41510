"""Crash isolation and PIN states, with a fault-injecting PKCS#11 module in front of SoftHSM.

The module (tests/native/faulty_pkcs11.c) reads its mode from a file before each call it
wraps, so one worker sees the mode change while it runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from testbed import SoftHsmBed
from testbed.native import build_faulty_module

from agent.errors import (
    AgentError,
    InternalError,
    LoginRequired,
    ModuleCrashed,
    ModuleTimeout,
    ModuleUnavailable,
    PinIncorrect,
    PinLocked,
    Unsupported,
)
from agent.keystores.base import PIN_PAD, CertificateEntry, KeyRef, Secret, SignMechanism, TokenInfo
from agent.keystores.mechanisms import verify_with_certificate
from agent.keystores.pkcs11 import Pkcs11Store, wire
from agent.protocol.enums import HashAlgorithm, Scheme

ECDSA = SignMechanism(Scheme.ECDSA, HashAlgorithm.SHA256)
DIGEST = hashlib.sha256(b"isolation").digest()
LIBC = Path("/lib/x86_64-linux-gnu/libc.so.6")


@pytest.fixture(scope="session")
def faulty_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_faulty_module(tmp_path_factory.mktemp("faulty-pkcs11"))


@dataclass
class FaultyBed:
    store: Pkcs11Store
    set_mode: Callable[[str], None]
    env: dict[str, str]


def _faulty_env(softhsm: SoftHsmBed, mode_file: Path) -> dict[str, str]:
    return {**softhsm.env, "FAULTY_PKCS11_TARGET": str(softhsm.module),
            "FAULTY_PKCS11_MODE_FILE": str(mode_file),
            "FAULTY_PKCS11_PAD_PIN": softhsm.tokens["A"].pin}


@pytest.fixture
async def faulty(softhsm: SoftHsmBed, faulty_module: Path,
                 tmp_path: Path) -> AsyncIterator[FaultyBed]:
    mode_file = tmp_path / "mode"
    mode_file.write_text("", encoding="utf-8")
    env = _faulty_env(softhsm, mode_file)
    store = Pkcs11Store(faulty_module, env=env, call_timeout=1.5, pin_pad_timeout=5)
    try:
        yield FaultyBed(store, lambda mode: mode_file.write_text(mode, encoding="utf-8"), env)
    finally:
        mode_file.write_text("", encoding="utf-8")
        await store.close()


async def _token_a(store: Pkcs11Store, softhsm: SoftHsmBed) -> TokenInfo:
    [token] = [t for t in await store.tokens() if t.label == softhsm.tokens["A"].label]
    return token


async def _ec_sign_key(store: Pkcs11Store, softhsm: SoftHsmBed) -> tuple[TokenInfo, KeyRef]:
    token = await _token_a(store, softhsm)
    der = softhsm.identity("ec_sign").cert.public_bytes(Encoding.DER)
    entries: list[CertificateEntry] = await store.certificates(token)
    [entry] = [e for e in entries if e.der == der]
    assert entry.key is not None
    return token, entry.key


async def _sign_and_verify(store: Pkcs11Store, key: KeyRef, softhsm: SoftHsmBed) -> None:
    signature = await store.sign(key, DIGEST, ECDSA)
    verify_with_certificate(softhsm.identity("ec_sign").cert, DIGEST, signature, ECDSA)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --- crashes and hangs ------------------------------------------------------------------------

@pytest.mark.softhsm
async def test_crash_during_sign_then_recovery(faulty: FaultyBed, softhsm_store: Pkcs11Store,
                                               softhsm: SoftHsmBed) -> None:
    token, key = await _ec_sign_key(faulty.store, softhsm)
    await faulty.store.login(token, Secret(softhsm.tokens["A"].pin))
    plain_token, plain_key = await _ec_sign_key(softhsm_store, softhsm)
    await softhsm_store.login(plain_token, Secret(softhsm.tokens["A"].pin))
    crashed_pid = faulty.store.worker.pid
    assert crashed_pid is not None

    faulty.set_mode("crash_on_sign")
    with pytest.raises(ModuleCrashed) as caught:
        await faulty.store.sign(key, DIGEST, ECDSA)
    assert caught.value.to_wire()["data"] == {"reason": "INTERNAL", "detail": "MODULE_CRASHED"}
    assert faulty.store.worker.pid is None and not _alive(crashed_pid)

    await _sign_and_verify(softhsm_store, plain_key, softhsm)  # the other store never noticed

    faulty.set_mode("")
    with pytest.raises(LoginRequired):  # the login died with the worker
        await faulty.store.sign(key, DIGEST, ECDSA)
    assert faulty.store.worker.pid not in (None, crashed_pid)  # restarted on demand
    await faulty.store.login(token, Secret(softhsm.tokens["A"].pin))
    await _sign_and_verify(faulty.store, key, softhsm)


@pytest.mark.softhsm
async def test_hang_during_sign_times_out_then_recovery(faulty: FaultyBed,
                                                        softhsm_store: Pkcs11Store,
                                                        softhsm: SoftHsmBed) -> None:
    token, key = await _ec_sign_key(faulty.store, softhsm)
    await faulty.store.login(token, Secret(softhsm.tokens["A"].pin))
    hung_pid = faulty.store.worker.pid
    assert hung_pid is not None

    faulty.set_mode("hang_on_sign")
    with pytest.raises(ModuleTimeout):
        await faulty.store.sign(key, DIGEST, ECDSA)
    assert not _alive(hung_pid)  # killed, not left sleeping

    assert {t.label for t in await softhsm_store.tokens()} >= {softhsm.tokens["A"].label}

    faulty.set_mode("")
    await faulty.store.login(token, Secret(softhsm.tokens["A"].pin))
    await _sign_and_verify(faulty.store, key, softhsm)


@pytest.mark.softhsm
async def test_caller_giving_up_kills_the_busy_worker(faulty: FaultyBed,
                                                      softhsm: SoftHsmBed) -> None:
    token, key = await _ec_sign_key(faulty.store, softhsm)
    await faulty.store.login(token, Secret(softhsm.tokens["A"].pin))
    busy_pid = faulty.store.worker.pid
    assert busy_pid is not None
    faulty.set_mode("hang_on_sign")
    with pytest.raises(TimeoutError):  # cancelled from outside, before call_timeout
        await asyncio.wait_for(faulty.store.sign(key, DIGEST, ECDSA), 0.3)
    faulty.set_mode("")
    assert len(await faulty.store.tokens()) == 2  # not confused by a stale answer
    assert faulty.store.worker.pid != busy_pid


@pytest.mark.softhsm
async def test_crash_during_listing_then_recovery(faulty: FaultyBed,
                                                  softhsm: SoftHsmBed) -> None:
    faulty.set_mode("crash_on_list")
    with pytest.raises(ModuleCrashed):
        await faulty.store.tokens()
    faulty.set_mode("")
    labels = {t.label for t in await faulty.store.tokens()}
    assert labels == {spec.label for spec in softhsm.tokens.values()}


@pytest.mark.softhsm
async def test_module_printing_to_stdout_does_not_corrupt_frames(
        softhsm: SoftHsmBed, faulty_module: Path, tmp_path: Path) -> None:
    mode_file = tmp_path / "mode"
    mode_file.write_text("", encoding="utf-8")
    env = {**_faulty_env(softhsm, mode_file), "FAULTY_PKCS11_CHATTY": "1"}
    store = Pkcs11Store(faulty_module, env=env, call_timeout=15)
    try:
        assert len(await store.tokens()) == 2
        assert (await store.module_info()).ok
    finally:
        await store.close()


# --- PIN states the token reports -------------------------------------------------------------

@pytest.mark.softhsm
async def test_final_try_reported(faulty: FaultyBed, softhsm: SoftHsmBed) -> None:
    faulty.set_mode("final_try")
    token = await _token_a(faulty.store, softhsm)
    assert token.pin.final_try and not token.pin.locked
    with pytest.raises(PinIncorrect) as caught:
        await faulty.store.login(token, Secret("0000"))
    assert caught.value.status.final_try
    faulty.set_mode("")
    await faulty.store.login(token, Secret(softhsm.tokens["A"].pin))  # clears count-low


@pytest.mark.softhsm
async def test_locked_pin(faulty: FaultyBed, softhsm: SoftHsmBed) -> None:
    faulty.set_mode("locked")
    token = await _token_a(faulty.store, softhsm)
    assert token.pin.locked
    with pytest.raises(PinLocked) as caught:
        await faulty.store.login(token, Secret(softhsm.tokens["A"].pin))
    # The store decides how its token is unlocked, and says the same before and after.
    assert caught.value.data["unlock"] == token.unlock == "PUK"
    assert caught.value.to_wire()["data"]["reason"] == "PIN_LOCKED"


@pytest.mark.softhsm
async def test_expired_pin_is_locked_until_changed(faulty: FaultyBed,
                                                   softhsm: SoftHsmBed) -> None:
    token = await _token_a(faulty.store, softhsm)
    faulty.set_mode("expired")
    with pytest.raises(PinLocked) as caught:
        await faulty.store.login(token, Secret(softhsm.tokens["A"].pin))
    assert caught.value.data["unlock"] == "CHANGE_PIN"
    faulty.set_mode("")
    await faulty.store.login(token, Secret(softhsm.tokens["A"].pin))  # nothing stuck


@pytest.mark.softhsm
async def test_pin_never_set_says_init_pin(faulty: FaultyBed, softhsm: SoftHsmBed) -> None:
    faulty.set_mode("pin_not_set")
    token = await _token_a(faulty.store, softhsm)
    assert token.unlock == "INIT_PIN"  # known from the token's flags before any login
    with pytest.raises(PinLocked) as caught:
        await faulty.store.login(token, Secret(softhsm.tokens["A"].pin))
    assert caught.value.data["unlock"] == "INIT_PIN"
    faulty.set_mode("")
    assert (await _token_a(faulty.store, softhsm)).unlock == "PUK"


@pytest.mark.softhsm
async def test_pin_pad_login(faulty: FaultyBed, softhsm: SoftHsmBed) -> None:
    faulty.set_mode("pin_pad")
    token, key = await _ec_sign_key(faulty.store, softhsm)
    assert token.pin.pin_pad
    await faulty.store.login(token, PIN_PAD)
    await _sign_and_verify(faulty.store, key, softhsm)


@pytest.mark.softhsm
async def test_pin_pad_login_refused_without_a_pad(faulty: FaultyBed,
                                                   softhsm: SoftHsmBed) -> None:
    token = await _token_a(faulty.store, softhsm)
    assert not token.pin.pin_pad
    with pytest.raises(Unsupported):
        await faulty.store.login(token, PIN_PAD)


# --- module_info for doctor ---------------------------------------------------------------------

@pytest.mark.softhsm
async def test_module_info_of_a_working_module(softhsm_store: Pkcs11Store) -> None:
    info = await softhsm_store.module_info()
    assert info.ok and info.error is None
    assert info.manufacturer == "SoftHSM"
    assert info.cryptoki_version.startswith("2.")
    assert info.slots == 3  # tokens A and B plus SoftHSM's spare slot


async def test_module_info_of_a_missing_file(tmp_path: Path) -> None:
    store = Pkcs11Store(tmp_path / "no-such-module.so")
    info = await store.module_info()
    assert not info.ok and info.error is not None and "not found" in info.error
    await store.close()


@pytest.mark.linux
async def test_module_info_of_a_library_that_is_not_pkcs11() -> None:
    assert LIBC.is_file()
    store = Pkcs11Store(LIBC)
    info = await store.module_info()
    assert not info.ok and info.error is not None
    assert "not a PKCS#11 library" in info.error
    await store.close()


@pytest.mark.softhsm
async def test_module_info_when_initialisation_fails(faulty_module: Path) -> None:
    store = Pkcs11Store(faulty_module, env={"FAULTY_PKCS11_TARGET": "/nonexistent.so"})
    info = await store.module_info()
    assert not info.ok and info.error is not None and "C_Initialize" in info.error
    await store.close()


# --- INTERNAL errors say nothing of the module: no path, no file name, no exception text ---------

def _assert_generic(error: AgentError, *leaks: str) -> None:
    shown = json.dumps(error.to_wire(), ensure_ascii=False) + str(error)
    for leak in leaks:
        assert leak not in shown, (leak, shown)
    assert error.to_wire()["data"]["reason"] == "INTERNAL"


async def test_missing_module_error_names_no_path(tmp_path: Path) -> None:
    path = tmp_path / "no-such-module.so"
    store = Pkcs11Store(path)
    try:
        with pytest.raises(ModuleUnavailable) as caught:
            await store.tokens()
    finally:
        await store.close()
    _assert_generic(caught.value, str(tmp_path), "no-such-module", "not found")


@pytest.mark.linux
async def test_unloadable_library_error_names_no_path() -> None:
    store = Pkcs11Store(LIBC)
    try:
        with pytest.raises(ModuleUnavailable) as caught:
            await store.tokens()
    finally:
        await store.close()
    _assert_generic(caught.value, "libc", "/lib", "C_GetFunctionList")


@pytest.mark.softhsm
async def test_failed_initialisation_error_has_no_exception_text(faulty_module: Path) -> None:
    store = Pkcs11Store(faulty_module, env={"FAULTY_PKCS11_TARGET": "/nonexistent.so"})
    try:
        with pytest.raises(ModuleUnavailable) as caught:
            await store.tokens()
    finally:
        await store.close()
    _assert_generic(caught.value, "nonexistent", "C_Initialize", "GeneralError",
                    faulty_module.name)


@pytest.mark.softhsm
async def test_module_failure_in_a_call_has_no_exception_text(faulty: FaultyBed,
                                                              softhsm: SoftHsmBed) -> None:
    token, key = await _ec_sign_key(faulty.store, softhsm)
    await faulty.store.login(token, Secret(softhsm.tokens["A"].pin))
    faulty.set_mode("device_error")
    with pytest.raises(InternalError) as signing:
        await faulty.store.sign(key, DIGEST, ECDSA)
    with pytest.raises(InternalError) as login:
        await faulty.store.login(token, Secret(softhsm.tokens["A"].pin))
    for caught in (signing, login):
        _assert_generic(caught.value, "DeviceError", "sign:", "login:",
                        str(faulty.store.module), softhsm.tokens["A"].pin)


# --- framing --------------------------------------------------------------------------------------

def test_frames_round_trip_and_absurd_sizes_are_refused() -> None:
    frame = wire.encode_frame({"op": "sign", "data": wire.b64(b"\x00\xff")})
    assert wire.frame_length(frame[:4]) == len(frame) - 4
    assert wire.unb64(wire.decode_body(frame[4:])["data"]) == b"\x00\xff"
    with pytest.raises(wire.FrameError):
        wire.frame_length(struct.pack(">I", wire.MAX_FRAME + 1))
    with pytest.raises(wire.FrameError):
        wire.decode_body(b"[1, 2]")
