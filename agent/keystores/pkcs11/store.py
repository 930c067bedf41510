"""``Pkcs11Store``: the ``KeyStore`` for one PKCS#11 module, run in a worker process.

The store turns the worker's plain answers into the agent's types: ``TokenInfo`` with a
``PinStatus`` from the token flags, certificates paired with keys (``pairing``), signing
mechanisms built from ``SignMechanism`` and worker error kinds mapped to ``agent.errors``.
Certificates are cached per token until the token disappears or changes identity.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NoReturn

from cryptography import x509

from agent.errors import (
    AgentError,
    InternalError,
    InvalidHandle,
    LoginRequired,
    ModuleCrashed,
    ModuleUnavailable,
    PinIncorrect,
    PinLocked,
    PinStatus,
    TokenNotPresent,
    Unsupported,
    UserCancelled,
)
from agent.keystores import mechanisms
from agent.keystores.base import (
    CertificateEntry,
    Credential,
    KeyRef,
    PinPad,
    Secret,
    SecretKind,
    SignMechanism,
    StoreKind,
    StoreReport,
    TokenInfo,
    Unlock,
)
from agent.keystores.pkcs11.client import WorkerClient, WorkerFailure
from agent.keystores.pkcs11.modules import module_env
from agent.keystores.pkcs11.pairing import (
    CertObject,
    KeyObject,
    pair_certificates,
    public_key_numbers,
)
from agent.keystores.pkcs11.wire import b64, unb64
from agent.protocol.enums import Scheme

# CK_TOKEN_INFO.flags bits the PIN dialog cares about.
CKF_USER_PIN_INITIALIZED = 0x00000008
CKF_PROTECTED_AUTHENTICATION_PATH = 0x00000100
CKF_USER_PIN_COUNT_LOW = 0x00010000
CKF_USER_PIN_FINAL_TRY = 0x00020000
CKF_USER_PIN_LOCKED = 0x00040000
CKF_USER_PIN_TO_BE_CHANGED = 0x00080000


@dataclass(frozen=True)
class ModuleInfo:
    """What ``imza-agent doctor`` shows about one module; ``error`` says why it failed
    (locally only: the path and the loader's words may be in it)."""

    path: Path
    ok: bool
    error: str | None = None
    manufacturer: str = ""
    description: str = ""
    library_version: str = ""
    cryptoki_version: str = ""
    slots: int = 0


def pin_status(flags: int, min_length: int = 0, max_length: int = 0) -> PinStatus:
    return PinStatus(
        count_low=bool(flags & CKF_USER_PIN_COUNT_LOW),
        final_try=bool(flags & CKF_USER_PIN_FINAL_TRY),
        locked=bool(flags & CKF_USER_PIN_LOCKED),
        pin_pad=bool(flags & CKF_PROTECTED_AUTHENTICATION_PATH),
        min_length=min_length, max_length=max_length,
        to_be_changed=bool(flags & CKF_USER_PIN_TO_BE_CHANGED))


def unlock_of(flags: int) -> str:
    """How this token's locked user PIN is unlocked: by the security officer's PIN (the
    PUK, as cards call it), or, while no user PIN was ever set, by setting one."""
    return (Unlock.PUK if flags & CKF_USER_PIN_INITIALIZED else Unlock.INIT_PIN).value


def _identity(token: TokenInfo) -> tuple[str, str, str, str]:
    return token.label, token.manufacturer, token.model, token.serial


@dataclass
class _Cached:
    identity: tuple[str, str, str, str]
    entries: list[CertificateEntry]


_HASH_NAMES = {"SHA-256": "SHA256", "SHA-384": "SHA384", "SHA-512": "SHA512"}
# Hashes per worker call in a batch (sign.hashes allows 1,000).
SIGN_CHUNK = 100


class Pkcs11Store:
    """A PKCS#11 module's tokens; it follows PC/SC card events itself (``card_events``)."""

    kind = StoreKind.PKCS11

    def __init__(self, module: Path, *, call_timeout: float = 20.0,
                 pin_pad_timeout: float = 120.0, env: Mapping[str, str] | None = None) -> None:
        self.module = Path(module)
        self.store_id = f"pkcs11:{module}"
        self.call_timeout = call_timeout
        self.pin_pad_timeout = pin_pad_timeout
        # The caller's settings win over the module's own defaults (``module_env``).
        self.worker = WorkerClient(self.module, env={**module_env(self.module), **(env or {})})
        self._cache: dict[str, _Cached] = {}
        self._pulls = 0  # counts token_pulled(): a call it ended fails as TOKEN_NOT_PRESENT
        # Tokens logged in for a request, from its login to its logout (a batch's groups
        # sign in between), and a reinitialize() that waits for the last logout.
        self._held: set[str] = set()
        self._reinitialize_at_logout = False

    def __repr__(self) -> str:
        return f"Pkcs11Store({str(self.module)!r})"

    @property
    def card_events(self) -> Pkcs11Store:
        return self  # invalidate, busy, reinitialize, token_pulled below

    async def _call(self, op: str, args: dict[str, Any], *, timeout: float | None = None,
                    token_id: str | None = None) -> Any:
        pulls = self._pulls
        try:
            return await self.worker.call(op, args, timeout or self.call_timeout)
        except ModuleCrashed:
            if self._pulls != pulls:  # the card left mid-call, the module did not crash
                raise TokenNotPresent() from None
            raise
        except WorkerFailure as failure:
            if failure.kind == "TOKEN_NOT_PRESENT" and token_id is not None:
                self.invalidate(token_id)
            _raise_for(failure)

    # --- listing ------------------------------------------------------------------------------

    async def current_token(self, token_id: str) -> TokenInfo:
        """One token as it is now (its PIN state read now), or TOKEN_NOT_PRESENT:
        what resolving a handle needs on every request, without listing every slot."""
        item = await self._call("token", {"token_id": token_id}, token_id=token_id)
        return self._token_info(item)

    async def tokens(self) -> list[TokenInfo]:
        found = [self._token_info(item) for item in await self._call("tokens", {})]
        current = {token.token_id: _identity(token) for token in found}
        for token_id, cached in list(self._cache.items()):
            if current.get(token_id) != cached.identity:
                del self._cache[token_id]
        return found

    def _token_info(self, item: dict[str, Any]) -> TokenInfo:
        return TokenInfo(
            store_id=self.store_id, token_id=item["token_id"], label=item["label"],
            manufacturer=item["manufacturer"], model=item["model"], serial=item["serial"],
            kind=self.kind,
            pin=pin_status(int(item["flags"]), int(item["min_pin"]), int(item["max_pin"])),
            secret=SecretKind.PIN, unlock=unlock_of(int(item["flags"])),
            reader=item.get("reader"))

    def invalidate(self, token_id: str | None = None) -> None:
        """Forget cached certificates of one token (or all): the PC/SC watcher calls this
        when a card is removed or inserted."""
        if token_id is None:
            self._cache.clear()
        else:
            self._cache.pop(token_id, None)

    @property
    def busy(self) -> bool:
        """A module call is in flight (the PC/SC watcher leaves a busy module alone)."""
        return self.worker.busy

    async def reinitialize(self) -> None:
        """Unload the module; the next call loads it afresh (``C_Initialize``).  For
        modules that read their slots only at start, after a card came or went."""
        self.invalidate()
        if self._held:
            # A request is logged in (between two groups of a batch): unloading the
            # module now would log it out half-way.  Its logout does it (a card event for
            # another reader, or an unknown card, must not fail a batch on this token).
            self._reinitialize_at_logout = True
            return
        self._reinitialize_at_logout = False
        await self.worker.close()

    def token_pulled(self) -> None:
        """The card was pulled while a call hangs in the module: end that call, which
        then fails with TOKEN_NOT_PRESENT, and forget the cached certificates."""
        self._pulls += 1
        self.invalidate()
        self.worker.abort()

    async def certificates(self, token: TokenInfo) -> list[CertificateEntry]:
        self._check_token(token)
        cached = self._cache.get(token.token_id)
        if cached is not None and cached.identity == _identity(token):
            return [dataclasses.replace(entry, token=token) for entry in cached.entries]
        listing = await self._call("objects", {"token_id": token.token_id},
                                   token_id=token.token_id)
        entries = self._entries(token, listing)
        self._cache[token.token_id] = _Cached(_identity(token), entries)
        return list(entries)

    def _entries(self, token: TokenInfo, listing: dict[str, Any]) -> list[CertificateEntry]:
        certs = [CertObject(der=unb64(c["der"]) or b"", id=unb64(c.get("id")) or b"",
                            label=c.get("label") or "") for c in listing["certificates"]]
        pairs = pair_certificates(certs, _key_objects(listing["private_keys"]),
                                  _key_objects(listing["public_keys"]))
        entries = []
        for pair in pairs:
            key = None
            if pair.key_id is not None and pair.key_type is not None:
                key = KeyRef(store_id=self.store_id, token_id=token.token_id,
                             key_id=pair.key_id.hex(), key_type=pair.key_type,
                             always_authenticate=pair.always_authenticate)
            entries.append(CertificateEntry(der=pair.cert.der, token=token,
                                            label=pair.cert.label, key=key,
                                            pairing=pair.method if key else None))
        return entries

    def _check_token(self, token: TokenInfo) -> None:
        if token.store_id != self.store_id:
            raise InvalidHandle("the token belongs to another store")

    # --- login ---------------------------------------------------------------------------------

    async def login(self, token: TokenInfo, credential: Credential) -> None:
        self._check_token(token)
        if credential is None:
            raise Unsupported("unknown kind of credential")
        args, timeout = self._credential_args(credential)
        await self._call("login", {"token_id": token.token_id, **args}, timeout=timeout,
                         token_id=token.token_id)
        self._held.add(token.token_id)

    def _credential_args(self, credential: Credential | None) -> tuple[dict[str, Any], float]:
        """Worker arguments for a PIN or the PIN pad, and the timeout that goes with it
        (a person at a PIN pad takes longer than a worker call)."""
        if isinstance(credential, PinPad):
            return {"pin_pad": True}, self.pin_pad_timeout
        if isinstance(credential, Secret):
            return {"pin": b64(credential.reveal())}, self.call_timeout
        return {}, self.call_timeout

    async def logout(self, token: TokenInfo) -> None:
        self._check_token(token)
        try:
            await self._call("logout", {"token_id": token.token_id}, token_id=token.token_id)
        finally:
            self._held.discard(token.token_id)
            if self._reinitialize_at_logout and not self._held:
                await self.reinitialize()

    # --- signing -------------------------------------------------------------------------------

    async def sign(self, key: KeyRef, digest: bytes, mechanism: SignMechanism,
                   credential: Credential | None = None) -> bytes:
        [signature] = await self.sign_many(key, [digest], mechanism, credential)
        return signature

    async def sign_many(self, key: KeyRef, digests: Sequence[bytes],
                        mechanism: SignMechanism,
                        credential: Credential | None = None) -> list[bytes]:
        """Sign hashes with one key, up to SIGN_CHUNK per worker call: one key lookup per
        chunk instead of per hash, and each call stays well inside the call timeout even
        on a slow card."""
        self._check_key(key, digests, mechanism)
        credential_args, timeout = self._credential_args(credential)
        signatures: list[bytes] = []
        for start in range(0, len(digests), SIGN_CHUNK):
            call = self._sign_args(key, digests[start:start + SIGN_CHUNK], mechanism)
            answer = await self._call("sign", {**call, **credential_args}, timeout=timeout,
                                      token_id=key.token_id)
            signatures += _signatures(answer, mechanism)
        return signatures

    async def login_sign_logout(self, token: TokenInfo, key: KeyRef, digests: Sequence[bytes],
                                mechanism: SignMechanism, credential: Credential) -> list[bytes]:
        """``login``, ``sign_many`` and ``logout`` with one worker call for up to
        SIGN_CHUNK hashes (the worker's ``login_sign_logout``).  The token is logged out
        afterwards whatever happens.  Raises what ``login`` and ``sign_many`` raise."""
        self._check_token(token)
        if key.token_id != token.token_id:
            raise InvalidHandle("the key is on another token")
        self._check_key(key, digests, mechanism)
        credential_args, timeout = self._credential_args(credential)
        if not credential_args:
            raise Unsupported("unknown kind of credential")
        first = self._sign_args(key, digests[:SIGN_CHUNK], mechanism)
        more = len(digests) > SIGN_CHUNK
        try:
            answer = await self._call(
                "login_sign_logout", {**first, **credential_args, "stay_logged_in": more},
                timeout=timeout, token_id=key.token_id)
        except (TokenNotPresent, ModuleCrashed):
            # The call died with its card or its worker: a logout now restarts the worker
            # (the module loads afresh and sees the token gone), so the listing that the
            # card event makes next tells the pages, as a separate logout always did.
            with contextlib.suppress(AgentError):
                await self.logout(token)
            raise
        signatures = _signatures(answer, mechanism)
        if not more:
            return signatures
        self._held.add(token.token_id)  # the worker stayed logged in for the next chunks
        try:
            # The PIN goes along again only for a key that asks for it per signature.
            per_op = credential if answer.get("pin_per_signature") else None
            signatures += await self.sign_many(key, digests[SIGN_CHUNK:], mechanism, per_op)
        finally:
            with contextlib.suppress(AgentError):  # a dead worker or pulled token: logged out
                await self.logout(token)
        return signatures

    def _check_key(self, key: KeyRef, digests: Sequence[bytes],
                   mechanism: SignMechanism) -> None:
        if key.store_id != self.store_id:
            raise InvalidHandle("the key belongs to another store")
        mechanisms.scheme_fits_key(mechanism.scheme, key.key_type)
        for digest in digests:
            mechanisms.check_digest(mechanism.hash_algorithm, digest)

    def _sign_args(self, key: KeyRef, digests: Sequence[bytes],
                   mechanism: SignMechanism) -> dict[str, Any]:
        """A ``sign`` request for one chunk, without the credential."""
        chunk = [_mechanism_args(mechanism, d) for d in digests]
        return {"token_id": key.token_id, "key_id": _key_id_b64(key.key_id),
                **self._public_key_hint(key),
                **{k: v for k, v in chunk[0].items() if k != "data"},
                "data_list": [item["data"] for item in chunk]}

    def _public_key_hint(self, key: KeyRef) -> dict[str, Any]:
        """The certificate's public key, so the worker can find the private key by it when
        the CKA_IDs do not match."""
        cached = self._cache.get(key.token_id)
        for entry in cached.entries if cached else ():
            if entry.key is not None and entry.key.key_id == key.key_id:
                return dict(_public_key_hint_of(entry.der))
        return {}

    # --- diagnostics and shutdown ---------------------------------------------------------------

    async def module_info(self) -> ModuleInfo:
        """Load the module and describe it; never raises (``ok=False`` says why)."""
        try:
            info = await self._call("info", {})
        except ModuleUnavailable:
            return ModuleInfo(self.module, ok=False,
                              error=self.worker.load_problem or ModuleUnavailable.default_message)
        except AgentError as exc:
            return ModuleInfo(self.module, ok=False, error=f"{type(exc).__name__}: {exc.message}")
        return ModuleInfo(self.module, ok=True, manufacturer=info["manufacturer"],
                          description=info["description"],
                          library_version=info["library_version"],
                          cryptoki_version=info["cryptoki_version"], slots=int(info["slots"]))

    async def diagnostics(self) -> StoreReport:
        info = await self.module_info()
        return StoreReport("modules", {
            "path": str(info.path), "loaded": info.ok, "error": info.error,
            "manufacturer": info.manufacturer if info.ok else None,
            "description": info.description if info.ok else None,
            "libraryVersion": info.library_version if info.ok else None,
            "cryptokiVersion": info.cryptoki_version if info.ok else None,
            "slots": info.slots if info.ok else None})

    async def close(self) -> None:
        await self.worker.close()


@lru_cache(maxsize=64)
def _public_key_hint_of(der: bytes) -> tuple[tuple[str, str | None], ...]:
    """Parsed once per certificate: re-parsing it for every signature of a batch cost more
    than the token's own P-256 signature (see docs/performance.md)."""
    numbers = public_key_numbers(x509.load_der_x509_certificate(der))
    return ("modulus", b64(numbers.modulus)), ("ec_point", b64(numbers.ec_point))


@lru_cache(maxsize=64)
def _key_id_b64(key_id_hex: str) -> str | None:
    return b64(bytes.fromhex(key_id_hex))


def _signatures(answer: dict[str, Any], mechanism: SignMechanism) -> list[bytes]:
    signatures = [unb64(raw) or b"" for raw in answer["signatures"]]
    if mechanism.scheme is Scheme.ECDSA:
        signatures = [mechanisms.encode_ecdsa(s, mechanism.ecdsa_encoding) for s in signatures]
    return signatures


def _key_objects(items: list[dict[str, Any]]) -> list[KeyObject]:
    return [KeyObject(id=unb64(k.get("id")) or b"", key_type=k.get("key_type"),
                      label=k.get("label") or "", modulus=unb64(k.get("modulus")),
                      exponent=unb64(k.get("exponent")), ec_point=unb64(k.get("ec_point")),
                      always_authenticate=k.get("always_authenticate"))
            for k in items]


def _mechanism_args(mechanism: SignMechanism, digest: bytes) -> dict[str, Any]:
    alg = mechanism.hash_algorithm
    if mechanism.scheme is Scheme.RSA_PKCS1_V15:
        return {"mechanism": "RSA_PKCS", "data": b64(mechanisms.digest_info(alg, digest))}
    if mechanism.scheme is Scheme.RSA_PSS:
        return {"mechanism": "RSA_PKCS_PSS", "data": b64(digest),
                "pss": {"hash": _HASH_NAMES[alg.value], "salt": alg.digest_size}}
    return {"mechanism": "ECDSA", "data": b64(digest)}


def _status_of(failure: WorkerFailure) -> PinStatus:
    token = failure.data.get("token")
    if not token:
        return PinStatus()
    return pin_status(int(token["flags"]), int(token["min_pin"]), int(token["max_pin"]))


def _raise_for(failure: WorkerFailure) -> NoReturn:
    """The agent's error for a worker's answer.  Errors carry fixed texts only (the
    worker's messages are such texts); the module's own words and paths stayed in the
    worker's ``detail``, which only the log sees."""
    kind = failure.kind
    if kind == "PIN_INCORRECT":
        status = _status_of(failure)
        if status.locked:
            raise PinLocked(unlock=_unlock_after(failure))
        raise PinIncorrect(status)
    if kind == "PIN_LOCKED":
        raise PinLocked(unlock=_unlock_after(failure))
    if kind == "PIN_EXPIRED":
        raise PinLocked("the PIN has expired; change it with the token's software",
                        unlock=Unlock.CHANGE_PIN.value)
    if kind == "PIN_NOT_INITIALIZED":
        raise PinLocked("the token's user PIN is not set", unlock=Unlock.INIT_PIN.value)
    if kind == "TOKEN_NOT_PRESENT":
        raise TokenNotPresent()
    if kind == "LOGIN_REQUIRED":
        raise LoginRequired(context=failure.data.get("context"))
    if kind == "UNSUPPORTED":
        raise Unsupported(failure.message)
    if kind == "USER_CANCELLED":
        raise UserCancelled()
    if kind == "KEY_NOT_FOUND":
        raise InvalidHandle("the private key is no longer on the token", detail="KEY_NOT_FOUND")
    if kind == "LOAD_FAILED":
        raise ModuleUnavailable()
    raise InternalError("the token module failed")


def _unlock_after(failure: WorkerFailure) -> str:
    token = failure.data.get("token")
    return unlock_of(int(token["flags"])) if token else Unlock.PUK.value
