"""In-memory stand-ins for the core's ports: a key store with software keys and a PIN
counter, the stores port over several of them, and a journal that keeps its lines.

They implement the same interfaces the real adapters do (``KeyStore``,
``KeyStoresPort``, ``JournalPort``), so the use cases run in-process, in milliseconds,
with the scripted UI answering the dialogs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from testbed.pki import TestPKI, build_pki

from agent.app.core import AgentCore
from agent.app.dialogs import (
    CertificateChoice,
    ConsentAnswer,
    ConsentRequest,
    ExtendRequest,
    PinRequest,
    UserInterface,
)
from agent.app.services import Services
from agent.config import UiConfig
from agent.errors import (
    AgentError,
    InvalidHandle,
    LoginRequired,
    PinIncorrect,
    PinLocked,
    PinStatus,
    TokenNotPresent,
)
from agent.keystores.base import (
    CardEvents,
    CertificateEntry,
    Credential,
    KeyRef,
    KeyType,
    PinPad,
    SecretKind,
    SignMechanism,
    StoreKind,
    StoreReport,
    TokenInfo,
    sign_each,
)
from agent.keystores.pkcs12 import sign_digest
from agent.methods import register_all
from agent.policy.policy import Policy
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.ui.scripted import ScriptedUI

PrivateKey = Any  # an in-memory cryptography private key


@dataclass
class FakeKey:
    ref: KeyRef
    private: PrivateKey
    certificate: x509.Certificate


@dataclass
class FakeKeyStore:
    """One token with a user PIN (or a file with a password) and software keys."""

    store_id: str = "fake"
    secret: str = "1234"
    secret_kind: SecretKind = SecretKind.PIN
    unlock: str = "PUK"
    tries: int = 3
    pin_pad: bool = False
    present: bool = True
    label: str = "Fake token"
    # Raised by the next login instead of checking the PIN (e.g. PinLocked(unlock=…)).
    login_error: AgentError | None = None
    kind: StoreKind = StoreKind.PKCS11
    keys: list[FakeKey] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    logged_in: bool = False
    signed: list[bytes] = field(default_factory=list)

    @property
    def card_events(self) -> CardEvents | None:
        return None

    @property
    def token_id(self) -> str:
        return f"{self.store_id}/token"

    def status(self) -> PinStatus:
        return PinStatus(count_low=self.tries < 3, final_try=self.tries == 1,
                         locked=self.tries <= 0, pin_pad=self.pin_pad)

    def token(self) -> TokenInfo:
        return TokenInfo(store_id=self.store_id, token_id=self.token_id, label=self.label,
                         manufacturer="Fake", model="Fake", serial="0001", kind=self.kind,
                         pin=self.status(), secret=self.secret_kind, unlock=self.unlock,
                         present=self.present)

    def add_key(self, private: PrivateKey, certificate: x509.Certificate, *,
                always_authenticate: bool = False) -> KeyRef:
        key_type = KeyType.EC if isinstance(private, ec.EllipticCurvePrivateKey) else KeyType.RSA
        ref = KeyRef(self.store_id, self.token_id, f"{len(self.keys):02x}", key_type,
                     always_authenticate)
        self.keys.append(FakeKey(ref, private, certificate))
        return ref

    # --- KeyStore ------------------------------------------------------------------------

    async def tokens(self) -> list[TokenInfo]:
        self.calls.append("tokens")
        return [self.token()] if self.present else []

    async def certificates(self, token: TokenInfo) -> list[CertificateEntry]:
        self.calls.append("certificates")
        info = self.token()
        return [CertificateEntry(der=k.certificate.public_bytes(Encoding.DER), token=info,
                                 label=f"key {k.ref.key_id}", key=k.ref, pairing="id")
                for k in self.keys]

    def _check(self, credential: Credential) -> None:
        if self.tries <= 0:
            raise PinLocked(unlock=self.unlock)
        if isinstance(credential, PinPad):
            if not self.pin_pad:
                raise AgentError("no PIN pad")
            return
        if credential.reveal() != self.secret.encode():
            self.tries -= 1
            raise PinIncorrect(self.status())
        self.tries = 3

    async def login(self, token: TokenInfo, credential: Credential) -> None:
        self.calls.append("login")
        if not self.present:
            raise TokenNotPresent()
        if self.login_error is not None:
            raise self.login_error
        self._check(credential)
        self.logged_in = True

    async def logout(self, token: TokenInfo) -> None:
        self.calls.append("logout")
        self.logged_in = False

    async def sign(self, key: KeyRef, digest: bytes, mechanism: SignMechanism,
                   credential: Credential | None = None) -> bytes:
        self.calls.append("sign")
        found = next((k for k in self.keys if k.ref.key_id == key.key_id), None)
        if found is None:
            raise InvalidHandle("no such key")
        if not self.logged_in:
            raise LoginRequired()
        if found.ref.always_authenticate:
            if credential is None:
                raise LoginRequired()
            self._check(credential)
        self.signed.append(digest)
        return sign_digest(found.private, digest, mechanism)

    async def sign_many(self, key: KeyRef, digests: Sequence[bytes], mechanism: SignMechanism,
                        credential: Credential | None = None) -> list[bytes]:
        return await sign_each(self, key, digests, mechanism, credential)

    async def diagnostics(self) -> StoreReport:
        return StoreReport("fake", {"storeId": self.store_id})

    async def close(self) -> None:
        self.calls.append("close")


class FakeStores:
    """``KeyStoresPort`` over a few fake stores."""

    def __init__(self, *stores: FakeKeyStore) -> None:
        self.by_id = {s.store_id: s for s in stores}

    def store(self, store_id: str) -> FakeKeyStore:
        try:
            return self.by_id[store_id]
        except KeyError:
            raise InvalidHandle("no such key store") from None

    async def tokens(self) -> list[TokenInfo]:
        return [t for s in self.by_id.values() for t in await s.tokens()]

    async def certificates(self) -> list[CertificateEntry]:
        out: list[CertificateEntry] = []
        for s in self.by_id.values():
            for token in await s.tokens():
                out.extend(await s.certificates(token))
        return out

    async def certificates_in(self, store_id: str) -> list[CertificateEntry]:
        return [e for e in await self.certificates() if e.token.store_id == store_id]


@dataclass
class RecordingJournal:
    lines: list[dict[str, Any]] = field(default_factory=list)

    def append(self, *, origin: str, method: str, certificate_sha256: str | None,
               digest_algorithm: str | None, digest_hex: str | None, result: str,
               count: int = 1) -> dict[str, Any]:
        line = {"origin": origin, "method": method, "certificate_sha256": certificate_sha256,
                "digest_algorithm": digest_algorithm, "digest_hex": digest_hex,
                "result": result, "count": count}
        self.lines.append(line)
        return line


@dataclass
class Answers:
    """The scripted UI's answers file and its transcript of shown dialogs."""

    path: Path

    def set(self, **answers: object) -> None:
        self.path.write_text(json.dumps(answers), encoding="utf-8")

    def shown(self) -> list[dict[str, Any]]:
        transcript = self.path.with_name(self.path.name + ".transcript.jsonl")
        if not transcript.exists():
            return []
        return [json.loads(line) for line in transcript.read_text("utf-8").splitlines()]


