"""The OS's own certificate store as a key store: Windows' "MY" store through CNG and the
macOS keychain through the Security framework, each behind its seam (``CngApi``,
``SecurityApi``) with a fake here that records every call and signs with a real key from
the test PKI, so signatures verify. The stores sit in the daemon's StoreManager beside a
SoftHSM PKCS#11 token and are used through the core's one signing use case."""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import Encoding
from fakes import Answers, Page, RecordingJournal
from testbed import SoftHsmBed
from testbed.pki import TestPKI

from agent.app.core import AgentCore
from agent.app.services import Services
from agent.config import Config, DemoConfig, FormatsConfig, TokensConfig
from agent.errors import PinIncorrect, TokenNotPresent, UserCancelled
from agent.keystores.base import KeyStore, Secret, SignMechanism
from agent.keystores.manager import ManagedStore, StoreManager
from agent.keystores.mechanisms import der_to_raw, verify_with_certificate
from agent.platform.macos import MacPlatform
from agent.platform.macos import keychain_store as mac
from agent.platform.windows import WindowsPlatform
from agent.platform.windows import cng_store as win
from agent.policy.policy import Policy
from agent.protocol.enums import EcdsaEncoding, HashAlgorithm, Scheme
from agent.ui.scripted import ScriptedUI

PIN = "739164"  # unlike any digest or serial, so a leak in a log is found by text
WIN_HOLDER = "Hüseynov Ceyhun"
MAC_HOLDER = "Məmmədova Aynur"
HASHES = {"SHA256": hashes.SHA256(), "SHA384": hashes.SHA384(), "SHA512": hashes.SHA512()}


# --- one card as both fakes see it ----------------------------------------------------------

@dataclass
class FakeCard:
    """Certificates (DER) and, for some, the private key the card holds; its PIN, a retry
    counter, and what happens at the next use of a key."""

    certs: list[bytes] = field(default_factory=list)
    keys: dict[bytes, Any] = field(default_factory=dict)
    pin: str = PIN
    tries: int = 3
    removed: bool = False
    prompt_cancelled: bool = False  # the driver's own prompt came up and was cancelled
    pins_seen: list[bytes] = field(default_factory=list)
    signed: int = 0

    def add(self, cert: x509.Certificate, key: Any | None) -> None:
        der = cert.public_bytes(Encoding.DER)
        self.certs.append(der)
        if key is not None:
            self.keys[der] = key

    def use(self, pin: bytes) -> str | None:
        """What went wrong using the key with ``pin``: a word each fake turns into its
        OS's status code, or None."""
        if self.removed:
            return "removed"
        if self.prompt_cancelled:
            return "cancel"
        if pin != self.pin.encode():
            self.tries -= 1
            return "wrong"
        self.tries = 3
        return None


def _rsa_pad(kind: str, hash_name: str) -> padding.AsymmetricPadding:
    if kind == "pss":
        algorithm = HASHES[hash_name]
        return padding.PSS(mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size)
    return padding.PKCS1v15()


