"""The PKCS#11 worker keeps one signing session and the key found in it from a request's
first signature to its logout (a batch's groups no longer open a session and search for
the key each), against real SoftHSM2 tokens."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import Encoding
from testbed import SoftHsmBed

from agent.errors import LoginRequired, TokenNotPresent
from agent.keystores.base import KeyRef, KeyType, Secret, SignMechanism
from agent.keystores.pkcs11 import Pkcs11Store
from agent.protocol.enums import EcdsaEncoding, HashAlgorithm, Scheme

EC = SignMechanism(Scheme.ECDSA, HashAlgorithm.SHA256, EcdsaEncoding.DER)
REPO = Path(__file__).resolve().parent.parent

# In a child, as the worker runs: after each step of a request that signs in groups as a
# batch does, the worker's key searches and its signing session, and whether the token
# still knows that session (C_GetSessionInfo through the module's own function list).
_GROUPS = r"""
import base64, ctypes, hashlib, json, sys
from agent.keystores.pkcs11.worker_ops import LoadedModule, WorkerError, _CkFunctionList
module = LoadedModule.load(sys.argv[1])
cdll = ctypes.CDLL(sys.argv[1])
table = ctypes.POINTER(_CkFunctionList)()
assert cdll.C_GetFunctionList(ctypes.byref(table)) == 0
session_info = ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_ulong, ctypes.c_void_p)(
    table.contents.C_GetSessionInfo)

def alive(handle):
    buffer = ctypes.create_string_buffer(64)  # CK_SESSION_INFO is 32 bytes at most
    return session_info(handle, buffer) == 0

searches = 0
resolve = module._resolve_key

def counted(*args):
    global searches
    searches += 1
    return resolve(*args)

module._resolve_key = counted
a = next(t for t in module.handle("tokens", {}) if t["label"] == sys.argv[2])
token_id = a["token_id"]
module.handle("login", {"token_id": token_id,
                        "pin": base64.b64encode(sys.argv[3].encode()).decode()})
objects = module.handle("objects", {"token_id": token_id})  # private keys show now
key_id = next(k["id"] for k in objects["private_keys"] if k["key_type"] == "EC")
handles = []
steps = {}

def step(name):
    global searches
    kept = module._signing.get(token_id)
    if kept is not None:
        handles.append(kept.session.handle)
    steps[name] = {"searches": searches, "kept": kept is not None,
                   "sessions": len(set(handles)),
                   "alive": [alive(h) for h in sorted(set(handles))]}
    searches = 0

def group(n, key=None):
    data = [base64.b64encode(hashlib.sha256(b"%d-%d" % (n, i)).digest()).decode()
            for i in range(16)]
    return module.handle("sign", {"token_id": token_id, "key_id": key or key_id,
                                  "mechanism": "ECDSA", "data_list": data})

answers = [group(1)]
step("first_group")
answers += [group(2), group(3)]
step("two_more_groups")
try:
    group(4, base64.b64encode(b"\xab" * 20).decode())
except WorkerError as exc:
    steps["missing_key"] = exc.kind