@dataclass
class Bench:
    """Everything an in-process use-case test needs."""

    pki: TestPKI
    store: FakeKeyStore
    stores: FakeStores
    journal: RecordingJournal
    answers: Answers
    policy: Policy
    core: AgentCore
    services: Services

    def issue(self, name: str, *, purpose: str = "sign", curve: ec.EllipticCurve | None = None,
              common_name: str = "Əliyev Əli", store: FakeKeyStore | None = None,
              always_authenticate: bool = False, **dates: Any) -> KeyRef:
        """A fresh EC key with a certificate of ``purpose`` on the (given) fake token."""
        private = ec.generate_private_key(curve or ec.SECP256R1())
        cert = self.pki.issue(name, private.public_key(), purpose=purpose,
                              common_name=common_name, country="AZ",
                              serial_number=f"AZE{len(self.pki.identities):07d}", **dates)
        return (store or self.store).add_key(private, cert,
                                            always_authenticate=always_authenticate)


_PKI: TestPKI | None = None


def shared_pki() -> TestPKI:
    """One CA pair per test run: RSA CA keys are the slow part."""
    global _PKI
    if _PKI is None:
        _PKI = build_pki()
    return _PKI


def make_bench(tmp: Path, *, interactive: bool = True, dialog_timeout: float = 5.0,
               limits: UiConfig | None = None, **store_options: Any) -> Bench:
    from agent.config import FormatsConfig

    store = FakeKeyStore(**store_options)
    stores = FakeStores(store)
    journal = RecordingJournal()
    answers = Answers(tmp / "answers.json")
    answers.set()
    ui = ScriptedUI(answers.path)
    if not interactive:
        ui.interactive = False  # type: ignore[misc]
    policy = Policy.load(system_policy=tmp / "no-policy.toml", grants_file=tmp / "grants.json")
    core = AgentCore(stores=stores, ui=ui, policy=policy, journal=journal,
                     dialog_timeout=dialog_timeout, limits=limits)
    services = Services(core=core, formats={}, formats_config=FormatsConfig())
    return Bench(shared_pki(), store, stores, journal, answers, policy, core, services)


