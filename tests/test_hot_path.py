"""The signing hot path against real SoftHSM2 tokens: login, sign and logout in one worker
call (``Pkcs11Store.login_sign_logout``), and the worker's cached slot of each token."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import keyring
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from keyring.backends import fail
from testbed import SoftHsmBed

from agent.errors import InvalidHandle, LoginRequired, PinIncorrect, TokenNotPresent
from agent.journal import Journal, verify_report
from agent.keystores.base import (
    CertificateEntry,
    KeyRef,
    KeyType,
    Secret,
    SignMechanism,
    TokenInfo,
)
from agent.keystores.mechanisms import verify_with_certificate
from agent.keystores.pkcs11 import Pkcs11Store
from agent.keystores.pkcs11.store import SIGN_CHUNK
from agent.protocol.enums import EcdsaEncoding, HashAlgorithm, Scheme

EC = SignMechanism(Scheme.ECDSA, HashAlgorithm.SHA256, EcdsaEncoding.DER)
RSA = SignMechanism(Scheme.RSA_PKCS1_V15, HashAlgorithm.SHA256)
REPO = Path(__file__).resolve().parent.parent


def digest(text: bytes) -> bytes:
    return hashlib.sha256(text).digest()


async def entry_of(store: Pkcs11Store, softhsm: SoftHsmBed, name: str) -> CertificateEntry:
    obj = softhsm.objects[name]
    [token] = [t for t in await store.tokens() if t.label == obj.token.label]
    der = obj.identity.cert.public_bytes(Encoding.DER)
    [entry] = [e for e in await store.certificates(token) if e.der == der]
    return entry


def key_of(entry: CertificateEntry) -> KeyRef:
    assert entry.key is not None
    return entry.key


@pytest.mark.softhsm
async def test_one_call_signs_and_leaves_the_token_logged_out(
        softhsm_store: Pkcs11Store, softhsm: SoftHsmBed) -> None:
    entry = await entry_of(softhsm_store, softhsm, "ec_sign")
    hashes = [digest(b"one")]
    [signature] = await softhsm_store.login_sign_logout(
        entry.token, key_of(entry), hashes, EC, Secret(softhsm.tokens["A"].pin))
    verify_with_certificate(softhsm.identity("ec_sign").cert, hashes[0], signature, EC)
    with pytest.raises(LoginRequired):  # no session stayed logged in
        await softhsm_store.sign_many(key_of(entry), hashes, EC)


@pytest.mark.softhsm
async def test_one_call_batch_crosses_chunks_and_logs_out(
        softhsm_store: Pkcs11Store, softhsm: SoftHsmBed) -> None:
    entry = await entry_of(softhsm_store, softhsm, "ec_sign")
    hashes = [digest(b"%d" % i) for i in range(SIGN_CHUNK + 3)]
    signatures = await softhsm_store.login_sign_logout(
        entry.token, key_of(entry), hashes, EC, Secret(softhsm.tokens["A"].pin))
    assert len(signatures) == len(hashes)
    cert = softhsm.identity("ec_sign").cert
    for i in (0, SIGN_CHUNK - 1, SIGN_CHUNK, len(hashes) - 1):  # both sides of the seam
        verify_with_certificate(cert, hashes[i], signatures[i], EC)
    with pytest.raises(LoginRequired):
        await softhsm_store.sign_many(key_of(entry), hashes[:1], EC)


@pytest.mark.softhsm
async def test_one_call_gives_the_pin_to_a_key_that_asks_per_signature(
        softhsm_store: Pkcs11Store, softhsm: SoftHsmBed) -> None:
    entry = await entry_of(softhsm_store, softhsm, "rsa_sign_always_auth")
    hashes = [digest(b"a"), *(digest(b"%d" % i) for i in range(SIGN_CHUNK))]
    signatures = await softhsm_store.login_sign_logout(
        entry.token, key_of(entry), hashes, RSA, Secret(softhsm.tokens["B"].pin))
    cert = softhsm.identity("rsa_sign_always_auth").cert
    verify_with_certificate(cert, hashes[0], signatures[0], RSA)
    verify_with_certificate(cert, hashes[-1], signatures[-1], RSA)  # the second chunk too


@pytest.mark.softhsm
async def test_wrong_pin_in_one_call_is_typed_and_never_shown(
        softhsm_store: Pkcs11Store, softhsm: SoftHsmBed,
        caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "975310"
    entry = await entry_of(softhsm_store, softhsm, "ec_sign")
    with pytest.raises(PinIncorrect) as caught:
        await softhsm_store.login_sign_logout(entry.token, key_of(entry), [digest(b"x")], EC,
                                              Secret(wrong))
    right = softhsm.tokens["A"].pin
    await softhsm_store.login_sign_logout(entry.token, key_of(entry), [digest(b"y")], EC,
                                          Secret(right))
    _out, err = capfd.readouterr()  # the worker's stderr is this process's
    seen = " ".join((caplog.text, err, repr(caught.value), str(caught.value),
                     json.dumps(caught.value.to_wire())))
    for pin in (wrong, right):
        assert pin not in seen
        assert base64.b64encode(pin.encode()).decode() not in seen


# --- the worker's slot cache --------------------------------------------------------------

def _softhsm_util(conf: Path, *args: str) -> None:
    done = subprocess.run(["softhsm2-util", *args], env={**os.environ, "SOFTHSM2_CONF": str(conf)},
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def _absent_key(token: TokenInfo, store: Pkcs11Store) -> KeyRef:
    return KeyRef(store_id=store.store_id, token_id=token.token_id, key_id="ab" * 20,
                  key_type=KeyType.EC)


@pytest.mark.softhsm
async def test_cached_slot_dropped_when_the_token_is_removed_and_reinserted(
        softhsm: SoftHsmBed, tmp_path: Path) -> None:
    tokendir = tmp_path / "tokens"
    tokendir.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokendir}\nobjectstore.backend = file\n",
                    encoding="utf-8")
    init = ("--init-token", "--free", "--label", "Geçici", "--so-pin", "5678", "--pin", "4321")
    _softhsm_util(conf, *init)
    store = Pkcs11Store(softhsm.module, env={"SOFTHSM2_CONF": str(conf)}, call_timeout=15)
    try:
        [first] = await store.tokens()
        assert await store.current_token(first.token_id) == first
        # Logged in (a wrong PIN would be PIN_INCORRECT), then no such key: slot cached.
        with pytest.raises(InvalidHandle):
            await store.login_sign_logout(first, _absent_key(first, store), [digest(b"1")],
                                          EC, Secret("4321"))
        _softhsm_util(conf, "--delete-token", "--token", "Geçici")
        with pytest.raises(TokenNotPresent):
            await store.current_token(first.token_id)
        with pytest.raises(TokenNotPresent):  # not the cached slot
            await store.login_sign_logout(first, _absent_key(first, store), [digest(b"2")],
                                          EC, Secret("4321"))
        _softhsm_util(conf, *init)  # "re-inserted": same label and PIN, a new serial
        await store.reinitialize()  # SoftHSM reads its token directory at C_Initialize
        with pytest.raises(TokenNotPresent):  # the old token is not the new one
            await store.login_sign_logout(first, _absent_key(first, store), [digest(b"3")],
                                          EC, Secret("4321"))
        [second] = await store.tokens()
        assert second.token_id != first.token_id
        with pytest.raises(InvalidHandle):  # found in its own slot
            await store.login_sign_logout(second, _absent_key(second, store),
                                          [digest(b"4")], EC, Secret("4321"))
    finally:
        await store.close()


# A token swapped into the cached slot: C_GetTokenInfo names another token, so the worker
# must not use that slot for the old token_id.  Run in a child, as the worker runs.
_SWAP = """
import json, sys
from agent.keystores.pkcs11.worker_ops import LoadedModule, WorkerError
module = LoadedModule.load(sys.argv[1])
listed = module.handle("tokens", {})
a = next(t for t in listed if t["label"] == sys.argv[2])
slot, _token = module._find(a["token_id"])
cached = module._slot_of.get(a["token_id"]) is slot
module._slot_of["Gone/0000"] = slot  # as if "Gone/0000" had been in A's slot
try:
    module._find("Gone/0000")
    found = True
