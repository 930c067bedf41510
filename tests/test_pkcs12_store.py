"""PKCS#12 files as key stores: listing without a password, the certificate cache,
login, every signing mechanism, and a replaced or removed file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import pkcs12
from testbed import Pkcs12Bed, TestPKI

from agent.errors import InvalidHandle, LoginRequired, PinIncorrect, TokenNotPresent, Unsupported
from agent.keystores.base import (
    KeyStore,
    KeyType,
    Secret,
    SecretKind,
    SignMechanism,
    StoreKind,
)
from agent.keystores.mechanisms import raw_to_der
from agent.keystores.pkcs12 import Pkcs12Store
from agent.protocol.enums import EcdsaEncoding, HashAlgorithm, Scheme

HASHES = {HashAlgorithm.SHA256: hashes.SHA256(), HashAlgorithm.SHA384: hashes.SHA384(),
          HashAlgorithm.SHA512: hashes.SHA512()}


def digest_of(data: bytes, alg: HashAlgorithm) -> bytes:
    h = hashes.Hash(HASHES[alg])
    h.update(data)
    return h.finalize()


@pytest.fixture
def p12_copy(pkcs12_file: Pkcs12Bed, tmp_path: Path) -> Path:
    """A private copy, so tests may replace or remove it."""
    path = tmp_path / pkcs12_file.path.name
    shutil.copyfile(pkcs12_file.path, path)
    return path


def ec_p12(pki: TestPKI, path: Path, password: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = pki.issue("p12_ec_test", key.public_key(), purpose="auth",
                     common_name="Иванов Пётр", country="RU", serial_number="RUS-1")
    path.write_bytes(pkcs12.serialize_key_and_certificates(
        name=b"ec", key=key, cert=cert, cas=None,
        encryption_algorithm=serialization.BestAvailableEncryption(password.encode())))
    return cert


async def test_store_kind_and_token_before_unlock(agent_home: Path, p12_copy: Path) -> None:
    store = Pkcs12Store(p12_copy)
    assert isinstance(store, KeyStore)
    assert store.kind is StoreKind.PKCS12
    (token,) = await store.tokens()
    assert token.token_id == str(p12_copy.resolve())
    assert token.label == p12_copy.name
    assert token.manufacturer == "PKCS#12 file"
    assert token.needs_unlock is True
    assert token.demo is False
    # The user types the file's password; nothing the user holds unlocks a file.
    assert (token.secret, token.unlock) == (SecretKind.PASSWORD, "ISSUER")
    assert store.card_events is None
    assert await store.certificates(token) == []
    labelled = Pkcs12Store(p12_copy, label="Mənim imzam")
    assert (await labelled.tokens())[0].label == "Mənim imzam"


async def test_unlock_lists_and_caches_certificates(agent_home: Path, p12_copy: Path,
                                                    pkcs12_file: Pkcs12Bed) -> None:
    store = Pkcs12Store(p12_copy)
    (token,) = await store.tokens()
    await store.login(token, Secret(pkcs12_file.password))
    entries = await store.certificates(token)
    ders = [e.der for e in entries]
    identity_der = pkcs12_file.identity.cert.public_bytes(serialization.Encoding.DER)
    assert ders[0] == identity_der
    assert len(entries) == 1 + len(pkcs12_file.chain)  # the chain is listed, without keys
    assert entries[0].key is not None and entries[0].pairing == "public-key"
    assert entries[0].key.key_type is KeyType.RSA
    assert all(e.key is None for e in entries[1:])

    # A new store (a restarted agent) lists the same certificates without the password.
    fresh = Pkcs12Store(p12_copy)
    (token2,) = await fresh.tokens()
    assert token2.needs_unlock is False
    cached = await fresh.certificates(token2)
    assert [e.der for e in cached] == ders
    assert cached[0].key == entries[0].key
    # ...and the cache holds public data only: no password, no key.
    cache_files = list((agent_home / "p12-cache").iterdir())
    assert len(cache_files) == 1
    text = cache_files[0].read_bytes()
    assert pkcs12_file.password.encode() not in text
    assert b"PRIVATE" not in text
    # Listed from cache, but signing still needs the password.
    with pytest.raises(LoginRequired):
        await fresh.sign(cached[0].key, b"\1" * 32,
                         SignMechanism(Scheme.RSA_PKCS1_V15, HashAlgorithm.SHA256))


async def test_wrong_password_is_pin_incorrect(agent_home: Path, p12_copy: Path) -> None:
    store = Pkcs12Store(p12_copy)
    (token,) = await store.tokens()
    with pytest.raises(PinIncorrect) as info:
        await store.login(token, Secret("yanlış"))
    assert info.value.status.locked is False and info.value.status.final_try is False
    assert "yanlış" not in str(info.value)
    assert (await store.tokens())[0].needs_unlock is True


async def test_not_pkcs12_is_unsupported(agent_home: Path, tmp_path: Path) -> None:
    path = tmp_path / "junk.p12"
    path.write_bytes(b"this is not a PFX")
    store = Pkcs12Store(path)
    (token,) = await store.tokens()
    with pytest.raises(Unsupported):
        await store.login(token, Secret("x"))


@pytest.mark.parametrize("alg", list(HashAlgorithm))
@pytest.mark.parametrize("scheme", [Scheme.RSA_PKCS1_V15, Scheme.RSA_PSS])
async def test_rsa_signatures_verify(agent_home: Path, p12_copy: Path, pkcs12_file: Pkcs12Bed,
                                     scheme: Scheme, alg: HashAlgorithm) -> None:
    store = Pkcs12Store(p12_copy)
    (token,) = await store.tokens()
    await store.login(token, Secret(pkcs12_file.password))
    entry = (await store.certificates(token))[0]
    assert entry.key is not None
    digest = digest_of(b"imza \xc9\x99", alg)
    sig = await store.sign(entry.key, digest, SignMechanism(scheme, alg))
    pub = pkcs12_file.identity.cert.public_key()
    assert isinstance(pub, rsa.RSAPublicKey)
    pad: padding.AsymmetricPadding = (
        padding.PSS(mgf=padding.MGF1(HASHES[alg]), salt_length=alg.digest_size)
        if scheme is Scheme.RSA_PSS else padding.PKCS1v15())
    pub.verify(sig, digest, pad, Prehashed(HASHES[alg]))
    if scheme is Scheme.RSA_PSS:
        # PSS salt = hash length: verifying with another salt length must fail.
        with pytest.raises(Exception):  # noqa: B017 - InvalidSignature
            pub.verify(sig, digest, padding.PSS(mgf=padding.MGF1(HASHES[alg]),
                                                salt_length=alg.digest_size + 1),
                       Prehashed(HASHES[alg]))
    with pytest.raises(Unsupported):
        await store.sign(entry.key, digest, SignMechanism(Scheme.ECDSA, alg))


@pytest.mark.parametrize("encoding", list(EcdsaEncoding))
@pytest.mark.parametrize("alg", list(HashAlgorithm))
async def test_ecdsa_signatures_verify(agent_home: Path, tmp_path: Path, pki: TestPKI,
                                       encoding: EcdsaEncoding, alg: HashAlgorithm) -> None:
    path = tmp_path / "ec.p12"
    cert = ec_p12(pki, path, "ec-parol")
    store = Pkcs12Store(path)
    (token,) = await store.tokens()
    await store.login(token, Secret("ec-parol"))
    (entry,) = await store.certificates(token)
    assert entry.key is not None and entry.key.key_type is KeyType.EC
    digest = digest_of(b"ecdsa", alg)
    sig = await store.sign(entry.key, digest, SignMechanism(Scheme.ECDSA, alg, encoding))
    if encoding is EcdsaEncoding.RAW:
        assert len(sig) == 64
        sig = raw_to_der(sig)
    pub = cert.public_key()
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    pub.verify(sig, digest, ec.ECDSA(Prehashed(HASHES[alg])))


async def test_wrong_digest_length_and_foreign_key(agent_home: Path, p12_copy: Path,
                                                   pkcs12_file: Pkcs12Bed) -> None:
    store = Pkcs12Store(p12_copy)
    (token,) = await store.tokens()
    await store.login(token, Secret(pkcs12_file.password))
    key = (await store.certificates(token))[0].key
    assert key is not None
    with pytest.raises(Unsupported):
        await store.sign(key, b"\0" * 20, SignMechanism(Scheme.RSA_PKCS1_V15,
                                                        HashAlgorithm.SHA256))
    other = Pkcs12Store(p12_copy.with_name("other.p12"))
    with pytest.raises(InvalidHandle):
        await other.sign(key, b"\0" * 32, SignMechanism(Scheme.RSA_PKCS1_V15,
                                                        HashAlgorithm.SHA256))


async def test_logout_forgets_key_and_per_operation_secret(
        agent_home: Path, p12_copy: Path, pkcs12_file: Pkcs12Bed) -> None:
    store = Pkcs12Store(p12_copy)
    (token,) = await store.tokens()
    await store.login(token, Secret(pkcs12_file.password))
    key = (await store.certificates(token))[0].key
    assert key is not None
    mech = SignMechanism(Scheme.RSA_PKCS1_V15, HashAlgorithm.SHA256)
    await store.logout(token)
    with pytest.raises(LoginRequired):
        await store.sign(key, b"\2" * 32, mech)
    # A secret handed with the operation serves that one signature only.
    assert await store.sign(key, b"\2" * 32, mech, Secret(pkcs12_file.password))
    with pytest.raises(LoginRequired):
        await store.sign(key, b"\2" * 32, mech)


async def test_replaced_file_invalidates_cache_and_key(agent_home: Path, p12_copy: Path,
                                                       pkcs12_file: Pkcs12Bed,
                                                       pki: TestPKI) -> None:
    store = Pkcs12Store(p12_copy)
    (token,) = await store.tokens()
    await store.login(token, Secret(pkcs12_file.password))
    old_key = (await store.certificates(token))[0].key
    assert old_key is not None

    ec_p12(pki, p12_copy, "yeni-parol")  # same path, other content
    (token,) = await store.tokens()
    assert token.needs_unlock is True
    assert await store.certificates(token) == []
    with pytest.raises(LoginRequired):
        await store.sign(old_key, b"\3" * 32,
                         SignMechanism(Scheme.RSA_PKCS1_V15, HashAlgorithm.SHA256))
    # A restarted agent does not trust the old cache either.
    fresh = Pkcs12Store(p12_copy)
    assert (await fresh.tokens())[0].needs_unlock is True
    assert not list((agent_home / "p12-cache").iterdir())


async def test_removed_file_is_not_present(agent_home: Path, p12_copy: Path,
                                           pkcs12_file: Pkcs12Bed) -> None:
    store = Pkcs12Store(p12_copy)
    (token,) = await store.tokens()
    await store.login(token, Secret(pkcs12_file.password))
    key = (await store.certificates(token))[0].key
    assert key is not None
    p12_copy.unlink()
    assert await store.tokens() == []
    assert not list((agent_home / "p12-cache").iterdir())
    with pytest.raises(TokenNotPresent) as login:
        await store.login(token, Secret(pkcs12_file.password))
    with pytest.raises(TokenNotPresent) as listing:
        await store.certificates(token)
    with pytest.raises(TokenNotPresent) as signing:
        await store.sign(key, b"\4" * 32,
                         SignMechanism(Scheme.RSA_PKCS1_V15, HashAlgorithm.SHA256))
    for caught in (login, listing, signing):  # a page may see these: no file name in them
        assert p12_copy.name not in repr(caught.value.to_wire())