PAGE_ORIGIN = "https://portal.example.az"


class Page:
    """One connection of a page to the in-process agent."""

    def __init__(self, bench: Bench, origin: str = PAGE_ORIGIN) -> None:
        self.bench = bench
        self.dispatcher = Dispatcher()
        register_all(self.dispatcher, bench.services)
        self.ctx = CallContext(origin=origin, transport="wss", connection_id="c1")
        self._id = 0

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._id += 1
        frame = json.dumps({"jsonrpc": "2.0", "id": self._id, "method": method,
                            "params": params or {}})
        reply = await self.dispatcher.handle_frame(self.ctx, frame)
        assert reply is not None
        answer: dict[str, Any] = json.loads(reply)
        return answer

    async def select(self, purpose: str = "sign") -> str:
        answer = await self.call("certificates.select", {"purpose": purpose})
        assert "result" in answer, answer
        handle: str = answer["result"]["handle"]
        return handle


def fingerprint(cert_der: bytes) -> str:
    return x509.load_der_x509_certificate(cert_der).fingerprint(hashes.SHA256()).hex()



class WatchingUI:
    """Wraps a UI backend (the scripted one) to see what the transcript cannot: how many
    dialogs are open at once, and the whole ``PinRequest`` of every PIN dialog."""

    def __init__(self, inner: UserInterface) -> None:
        self.inner = inner
        self.open = 0
        self.most_open = 0
        self.pin_requests: list[PinRequest] = []
        self.extend_requests: list[ExtendRequest] = []

    @property
    def interactive(self) -> bool:
        return self.inner.interactive

    def _opened(self) -> None:
        self.open += 1
        self.most_open = max(self.most_open, self.open)

    async def ask_consent(self, request: ConsentRequest) -> ConsentAnswer:
        self._opened()
        try:
            return await self.inner.ask_consent(request)
        finally:
            self.open -= 1

    async def choose_certificate(self, origin: str, purpose: str,
                                 choices: list[CertificateChoice], *,
                                 filtered: bool = False) -> int:
        self._opened()
        try:
            return await self.inner.choose_certificate(origin, purpose, choices,
                                                       filtered=filtered)
        finally:
            self.open -= 1

    async def ask_pin(self, request: PinRequest) -> Credential:
        self.pin_requests.append(request)
        self._opened()
        try:
            return await self.inner.ask_pin(request)
        finally:
            self.open -= 1

    async def show_pin_locked(self, origin: str, token_label: str, unlock: str) -> None:
        self._opened()
        try:
            await self.inner.show_pin_locked(origin, token_label, unlock)
        finally:
            self.open -= 1

    async def ask_extend(self, request: ExtendRequest) -> None:
        self.extend_requests.append(request)
        self._opened()
        try:
            await self.inner.ask_extend(request)
        finally:
            self.open -= 1

    def pin_pad_finished(self) -> None:
        self.inner.pin_pad_finished()


def watch_dialogs(bench: Bench) -> WatchingUI:
    """Put a ``WatchingUI`` between the bench's core and its scripted UI."""
    watching = WatchingUI(bench.core.ui)
    bench.core.ui = watching
    return watching
