"""Pkcs11Store against real SoftHSM2 tokens (the shared test bed), plus module discovery."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from testbed import SoftHsmBed

from agent.errors import (
    CertificateInvalid,
    InvalidHandle,
    LoginRequired,
    PinIncorrect,
    TokenNotPresent,
    Unsupported,
)
from agent.keystores.base import (
    CertificateEntry,
    KeyStore,
    Secret,
    SecretKind,
    SignMechanism,
    StoreKind,
    TokenInfo,
)
from agent.keystores.mechanisms import verify_with_certificate
from agent.keystores.pkcs11 import Pkcs11Store, discover_modules
from agent.keystores.pkcs11.modules import KNOWN_MODULES
from agent.keystores.pkcs11.store import SIGN_CHUNK
from agent.protocol.enums import EcdsaEncoding, HashAlgorithm, Scheme

_DER = Encoding.DER
HASHES = {HashAlgorithm.SHA256: hashlib.sha256, HashAlgorithm.SHA384: hashlib.sha384,
          HashAlgorithm.SHA512: hashlib.sha512}


def digest_of(alg: HashAlgorithm, text: bytes = b"imza-agent test document") -> bytes:
    return HASHES[alg](text).digest()


async def token_named(store: Pkcs11Store, label: str) -> TokenInfo:
    tokens = {t.label: t for t in await store.tokens()}
    return tokens[label]


async def entry_for(store: Pkcs11Store, softhsm: SoftHsmBed, name: str) -> CertificateEntry:
    obj = softhsm.objects[name]
    token = await token_named(store, obj.token.label)
    der = obj.identity.cert.public_bytes(_DER)
    [entry] = [e for e in await store.certificates(token) if e.der == der]
    return entry


async def logged_in_entry(store: Pkcs11Store, softhsm: SoftHsmBed,
                          name: str) -> CertificateEntry:
    entry = await entry_for(store, softhsm, name)
    await store.login(entry.token, Secret(softhsm.objects[name].token.pin))
    return entry


# --- listing ------------------------------------------------------------------------------

@pytest.mark.softhsm
async def test_store_identity(softhsm_store: Pkcs11Store, softhsm: SoftHsmBed) -> None:
    assert isinstance(softhsm_store, KeyStore)
    assert softhsm_store.store_id == f"pkcs11:{softhsm.module}"
    assert softhsm_store.kind is StoreKind.PKCS11


@pytest.mark.softhsm
async def test_both_tokens_listed_with_unicode_labels(softhsm_store: Pkcs11Store,
                                                      softhsm: SoftHsmBed) -> None:
    tokens = await softhsm_store.tokens()
    by_label = {t.label: t for t in tokens}
    assert set(by_label) == {"Rəqəmsal İmza A", "Token B"}  # SoftHSM's empty slot is hidden
    for spec in softhsm.tokens.values():
        token = by_label[spec.label]
        assert token.serial == spec.serial
        assert token.manufacturer == "SoftHSM project"
        assert token.token_id == f"SoftHSM project/{spec.serial}"
        assert token.store_id == softhsm_store.store_id
        assert not token.pin.pin_pad and not token.pin.locked
        assert (token.pin.min_length, token.pin.max_length) == (4, 255)
        assert (token.secret, token.unlock) == (SecretKind.PIN, "PUK")
    assert softhsm_store.card_events is softhsm_store  # it follows PC/SC card events


@pytest.mark.softhsm
async def test_every_certificate_paired_before_login(softhsm_store: Pkcs11Store,
                                                     softhsm: SoftHsmBed) -> None:
    for name, obj in softhsm.objects.items():
        entry = await entry_for(softhsm_store, softhsm, name)
        assert entry.key is not None, name
        assert entry.key.key_id == obj.key_id.hex(), name
        assert entry.key.key_type.value == obj.identity.key_type
        assert entry.label == obj.label
        # Private keys are CKA_PRIVATE: before login only the certificate's CKA_ID, or
        # a public-key object holding the certificate's key, can name them.
        expected = "public-key" if obj.cert_id != obj.key_id else "assumed-id"
        assert entry.pairing == expected, name
    mismatched = softhsm.objects["ec_sign_mismatched_id"]
    assert mismatched.cert_id != mismatched.key_id


@pytest.mark.softhsm
async def test_after_login_keys_pair_by_id(softhsm_store: Pkcs11Store, softhsm: SoftHsmBed) -> None:
    entry = await logged_in_entry(softhsm_store, softhsm, "rsa_sign_always_auth")
    softhsm_store.invalidate(entry.token.token_id)
    entries = {e.der: e for e in await softhsm_store.certificates(entry.token)}
    for name in softhsm.tokens["B"].identities:
        obj = softhsm.objects[name]
        got = entries[obj.identity.cert.public_bytes(_DER)]
        assert got.key is not None and got.key.key_id == obj.key_id.hex()
        assert got.pairing == ("public-key" if obj.cert_id != obj.key_id else "id")
        assert got.key.always_authenticate is obj.always_authenticate


@pytest.mark.softhsm
async def test_certificates_served_from_cache_until_invalidated(
        softhsm_store: Pkcs11Store, softhsm: SoftHsmBed) -> None:
    token = await token_named(softhsm_store, softhsm.tokens["A"].label)
    first = await softhsm_store.certificates(token)
    await softhsm_store.worker.close()
    assert softhsm_store.worker.pid is None
    assert await softhsm_store.certificates(token) == first  # no worker needed
    assert softhsm_store.worker.pid is None
    softhsm_store.invalidate(token.token_id)
    assert await softhsm_store.certificates(token) == first
    assert softhsm_store.worker.pid is not None  # listed again by a fresh worker


# --- signing ------------------------------------------------------------------------------

SIGN_CASES = [
    ("rsa_sign", SignMechanism(Scheme.RSA_PKCS1_V15, HashAlgorithm.SHA256)),
    ("rsa_sign", SignMechanism(Scheme.RSA_PKCS1_V15, HashAlgorithm.SHA384)),
    ("rsa_sign", SignMechanism(Scheme.RSA_PKCS1_V15, HashAlgorithm.SHA512)),
    ("rsa_auth", SignMechanism(Scheme.RSA_PSS, HashAlgorithm.SHA256)),
    ("rsa_sign", SignMechanism(Scheme.RSA_PSS, HashAlgorithm.SHA512)),
    ("ec_sign", SignMechanism(Scheme.ECDSA, HashAlgorithm.SHA256)),
    ("ec_sign", SignMechanism(Scheme.ECDSA, HashAlgorithm.SHA384, EcdsaEncoding.RAW)),
    ("ec_auth", SignMechanism(Scheme.ECDSA, HashAlgorithm.SHA512, EcdsaEncoding.RAW)),
    ("ec_sign_mismatched_id", SignMechanism(Scheme.ECDSA, HashAlgorithm.SHA256)),
]


@pytest.mark.parametrize(("name", "mechanism"), SIGN_CASES,
                         ids=[f"{n}-{m.scheme.value}-{m.hash_algorithm.value}-"
                              f"{m.ecdsa_encoding.value}" for n, m in SIGN_CASES])
@pytest.mark.softhsm
async def test_sign_verifies_with_certificate(softhsm_store: Pkcs11Store, softhsm: SoftHsmBed,
                                              name: str, mechanism: SignMechanism) -> None:
    entry = await logged_in_entry(softhsm_store, softhsm, name)
    assert entry.key is not None
    digest = digest_of(mechanism.hash_algorithm)
    signature = await softhsm_store.sign(entry.key, digest, mechanism)
    cert = softhsm.identity(name).cert
    if mechanism.scheme is Scheme.ECDSA:  # all EC test keys are P-256
        if mechanism.ecdsa_encoding is EcdsaEncoding.RAW:
            assert len(signature) == 64
        else:
            assert signature[0] == 0x30  # DER SEQUENCE
    verify_with_certificate(cert, digest, signature, mechanism)
    # The check can fail: the same signature does not verify another hash.
    with pytest.raises(CertificateInvalid):
        verify_with_certificate(cert, digest_of(mechanism.hash_algorithm, b"other"),
                                signature, mechanism)


@pytest.mark.softhsm
async def test_sign_many_crosses_worker_chunks_in_order(softhsm_store: Pkcs11Store,
                                                        softhsm: SoftHsmBed) -> None:
    entry = await logged_in_entry(softhsm_store, softhsm, "ec_sign")
    assert entry.key is not None
    mechanism = SignMechanism(Scheme.ECDSA, HashAlgorithm.SHA256, EcdsaEncoding.RAW)
    digests = [digest_of(HashAlgorithm.SHA256, b"%d" % i) for i in range(SIGN_CHUNK + 2)]
    signatures = await softhsm_store.sign_many(entry.key, digests, mechanism)
    assert len(signatures) == len(digests)
    cert = softhsm.identity("ec_sign").cert
    for i in (0, SIGN_CHUNK - 1, SIGN_CHUNK, SIGN_CHUNK + 1):  # both sides of the seam
        verify_with_certificate(cert, digests[i], signatures[i], mechanism)
    with pytest.raises(CertificateInvalid):  # in order: not any hash's signature
        verify_with_certificate(cert, digests[1], signatures[0], mechanism)


@pytest.mark.softhsm
async def test_sign_without_login_requires_login(softhsm_store: Pkcs11Store,
                                                 softhsm: SoftHsmBed) -> None:
    entry = await entry_for(softhsm_store, softhsm, "ec_sign")
    assert entry.key is not None
    mechanism = SignMechanism(Scheme.ECDSA, HashAlgorithm.SHA256)
    with pytest.raises(LoginRequired):
        await softhsm_store.sign(entry.key, digest_of(HashAlgorithm.SHA256), mechanism)
    await softhsm_store.login(entry.token, Secret(softhsm.tokens["A"].pin))
    await softhsm_store.sign(entry.key, digest_of(HashAlgorithm.SHA256), mechanism)
    await softhsm_store.logout(entry.token)
    with pytest.raises(LoginRequired):
        await softhsm_store.sign(entry.key, digest_of(HashAlgorithm.SHA256), mechanism)


@pytest.mark.softhsm
async def test_always_authenticate_key_needs_the_pin_per_signature(
        softhsm_store: Pkcs11Store, softhsm: SoftHsmBed) -> None:
    entry = await logged_in_entry(softhsm_store, softhsm, "rsa_sign_always_auth")
    assert entry.key is not None
    mechanism = SignMechanism(Scheme.RSA_PKCS1_V15, HashAlgorithm.SHA256)
    digest = digest_of(HashAlgorithm.SHA256)
    with pytest.raises(LoginRequired):
        await softhsm_store.sign(entry.key, digest, mechanism)
    with pytest.raises(PinIncorrect):
        await softhsm_store.sign(entry.key, digest, mechanism, Secret("000000"))
    signature = await softhsm_store.sign(entry.key, digest, mechanism,
                                 Secret(softhsm.tokens["B"].pin))
    verify_with_certificate(softhsm.identity("rsa_sign_always_auth").cert, digest, signature,
                            mechanism)


@pytest.mark.softhsm
async def test_wrong_pin_reports_count_low(softhsm_store: Pkcs11Store, softhsm: SoftHsmBed) -> None:
    token = await token_named(softhsm_store, softhsm.tokens["B"].label)
    with pytest.raises(PinIncorrect) as caught:
        await softhsm_store.login(token, Secret("111111"))
    assert caught.value.status.count_low
    assert "111111" not in repr(caught.value) and "111111" not in str(caught.value.to_wire())
    await softhsm_store.login(token, Secret(softhsm.tokens["B"].pin))  # SoftHSM clears the flag
    assert not (await token_named(softhsm_store, token.label)).pin.count_low


@pytest.mark.softhsm
async def test_scheme_must_fit_the_key(softhsm_store: Pkcs11Store, softhsm: SoftHsmBed) -> None:
    entry = await logged_in_entry(softhsm_store, softhsm, "rsa_sign")
    assert entry.key is not None
    with pytest.raises(Unsupported):
        await softhsm_store.sign(entry.key, digest_of(HashAlgorithm.SHA256),
                         SignMechanism(Scheme.ECDSA, HashAlgorithm.SHA256))
    with pytest.raises(Unsupported):  # a SHA-256 hash announced as SHA-384
        await softhsm_store.sign(entry.key, digest_of(HashAlgorithm.SHA256),
                         SignMechanism(Scheme.RSA_PKCS1_V15, HashAlgorithm.SHA384))


@pytest.mark.softhsm
async def test_keys_of_other_stores_are_refused(softhsm_store: Pkcs11Store,
                                                softhsm: SoftHsmBed) -> None:
    entry = await entry_for(softhsm_store, softhsm, "ec_sign")
    other = Pkcs11Store(Path("/nonexistent/module.so"))
    assert entry.key is not None
    with pytest.raises(InvalidHandle):
        await other.sign(entry.key, digest_of(HashAlgorithm.SHA256),
                         SignMechanism(Scheme.ECDSA, HashAlgorithm.SHA256))


# --- tokens that come and go --------------------------------------------------------------

def _softhsm_util(conf: Path, *args: str) -> None:
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    done = subprocess.run(["softhsm2-util", *args], env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.softhsm
async def test_cache_dropped_when_token_disappears(softhsm: SoftHsmBed,
                                                   tmp_path: Path) -> None:
    tokendir = tmp_path / "tokens"
    tokendir.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokendir}\nobjectstore.backend = file\n",
                    encoding="utf-8")
    _softhsm_util(conf, "--init-token", "--free", "--label", "Keçici", "--so-pin", "5678",
                  "--pin", "4321")
    store = Pkcs11Store(softhsm.module, env={"SOFTHSM2_CONF": str(conf)}, call_timeout=15)
    try:
        [token] = await store.tokens()
        assert token.label == "Keçici"
        assert await store.certificates(token) == []  # cached now
        _softhsm_util(conf, "--delete-token", "--token", "Keçici")
        assert await store.tokens() == []
        with pytest.raises(TokenNotPresent):  # not the stale cached list
            await store.certificates(token)
    finally:
        await store.close()


# --- module discovery -----------------------------------------------------------------------

def test_discover_configured_first_and_deduplicated(tmp_path: Path) -> None:
    real = tmp_path / "libvendor.so"
    real.write_bytes(b"\x7fELF")
    link = tmp_path / "libvendor-link.so"
    link.symlink_to(real)
    missing = tmp_path / "missing.so"
    found = discover_modules([link, real, missing], use_known=False)
    assert [(c.path, c.source, c.present) for c in found] == [
        (link, "config", True), (missing, "config", False)]


@pytest.mark.softhsm
def test_discover_known_lists_only_present_modules(softhsm: SoftHsmBed) -> None:
    found = discover_modules([softhsm.module], use_known=True, os_name="linux")
    assert found[0].path == softhsm.module and found[0].source == "config"
    assert all(c.present for c in found[1:])
    assert all(c.source == "known" and c.vendor for c in found[1:])
    opensc = Path("/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so")
    assert opensc.is_file(), "OpenSC is part of the test machine's packages"
    assert any(c.path == opensc and c.vendor == "OpenSC" for c in found)


def test_known_module_table_covers_every_os_and_vendor() -> None:
    vendors = {"OpenSC", "SafeNet eToken", "ePass2003 / EnterSafe", "AKİS", "Rutoken",
               "JaCarta", "Charismathics", "Bit4id", "Thales IDPrime", "Yubico YKCS11"}
    for os_name in ("linux", "windows", "darwin"):
        assert set(KNOWN_MODULES[os_name]) - {"CACKey"} == vendors
    assert "CACKey" in KNOWN_MODULES["linux"] and "CACKey" in KNOWN_MODULES["darwin"]
    assert discover_modules([], use_known=True, os_name="windows") == [] or os.name == "nt"