except WorkerError as exc:
    found = exc.kind
print(json.dumps({"cached": cached, "swapped": found,
                  "forgotten": "Gone/0000" not in module._slot_of}))
"""


@pytest.mark.softhsm
def test_cached_slot_holding_another_token_is_not_used(softhsm: SoftHsmBed) -> None:
    done = subprocess.run([sys.executable, "-c", _SWAP, str(softhsm.module),
                           softhsm.tokens["A"].label], cwd=REPO,
                          env={**os.environ, **softhsm.env}, capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "cached": True, "swapped": "TOKEN_NOT_PRESENT", "forgotten": True}


# --- the journal's head record: off the request, coalesced --------------------------------

def test_head_records_of_a_burst_are_written_as_few_not_one_per_line(tmp_path: Path) -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())  # no keyring: the key and its record go to a file
    journal = Journal(tmp_path / "journal.jsonl")
    try:
        _append(journal, 0)  # creates the journal: that record is written at once
        assert journal.flush(10)
        store = journal._recorder.key(10).store
        real_set = store.set
        writes: list[str] = []

        def counted(name: str, value: str) -> None:
            writes.append(value)
            real_set(name, value)

        store.set = counted  # type: ignore[method-assign]  # the real store, counted
        for i in range(1, 101):
            _append(journal, i)
        assert journal.flush(10)
        # One write per line before; now the newest head per pause (HEAD_WRITE_INTERVAL).
        assert 1 <= len(writes) < 50
        key_file = json.loads((tmp_path / "journal.jsonl.key").read_text(encoding="utf-8"))
        [record] = [v for k, v in key_file.items() if k.startswith("journal-head:")]
        assert json.loads(record)["seq"] == 101  # the newest one is never skipped
        assert verify_report(tmp_path / "journal.jsonl").intact
    finally:
        journal.close()
        keyring.set_keyring(previous)


def _append(journal: Journal, i: int) -> None:
    journal.append(origin="https://e-gov.az", method="sign.hash", certificate_sha256="ab" * 32,
                   digest_algorithm="SHA-256", digest_hex=f"{i:064x}", result="ok")