step("failed_group")
answers.append(group(5))
step("group_after_failure")
module.handle("logout", {"token_id": token_id})
step("logged_out")
steps["signatures"] = sum(len(a["signatures"]) for a in answers)
steps["key_ids"] = sorted({a["key_id"] for a in answers}) == [key_id]
print(json.dumps(steps))
"""


@pytest.mark.softhsm
def test_one_signing_session_for_every_group_until_logout(softhsm: SoftHsmBed) -> None:
    token = softhsm.tokens["A"]
    done = subprocess.run([sys.executable, "-c", _GROUPS, str(softhsm.module), token.label,
                           token.pin], cwd=REPO, env={**os.environ, **softhsm.env},
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    steps = json.loads(done.stdout.strip().splitlines()[-1])
    assert steps == {
        # one signing session and one key search for the request ...
        "first_group": {"searches": 1, "kept": True, "sessions": 1, "alive": [True]},
        # ... which the later groups reuse
        "two_more_groups": {"searches": 0, "kept": True, "sessions": 1, "alive": [True]},
        # a failed group ends it (an operation may be left active in it) ...
        "missing_key": "KEY_NOT_FOUND",
        "failed_group": {"searches": 1, "kept": False, "sessions": 1, "alive": [False]},
        # ... and the next group starts a new one
        "group_after_failure": {"searches": 1, "kept": True, "sessions": 2,
                                "alive": [False, True]},
        # the logout ends it
        "logged_out": {"searches": 0, "kept": False, "sessions": 2, "alive": [False, False]},
        "signatures": 64,
        "key_ids": True,
    }


def _softhsm_util(conf: Path, *args: str) -> None:
    done = subprocess.run(["softhsm2-util", *args], env={**os.environ, "SOFTHSM2_CONF": str(conf)},
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.softhsm
async def test_token_gone_between_groups_is_token_not_present_and_the_next_request_signs(
        softhsm: SoftHsmBed, tmp_path: Path) -> None:
    """A token removed between two groups of one logged-in request (SoftHSM's "pull":
    its token deleted): the next group is TOKEN_NOT_PRESENT, not a signature from the
    session kept for the request; the logout still succeeds, and the next request on
    the token that came back signs."""
    tokendir = tmp_path / "tokens"
    tokendir.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokendir}\nobjectstore.backend = file\n",
                    encoding="utf-8")
    init = ("--init-token", "--free", "--label", "Çekilen", "--so-pin", "5678",
            "--pin", "4321")
    _softhsm_util(conf, *init)
    store = Pkcs11Store(softhsm.module, env={"SOFTHSM2_CONF": str(conf)}, call_timeout=15)
    try:
        [token] = await store.tokens()
        key, _public = _generated_key(store, token.token_id, softhsm.module, conf)
        await store.login(token, Secret("4321"))
        first = [hashlib.sha256(b"%d" % i).digest() for i in range(16)]
        assert len(await store.sign_many(key, first, EC)) == 16
        _softhsm_util(conf, "--delete-token", "--token", "Çekilen")
        with pytest.raises(TokenNotPresent):
            await store.sign_many(key, [hashlib.sha256(b"after").digest()], EC)
        await store.logout(token)  # the request's end: nothing left to fail on
        _softhsm_util(conf, *init)
        await store.reinitialize()
        [back] = await store.tokens()
        key, public = _generated_key(store, back.token_id, softhsm.module, conf)
        digest = hashlib.sha256(b"next request").digest()
        [signature] = await store.login_sign_logout(back, key, [digest], EC, Secret("4321"))
        public.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        with pytest.raises(LoginRequired):  # and it logged out again
            await store.sign_many(key, [digest], EC)
    finally:
        await store.close()


_GENERATE = r"""
import sys
import pkcs11
from pkcs11 import Attribute, KeyType
from pkcs11.util.ec import encode_named_curve_parameters
token = pkcs11.lib(sys.argv[1]).get_token(token_label=sys.argv[2])
with token.open(rw=True, user_pin="4321") as session:
    params = session.create_domain_parameters(KeyType.EC, {
        Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
    public, _private = params.generate_keypair(store=True, id=b"\x01", label="k")
    print(bytes(public[Attribute.EC_POINT]).hex())
"""


def _generated_key(store: Pkcs11Store, token_id: str, module: Path,
                   conf: Path) -> tuple[KeyRef, ec.EllipticCurvePublicKey]:
    """A P-256 key made on the token (in a child: SoftHSM reads its configuration once
    per process); its public key from CKA_EC_POINT."""
    done = subprocess.run([sys.executable, "-c", _GENERATE, str(module), "Çekilen"],
                          env={**os.environ, "SOFTHSM2_CONF": str(conf)},
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    point = bytes.fromhex(done.stdout.strip().splitlines()[-1])
    assert point[0] == 0x04 and point[1] == len(point) - 2  # DER OCTET STRING around it
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point[2:])
    key = KeyRef(store_id=store.store_id, token_id=token_id, key_id="01",
                 key_type=KeyType.EC)
    return key, public


@pytest.mark.softhsm
async def test_a_card_event_waits_for_the_logout_of_a_request_signing_in_groups(
        softhsm_store: Pkcs11Store, softhsm: SoftHsmBed) -> None:
    """A card event meant for another reader (an unknown card: the PC/SC watcher then
    reinitialises every module) between two groups of a batch: the module is unloaded
    only at the request's logout, so the later groups still sign; without a request
    logged in it is unloaded at once."""
    store = softhsm_store
    [token] = [t for t in await store.tokens() if t.label == softhsm.tokens["A"].label]
    der = softhsm.identity("ec_sign").cert.public_bytes(Encoding.DER)
    [entry] = [e for e in await store.certificates(token) if e.der == der]
    assert entry.key is not None
    await store.login(token, Secret(softhsm.tokens["A"].pin))
    worker = store.worker.pid
    assert len(await store.sign_many(entry.key, [hashlib.sha256(b"1").digest()], EC)) == 1
    await store.reinitialize()  # what agent/pcsc/sync.py does on such an event
    assert store.worker.pid == worker  # not yet: the request is logged in
    [signature] = await store.sign_many(entry.key, [hashlib.sha256(b"2").digest()], EC)
    public = softhsm.identity("ec_sign").cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, hashlib.sha256(b"2").digest(), ec.ECDSA(Prehashed(hashes.SHA256())))
    await store.logout(token)
    assert store.worker.pid is None  # unloaded at the logout; the next call loads it
    assert await store.tokens()
    loaded = store.worker.pid
    assert loaded is not None and loaded != worker
    await store.reinitialize()  # nobody logged in: at once
    assert store.worker.pid is None