class FakeCng:
    """``CngApi``: records each call (never the PIN's value; the card keeps what it got)."""

    def __init__(self, card: FakeCard) -> None:
        self.card = card
        self.calls: list[tuple[Any, ...]] = []
        self._handles: dict[int, bytes] = {}
        self._pins: dict[int, bytes] = {}

    def certificates(self, store: str) -> list[bytes]:
        self.calls.append(("certificates", store))
        return list(self.card.certs)

    def acquire_key(self, cert_der: bytes, flags: int) -> int:
        self.calls.append(("acquire_key", flags))
        if self.card.removed:
            raise win.CngError("CryptAcquireCertificatePrivateKey", win.SCARD_W_REMOVED_CARD)
        if cert_der not in self.card.keys:  # CRYPT_E_NO_KEY_PROPERTY
            raise win.CngError("CryptAcquireCertificatePrivateKey", 0x8009200B)
        handle = len(self._handles) + 1
        self._handles[handle] = cert_der
        return handle

    def key_property(self, key: int, name: str) -> str | None:
        self.calls.append(("key_property", name))
        return "Fake Reader 0" if name == win.NCRYPT_READER_PROPERTY else None

    def set_pin(self, key: int, pin: bytes, flags: int) -> None:
        self.calls.append(("set_pin", flags))
        self.card.pins_seen.append(pin)
        self._pins[key] = pin

    def sign_hash(self, key: int, pad: win.Padding, digest: bytes, flags: int) -> bytes:
        self.calls.append(("sign_hash", pad, flags))
        if not flags & win.NCRYPT_SILENT_FLAG:
            raise AssertionError("without NCRYPT_SILENT_FLAG the minidriver may prompt")
        problem = self.card.use(self._pins.get(key, b""))
        if problem == "removed":
            raise win.CngError("NCryptSignHash", win.SCARD_W_REMOVED_CARD)
        if problem == "cancel":
            raise win.CngError("NCryptSignHash", win.SCARD_W_CANCELLED_BY_USER)
        if problem == "wrong":
            raise win.CngError("NCryptSignHash", win.SCARD_W_WRONG_CHV,
                               tries_left=self.card.tries)
        private = self.card.keys[self._handles[key]]
        self.card.signed += 1
        if pad.flags == 0:
            der = private.sign(digest, ec.ECDSA(Prehashed(HASHES[{32: "SHA256", 48: "SHA384",
                                                                   64: "SHA512"}[len(digest)]])))
            return der_to_raw(der, (private.curve.key_size + 7) // 8)  # CNG: r||s
        kind = "pss" if pad.flags == win.BCRYPT_PAD_PSS else "pkcs1"
        assert pad.algorithm in HASHES
        result: bytes = private.sign(digest, _rsa_pad(kind, pad.algorithm),
                                     Prehashed(HASHES[pad.algorithm]))
        return result

    def free(self, key: int) -> None:
        self.calls.append(("free", key))


class FakeSecurity:
    """``SecurityApi``: identities on a CryptoTokenKit token, plus one software identity
    from a keychain file, which the store must leave out."""

    def __init__(self, card: FakeCard, software: bytes | None = None) -> None:
        self.card = card
        self.software = software
        self.calls: list[tuple[Any, ...]] = []

    def identities(self) -> list[mac.KeychainIdentity]:
        self.calls.append(("identities",))
        if self.card.removed:
            return []
        found = [mac.KeychainIdentity(der, "com.example.ctk:fake0") for der in self.card.certs
                 if der in self.card.keys]
        if self.software is not None:
            found.append(mac.KeychainIdentity(self.software, None))
        return found

    def sign(self, cert_der: bytes, algorithm: str, digests: list[bytes],
             pin: bytes) -> list[bytes]:
        self.calls.append(("sign", algorithm, len(digests)))
        self.card.pins_seen.append(pin)
        problem = self.card.use(pin)
        if problem == "removed":
            raise mac.SecurityError("SecItemCopyMatching", mac.ERR_SEC_ITEM_NOT_FOUND)
        if problem == "cancel":
            raise mac.SecurityError("SecKeyCreateSignature", mac.ERR_SEC_USER_CANCELED)
        if problem == "wrong":
            raise mac.SecurityError("SecKeyCreateSignature", mac.ERR_SEC_AUTH_FAILED,
                                    tries_left=self.card.tries)
        return [self._one(self.card.keys[cert_der], algorithm, d) for d in digests]

    def _one(self, private: Any, algorithm: str, digest: bytes) -> bytes:
        self.card.signed += 1
        prefix = "kSecKeyAlgorithm"
        assert algorithm.startswith(prefix)
        name = algorithm[len(prefix):]
        hash_name = name[-6:]
        if name.startswith("ECDSASignatureDigestX962"):
            der: bytes = private.sign(digest, ec.ECDSA(Prehashed(HASHES[hash_name])))
            return der  # X9.62: DER
        kind = {"RSASignatureDigestPKCS1v15": "pkcs1",
                "RSASignatureDigestPSS": "pss"}[name[:-6]]
        result: bytes = private.sign(digest, _rsa_pad(kind, hash_name),
                                     Prehashed(HASHES[hash_name]))
        return result


# --- the two platforms, as the manager reaches them ----------------------------------------

@dataclass
class Os:
    name: str
    holder: str
    card: FakeCard
    api: Any
    platform: Any

    def hook(self) -> Any:
        return self.platform.os_key_store()


def _issue(pki: TestPKI, name: str, holder: str, key: Any) -> x509.Certificate:
    return pki.issue(name, key.public_key(), purpose="sign", common_name=holder,
                     country="AZ", serial_number=f"AZE{len(pki.identities):07d}")


def make_os(name: str, pki: TestPKI, *, rsa_key: bool = False) -> Os:
    card = FakeCard()
    private: Any = (rsa.generate_private_key(65537, 2048) if rsa_key
                    else ec.generate_private_key(ec.SECP256R1()))
    holder = WIN_HOLDER if name == "windows" else MAC_HOLDER
    card.add(_issue(pki, f"os-{name}-{rsa_key}", holder, private), private)
    # A certificate in the store whose key is elsewhere: never offered.
    stray = ec.generate_private_key(ec.SECP256R1())
    card.add(_issue(pki, f"os-{name}-stray", "Keysiz Sertifikat", stray), None)
    if name == "windows":
        api: Any = FakeCng(card)
        platform: Any = WindowsPlatform(None, None, None, None, {}, list,  # type: ignore[arg-type]
                                        cng=api)
    else:
        software = ec.generate_private_key(ec.SECP256R1())
        api = FakeSecurity(card, _issue(pki, f"os-{name}-soft", "Fayl Açarı",
                                        software).public_bytes(Encoding.DER))
        platform = MacPlatform(lambda argv: None, 501, list, security=api)  # type: ignore[arg-type,return-value]
    return Os(name, holder, card, api, platform)


PLATFORMS = ["windows", "macos"]


def config(modules: list[Path], *, os_store: bool = True) -> Config:
    return Config(tokens=TokensConfig(modules=modules, known_modules=False, os_store=os_store),
                  demo=DemoConfig(enabled="never"))


def holder_of(der: bytes) -> str:
    cert = x509.load_der_x509_certificate(der)
    return str(cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


def make_page(tmp: Path, manager: StoreManager) -> tuple[Page, Answers]:
    answers = Answers(tmp / "answers.json")
    answers.set()
    policy = Policy.load(system_policy=tmp / "no-policy.toml", grants_file=tmp / "grants.json")
    core = AgentCore(stores=manager, ui=ScriptedUI(answers.path), policy=policy,
                     journal=RecordingJournal(), dialog_timeout=5.0)
    services = Services(core=core, formats={}, formats_config=FormatsConfig())
    return Page(SimpleNamespace(services=services)), answers  # type: ignore[arg-type]


async def sign_hash(page: Page, digest: bytes) -> dict[str, Any]:
    handle = await page.select()
    return await page.call("sign.hash", {"handle": handle, "hashAlgorithm": "SHA-256",
                                         "hash": base64.b64encode(digest).decode()})


# --- the stores on their own -------------------------------------------------------------------

@pytest.mark.parametrize("name", PLATFORMS)
async def test_lists_only_token_keys_and_never_asks_for_a_pin(name: str, pki: TestPKI) -> None:
    os_ = make_os(name, pki)
    store: KeyStore = os_.hook().open()
    tokens = await store.tokens()
    assert [t.label for t in tokens] == [os_.holder]  # no stray, no software identity
    [entry] = await store.certificates(tokens[0])
    assert entry.der == os_.card.certs[0] and entry.key is not None
    assert os_.card.pins_seen == [] and os_.card.signed == 0
    if name == "windows":
        # Listing opens each key with exactly these flags, and frees each handle it got.
        acquired = [c for c in os_.api.calls if c[0] == "acquire_key"]
        assert acquired == [("acquire_key", 0x40 | 0x40000)] * 2
        assert sum(c[0] == "free" for c in os_.api.calls) == 1
        assert ("certificates", "MY") in os_.api.calls
        assert tokens[0].reader == "Fake Reader 0"


def test_platform_hook_only_with_a_seam() -> None:
    assert WindowsPlatform(None, None, None, None, {}, list).os_key_store() is None  # type: ignore[arg-type]
    assert MacPlatform(lambda argv: None, 501, list).os_key_store() is None  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize("name", PLATFORMS)
@pytest.mark.parametrize(("scheme", "encoding"), [(Scheme.RSA_PKCS1_V15, None),
                                                  (Scheme.RSA_PSS, None),
                                                  (Scheme.ECDSA, EcdsaEncoding.RAW),
                                                  (Scheme.ECDSA, EcdsaEncoding.DER)])
async def test_every_mechanism_verifies(name: str, scheme: Scheme,
                                        encoding: EcdsaEncoding | None, pki: TestPKI) -> None:
    os_ = make_os(name, pki, rsa_key=scheme is not Scheme.ECDSA)
    store = os_.hook().open()
    [token] = await store.tokens()
    [entry] = await store.certificates(token)
    mechanism = SignMechanism(scheme, HashAlgorithm.SHA256, encoding or EcdsaEncoding.DER)
    digests = [hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()]
    signatures = await store.login_sign_logout(token, entry.key, digests, mechanism,
                                               Secret(PIN))
    cert = x509.load_der_x509_certificate(entry.der)
    for digest, signature in zip(digests, signatures, strict=True):
        verify_with_certificate(cert, digest, signature, mechanism)
    assert os_.card.pins_seen == [PIN.encode()]  # once for the batch
    if name == "macos":
        expected_alg = {Scheme.RSA_PKCS1_V15: "kSecKeyAlgorithmRSASignatureDigestPKCS1v15SHA256",
                        Scheme.RSA_PSS: "kSecKeyAlgorithmRSASignatureDigestPSSSHA256",
                        Scheme.ECDSA: "kSecKeyAlgorithmECDSASignatureDigestX962SHA256"}[scheme]
        assert ("sign", expected_alg, 2) in os_.api.calls
    if name == "windows":
        [sign_call, _] = [c for c in os_.api.calls if c[0] == "sign_hash"]
        expected = {Scheme.RSA_PKCS1_V15: win.Padding(win.BCRYPT_PAD_PKCS1, "SHA256"),
                    Scheme.RSA_PSS: win.Padding(win.BCRYPT_PAD_PSS, "SHA256", 32),
                    Scheme.ECDSA: win.Padding(0)}[scheme]
        assert sign_call == ("sign_hash", expected, win.NCRYPT_SILENT_FLAG)
        assert ("set_pin", win.NCRYPT_SILENT_FLAG) in os_.api.calls


@pytest.mark.parametrize("name", PLATFORMS)
async def test_errors_are_typed(name: str, pki: TestPKI) -> None:
    os_ = make_os(name, pki)
    store = os_.hook().open()
    [token] = await store.tokens()
    [entry] = await store.certificates(token)
    mechanism = SignMechanism(Scheme.ECDSA, HashAlgorithm.SHA256)
    digest = hashlib.sha256(b"x").digest()

    async def attempt(pin: str) -> None:
        await store.login_sign_logout(token, entry.key, [digest], mechanism, Secret(pin))

    os_.card.tries = 3
    with pytest.raises(PinIncorrect) as wrong:
        await attempt("000000")
    assert not wrong.value.status.final_try and wrong.value.status.count_low  # 2 left
    with pytest.raises(PinIncorrect) as last:
        await attempt("000000")
    assert last.value.status.final_try
    assert "000000" not in str(last.value) and PIN not in str(last.value)
    os_.card.prompt_cancelled = True
    with pytest.raises(UserCancelled):
        await attempt(PIN)
    os_.card.prompt_cancelled, os_.card.removed = False, True
    with pytest.raises(TokenNotPresent):
        await attempt(PIN)
    assert os_.card.signed == 0


# --- in the daemon's listing and the core's signing use case -----------------------------------

@pytest.mark.softhsm
@pytest.mark.parametrize("name", PLATFORMS)
async def test_listed_beside_softhsm_and_switchable(name: str, softhsm: SoftHsmBed,
                                                    agent_home: Path) -> None:
    os_ = make_os(name, softhsm.pki)
    for on in (True, False):
        manager = StoreManager.from_config(config([softhsm.module], os_store=on),
                                           env=softhsm.env, os_key_store=os_.hook)
        try:
            holders = {holder_of(e.der) for e in await manager.certificates()}
            assert softhsm.identity("rsa_sign").common_name in holders
            assert (os_.holder in holders) is on
            assert [m.os_store for m in manager.managed].count(True) == int(on)
        finally:
            await manager.close()


@pytest.mark.linux
async def test_linux_has_no_os_store(agent_home: Path) -> None:
    manager = StoreManager.from_config(config([]))  # the platform layer's own answer
    assert not any(m.os_store for m in manager.managed)
    assert manager.problems == []


@pytest.mark.softhsm
@pytest.mark.parametrize("name", PLATFORMS)
async def test_signature_through_the_core_verifies(name: str, softhsm: SoftHsmBed,
                                                   agent_home: Path, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    os_ = make_os(name, softhsm.pki)
    manager = StoreManager.from_config(config([softhsm.module]), env=softhsm.env,
                                       os_key_store=os_.hook)
    try:
        page, answers = make_page(tmp_path, manager)
        answers.set(consent="always", certificate={"holder": os_.holder}, pin=PIN)
        digest = hashlib.sha256(b"beyanname").digest()
        answer = await sign_hash(page, digest)
        result = answer["result"]
        cert_der = base64.b64decode(result["certificate"])
        assert cert_der == os_.card.certs[0]
        public = x509.load_der_x509_certificate(cert_der).public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(base64.b64decode(result["signature"]), digest,
                      ec.ECDSA(Prehashed(hashes.SHA256())))
        assert os_.card.pins_seen == [PIN.encode()]  # to the seam once
        shown = [d["dialog"] for d in answers.shown()]
        assert shown == ["consent", "certificate", "pin"]

        # A wrong PIN goes back to the agent's dialog, which asks again: PIN_INCORRECT
        # reaches the PIN loop, not the page.
        answers.set(consent="always", certificate={"holder": os_.holder}, pin=["1111", PIN])
        answer = await sign_hash(page, digest)
        assert "result" in answer, answer
        retry = [d for d in answers.shown() if d["dialog"] == "pin"][-1]
        assert retry["retry"] is not None

        # Cancelled at the driver's own prompt; the card pulled.
        answers.set(consent="always", certificate={"holder": os_.holder}, pin=PIN)
        os_.card.prompt_cancelled = True
        answer = await sign_hash(page, digest)
        assert answer["error"]["data"]["reason"] == "USER_CANCELLED"
        os_.card.prompt_cancelled = False
        handle = await page.select()
        os_.card.removed = True
        answer = await page.call("sign.hash", {"handle": handle, "hashAlgorithm": "SHA-256",
                                               "hash": base64.b64encode(digest).decode()})
        assert answer["error"]["data"]["reason"] == "TOKEN_NOT_PRESENT", answer
    finally:
        await manager.close()
    assert PIN not in caplog.text and "1111" not in caplog.text
    assert PIN not in (tmp_path / "answers.json.transcript.jsonl").read_text("utf-8")


# --- one key reached by both paths is one row ------------------------------------------------

@pytest.mark.softhsm
@pytest.mark.parametrize("name", PLATFORMS)
async def test_same_key_by_both_paths_is_one_row(name: str, softhsm: SoftHsmBed,
                                                 agent_home: Path) -> None:
    os_ = make_os(name, softhsm.pki)
    # The OS store reads token A too: the same certificate, and for another key a
    # re-issued certificate (other DER, same public key). The fake cannot sign with keys
    # that live in SoftHSM: a row of the OS store chosen here would show it.
    same = softhsm.identity("rsa_sign").cert
    rekeyed = softhsm.pki.issue("ec_sign-reissued", softhsm.identity("ec_sign").cert
                                .public_key(), purpose="sign", common_name="Yenidən Verilmiş",
                                country="TR", serial_number="TUR-REISSUED")
    for cert in (same, rekeyed):
        os_.card.add(cert, object())  # "a key": listing only
    manager = StoreManager.from_config(config([softhsm.module]), env=softhsm.env,
                                       os_key_store=os_.hook)
    try:
        os_id = next(m.store.store_id for m in manager.managed if m.os_store)
        every = await manager.certificates(distinct=False)
        rows = await manager.certificates()
        same_der = same.public_bytes(Encoding.DER)
        rekeyed_der = rekeyed.public_bytes(Encoding.DER)
        # Without merging both paths show both keys ...
        assert {e.token.store_id for e in every if e.der == same_der} == {
            os_id, next(e.token.store_id for e in every
                        if e.der == same_der and e.token.store_id != os_id)}
        assert any(e.der == rekeyed_der and e.token.store_id == os_id for e in every)
        # ... merged, each key is one row, from PKCS#11; the OS-only key stays.
        assert [e.token.store_id != os_id for e in rows if e.der == same_der] == [True]
        assert not any(e.der == rekeyed_der for e in rows)
        assert [e.token.store_id for e in rows if e.der == os_.card.certs[0]] == [os_id]
        assert len(rows) == len(every) - 2
    finally:
        await manager.close()


@pytest.mark.softhsm
async def test_os_row_kept_when_pkcs11_cannot_sign(softhsm: SoftHsmBed, pki: TestPKI,
                                                   agent_home: Path) -> None:
    os_ = make_os("windows", softhsm.pki)
    same = softhsm.identity("rsa_sign").cert
    os_.card.add(same, object())
    manager = StoreManager.from_config(config([softhsm.module]), env=softhsm.env,
                                       os_key_store=os_.hook)
    try:
        every = await manager.certificates(distinct=False)
        same_der = same.public_bytes(Encoding.DER)
        # The PKCS#11 module sees the certificate but not its key (as some vendors'
        # modules do before login): the row that can sign is the OS store's.
        keyless = [replace(e, key=None) if e.der == same_der and not e.token.store_id
                   .startswith("os:") else e for e in every]
        merged = manager._merge_os_rows(keyless)
        [row] = [e for e in merged if e.der == same_der]
        assert row.token.store_id == win.STORE_ID and row.key is not None
        assert isinstance(manager.managed[-1], ManagedStore) and manager.managed[-1].os_store
    finally:
        await manager.close()
