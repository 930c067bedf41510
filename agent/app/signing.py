"""The one signing use case: every method that uses a private key goes through
``sign_with_key`` — ``sign.hash``/``sign.hashes``, ``auth.login`` and the document formats.

    consent → the handle's certificate (or the picker) → certificate checks →
    the method's own work, which may use the key once (confirmation + PIN dialog,
    login, signatures checked against the certificate) → the journal entry, for a
    request that got that far (the rest are only counted: ``AgentCore.unjournaled``).

A method supplies only what differs: what it needs permission for, how the certificate
is found, and ``produce`` — what it makes with one use of the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar, cast, runtime_checkable
from weakref import WeakKeyDictionary

from cryptography import x509

from agent.app import certs
from agent.app.certs import CertificateFilter
from agent.app.core import AgentCore
from agent.app.dialogs import PinRequest, Preview, PreviewKind, SignedField
from agent.errors import (
    AgentError,
    CertificateInvalid,
    InternalError,
    LoginRequired,
    PinIncorrect,
    PinLocked,
    UserCancelled,
    UserTimeout,
)
from agent.keystores.base import (
    CertificateEntry,
    Credential,
    KeyRef,
    KeyType,
    PinPad,
    Secret,
    SecretKind,
    SignMechanism,
    TokenInfo,
)
from agent.keystores.mechanisms import scheme_fits_key, verify_with_certificate
from agent.policy.rules import Permission
from agent.protocol.dispatch import CallContext
from agent.protocol.enums import EcdsaEncoding, HashAlgorithm, Scheme

log = logging.getLogger(__name__)
T = TypeVar("T")

# Text from a page is shown as plain text and capped: a page must not fill the dialog.
DISPLAY_TEXT_LIMIT = 500
DOCUMENT_NAME_LIMIT = 120
# Blank lines in a row that the display text keeps: more would push its end out of sight.
DISPLAY_BLANK_LINES = 1

SignedFields = tuple[tuple[SignedField, str], ...]
# What the signature covers, as the dialog shows it: made just before the dialog (after
# consent, the certificate and the document's own checks), given ``[ui] preview_bytes``.
PreviewSource = Callable[[int], Awaitable[tuple[Preview, ...]]]


@runtime_checkable
class SignsInOneCall(Protocol):
    """A store that logs in, signs and logs out in one call (``Pkcs11Store``): a request
    then costs one round trip to the token's worker instead of three."""

    async def login_sign_logout(self, token: TokenInfo, key: KeyRef, digests: Sequence[bytes],
                                mechanism: SignMechanism,
                                credential: Credential) -> list[bytes]: ...


# isinstance() against a runtime-checkable Protocol walks its members each time (about
# 30 µs here); a store's class answers the same on every request.
_ONE_CALL_TYPES: dict[type, bool] = {}


def _signs_in_one_call(store: object) -> SignsInOneCall | None:
    kind = type(store)
    fits = _ONE_CALL_TYPES.get(kind)
    if fits is None:
        fits = _ONE_CALL_TYPES[kind] = isinstance(store, SignsInOneCall)
    return cast(SignsInOneCall, store) if fits else None


@dataclass(frozen=True)
class Display:
    """What the page asks the confirmation dialog to show besides origin and certificate."""

    text: str | None = None
    document_name: str | None = None


@dataclass(frozen=True)
class SigningRequest:
    method: str                    # the protocol method, for the journal
    purpose: str                   # "sign" or "auth": which certificates and permission
    handle: str | None = None      # None: the user picks a certificate now
    display: Display = Display()
    # Page-chosen text written into the signature (a PDF's reason, location, ...), in
    # the page's order; the dialog shows every one.
    signed_fields: SignedFields = ()
    # For the journal ("SHA-256") until the key is used; then the one it signed with.
    digest_algorithm: str | None = None
    # None only for a request that signs no content the user could be shown (auth).
    previews: PreviewSource | None = None


_SPACES = re.compile(r"[^\S\n]+")  # whitespace runs within a line


def _visible(text: str) -> str:
    """Whitespace of any kind becomes a plain space or a line break; other characters
    that draw nothing (format, private-use, unassigned) are dropped."""
    out = []
    for ch in text:
        if ch in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029":
            out.append("\n")
        elif ch.isspace():
            out.append(" ")
        elif ch.isprintable():
            out.append(ch)
    return "".join(out)


def _capped(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: str | None, limit: int | None = None) -> str | None:
    """A page string for one line of a dialog: every whitespace run, line breaks
    included, becomes one space, so padding cannot push text into the agent's own rows."""
    if text is None:
        return None
    text = " ".join(_visible(text).split())
    return _capped(text, limit) if limit is not None else text


def display_lines(text: str | None, limit: int) -> str | None:
    """The page's display text: its line breaks kept, runs of spaces inside a line
    collapsed, at most ``DISPLAY_BLANK_LINES`` blank lines in a row, none at either end."""
    if text is None:
        return None
    lines: list[str] = []
    blank = 0
    for raw in _visible(text).split("\n"):
        line = _SPACES.sub(" ", raw).strip()
        blank = blank + 1 if not line else 0
        if (line or lines) and blank <= DISPLAY_BLANK_LINES:
            lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    return _capped("\n".join(lines), limit)


def shown_fields(fields: SignedFields) -> SignedFields:
    """Signed text as the dialog shows it: never shortened (the params bound its length:
    the user sees all of what is signed), only whitespace runs shown as one space."""
    return tuple((name, one_line(value) or "") for name, value in fields)


def hash_previews(hashes: Sequence[bytes]) -> PreviewSource:
    """A page that sends only hashes shows no document: each item is its fingerprint."""

    async def previews(limit: int) -> tuple[Preview, ...]:
        return tuple(Preview(PreviewKind.HASH, size=len(h), sha256=h.hex()) for h in hashes)

    return previews


async def _previews(core: AgentCore, request: SigningRequest) -> tuple[Preview, ...]:
    if request.previews is None:
        return ()
    previews = await request.previews(core.preview_bytes)
    name = one_line(request.display.document_name, DOCUMENT_NAME_LIMIT)
    if name is None or len(previews) != 1:
        return previews  # a batch: the page's one name is the request's, no item's
    return (replace(previews[0], name=name),)


def mechanism_for(entry: CertificateEntry, scheme: Scheme | None,
                  hash_algorithm: HashAlgorithm,
                  ecdsa_encoding: EcdsaEncoding | None = None) -> SignMechanism:
    """The page's scheme (or the key's natural one), checked against the key type."""
    key = _key(entry)
    if scheme is None:
        scheme = Scheme.ECDSA if key.key_type is KeyType.EC else Scheme.RSA_PKCS1_V15
    scheme_fits_key(scheme, key.key_type)
    return SignMechanism(scheme, hash_algorithm, ecdsa_encoding or EcdsaEncoding.DER)


def _key(entry: CertificateEntry) -> KeyRef:
    if entry.key is None:  # the picker and handles only ever offer paired certificates
        raise InternalError("the certificate has no private key")
    return entry.key


@dataclass
class KeyUse:
    """One request's use of the key behind the chosen certificate: one confirmation + PIN
    dialog and one login, for ``allowed`` digests (one per document; a batch's items) —
    or, signed at once without ``confirm``, for one call with any number of them.

    Two ways through it:

    * ``confirm`` first (the document builders, D3 of issue 14: their signing time must
      follow the user's answer): the dialog, the PIN and the login happen there and the
      token stays logged in — under the token's lock, so no other request logs it out
      meanwhile — until the last allowed ``sign``, or ``close``, logs out;
    * ``sign`` straight away (``sign.hash``/``sign.hashes``/``auth.login``): with a store
      that can, login, signatures and logout in one call to the token's worker.

    A signature past ``allowed`` fails loudly, so a format library that wanted to sign
    twice cannot make the user confirm twice, nor sign what was not shown."""

    core: AgentCore
    ctx: CallContext
    entry: CertificateEntry
    request: SigningRequest
    digests: list[bytes] = field(default_factory=list)  # what was signed, for the journal
    digest_algorithm: str | None = None
    allowed: int = 1
    _made: int = 0
    _confirmed: bool = False
    _session: _TokenSession | None = None

    @property
    def certificate(self) -> x509.Certificate:
        return certs.load(self.entry.der)

    async def confirm(self) -> None:
        """The confirmation + PIN dialog and the login, once; a wrong PIN asks again."""
        if self._confirmed:
            return
        self._confirmed = True
        self._session = await _open_session(self.core, self.ctx, self.entry, self.request,
                                            self.allowed)

    async def sign(self, digests: Sequence[bytes], mechanism: SignMechanism) -> list[bytes]:
        if not self._confirmed and self.allowed == 1:
            # One call for everything (sign.hash, sign.hashes, auth.login): the dialog,
            # the login, every digest and the logout at once.
            if self._made:
                raise InternalError("a second signature was asked for in one request")
            self._made, self._confirmed = 1, True
            self.digests = list(digests)
            self.digest_algorithm = mechanism.hash_algorithm.value
            return await _confirm_and_sign(self.core, self.ctx, self.entry, self.request,
                                           self.digests, mechanism)
        if self._made + len(digests) > self.allowed:
            raise InternalError("a second signature was asked for in one request")
        self._made += len(digests)
        self.digests += digests
        self.digest_algorithm = mechanism.hash_algorithm.value
        await self.confirm()
        if self._session is None:
            raise InternalError("the token session has ended")
        try:
            return await self._session.sign(digests, mechanism)
        finally:
            if self._made >= self.allowed:
                await self.close()

    async def close(self) -> None:
        """Log out and forget the PIN (idempotent; ``sign_with_key`` calls it whatever
        became of the request)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


async def sign_with_key(core: AgentCore, ctx: CallContext, request: SigningRequest,
                        produce: Callable[[KeyUse], Awaitable[T]], *, allowed: int = 1) -> T:
    """The use case; see the module docstring.  An outcome is journalled once the
    request reached a key (consent given and a certificate resolved or picked).
    ``allowed``: the signatures ``produce`` may make with the one confirmation."""
    use: KeyUse | None = None
    permission = Permission.AUTH if request.purpose == "auth" else Permission.SIGN

    async def work() -> T:
        nonlocal use
        await core.require(ctx, permission)
        if request.handle is None:
            _, entry = await core.choose(ctx, request.purpose, CertificateFilter())
        else:
            entry = await core.entry_for(ctx, request.handle, request.purpose)
        problem = certs.validity_problem(certs.load(entry.der))
        if problem is not None:  # before any network call or dialog
            raise CertificateInvalid(detail=problem.upper())
        use = KeyUse(core, ctx, entry, request, allowed=allowed)
        try:
            return await produce(use)
        finally:
            await use.close()

    def journal(result: str) -> None:
        if use is None:  # BUSY, PERMISSION_DENIED, INVALID_HANDLE, a closed picker, ...
            core.count_unjournaled(ctx, result)
            return
        algorithm = use.digest_algorithm or request.digest_algorithm
        core.record(ctx, request.method, use.entry, algorithm, use.digests, result)

    try:
        result = await core.interaction(ctx, work)
    except AgentError as exc:
        journal(exc.reason)
        raise
    journal("ok")
    return result


# --- confirmation, PIN loop, signatures ------------------------------------------------------

async def _pin_request(core: AgentCore, ctx: CallContext, entry: CertificateEntry,
                       request: SigningRequest, count: int) -> PinRequest:
    return PinRequest(
        origin=ctx.origin, action=request.purpose, certificate=certs.choice_for(entry),
        pin=entry.token.pin, count=count,
        display_text=display_lines(request.display.text, DISPLAY_TEXT_LIMIT),
        document_name=one_line(request.display.document_name, DOCUMENT_NAME_LIMIT),
        password=entry.token.secret is SecretKind.PASSWORD,
        signed_fields=shown_fields(request.signed_fields),
        previews=await _previews(core, request))


async def _confirm_and_sign(core: AgentCore, ctx: CallContext, entry: CertificateEntry,
                            request: SigningRequest, digests: Sequence[bytes],
                            mechanism: SignMechanism) -> list[bytes]:
    """Dialog, login, signatures and logout for a request that signs at once."""
    key = _key(entry)
    store = core.stores.store(key.store_id)
    one_call = _signs_in_one_call(store)
    if one_call is None:
        session = await _open_session(core, ctx, entry, request, len(digests))
        try:
            return await session.sign(digests, mechanism)
        finally:
            await session.close()
    pin_request = await _pin_request(core, ctx, entry, request, len(digests))
    lock = _token_lock(core, entry.token)

    async def login_and_sign(credential: Credential) -> list[bytes]:
        async with lock:  # never inside another request's session on this token
            return await one_call.login_sign_logout(entry.token, key, digests, mechanism,
                                                    credential)

    signatures = await _with_pin(core, ctx, entry.token, pin_request, login_and_sign)
    _check_signatures(certs.load(entry.der), digests, signatures, mechanism)
    return signatures


# One lock per token: held from a session's login to its logout, and around a one-call
# login-sign-logout.  PKCS#11 logins are per token, not per session: without it, another
# request's login (after its own PIN) would end this one's session half-way through a
# document, or its logout would.
_TOKEN_LOCKS: WeakKeyDictionary[AgentCore, dict[tuple[str, str], asyncio.Lock]] = \
    WeakKeyDictionary()


def _token_lock(core: AgentCore, token: TokenInfo) -> asyncio.Lock:
    locks = _TOKEN_LOCKS.setdefault(core, {})
    return locks.setdefault((token.store_id, token.token_id), asyncio.Lock())


class _TokenSession:
    """A logged-in token between ``KeyUse.confirm`` and the request's last signature.

    The PIN is kept only while it may still be needed: a key that wants it per signature
    (CKA_ALWAYS_AUTHENTICATE, which some tokens show only after login) keeps it to the
    end; any other key forgets it after its first signature."""

    def __init__(self, core: AgentCore, entry: CertificateEntry, credential: Credential,
                 lock: asyncio.Lock) -> None:
        self.entry = entry
        self.key = _key(entry)
        self.store = core.stores.store(self.key.store_id)
        self.credential: Credential | None = credential
        self.per_signature = self.key.always_authenticate
        self.lock = lock
        self.cert = certs.load(entry.der)

    async def sign(self, digests: Sequence[bytes], mechanism: SignMechanism) -> list[bytes]:
        per_op = self.credential if self.per_signature else None
        try:
            signatures = await self.store.sign_many(self.key, digests, mechanism, per_op)
        except LoginRequired:
            # Before login a token may hide CKA_ALWAYS_AUTHENTICATE; the first signature
            # then asks for the context-specific login and we learn it.
            if self.per_signature or not isinstance(self.credential, Secret):
                raise
            self.per_signature = True
            signatures = await self.store.sign_many(self.key, digests, mechanism,
                                                    self.credential)
        if not self.per_signature:
            self._forget_pin()
        _check_signatures(self.cert, digests, signatures, mechanism)
        return signatures

    def _forget_pin(self) -> None:
        _wipe(self.credential)
        self.credential = None

    async def close(self) -> None:
        self._forget_pin()
        try:
            await self.store.logout(self.entry.token)
        except AgentError:
            log.warning("logout from %s failed", self.entry.token.label)
        finally:
            self.lock.release()


async def _open_session(core: AgentCore, ctx: CallContext, entry: CertificateEntry,
                        request: SigningRequest, count: int) -> _TokenSession:
    """The confirmation + PIN dialog (again after a wrong PIN) and the login; the token
    stays logged in, and locked for this request, until the session is closed."""
    store = core.stores.store(_key(entry).store_id)
    pin_request = await _pin_request(core, ctx, entry, request, count)
    lock = _token_lock(core, entry.token)

    async def login(credential: Credential) -> Credential:
        await lock.acquire()
        try:
            await store.login(entry.token, credential)
        except BaseException:
            lock.release()
            raise
        return credential

    credential = await _with_pin(core, ctx, entry.token, pin_request, login, keep=True)
    return _TokenSession(core, entry, credential, lock)


def _check_signatures(cert: x509.Certificate, digests: Sequence[bytes],
                      signatures: Sequence[bytes], mechanism: SignMechanism) -> None:
    """The key behind the handle must still be the certificate's.  The store resolves
    the key once per batch (or chunk of one): the first and the last signature prove it
    without paying a verification per hash."""
    for i in {0, len(signatures) - 1}:
        verify_with_certificate(cert, digests[i], signatures[i], mechanism)


async def _with_pin(core: AgentCore, ctx: CallContext, token: TokenInfo, request: PinRequest,
                    use: Callable[[Credential], Awaitable[T]], *, keep: bool = False) -> T:
    """Ask for the PIN and ``use`` it (log in; or log in, sign and log out), again after a
    wrong PIN.  The credential is wiped once used, unless ``keep``: then the caller wipes
    it (a key that wants the PIN per signature still needs it)."""
    if token.pin.locked:
        await _pin_locked(core, ctx, token, token.unlock)
    for _attempt in range(core.max_pin_attempts):
        credential = await core.dialog(ctx, functools.partial(core.ui.ask_pin, request))
        try:
            try:
                result = await use(credential)
            finally:
                if isinstance(credential, PinPad):
                    core.ui.pin_pad_finished()
            if not keep:
                _wipe(credential)
            return result
        except PinIncorrect as wrong:
            _wipe(credential)
            if wrong.status.locked:
                await _pin_locked(core, ctx, token, token.unlock)
            request = replace(request, retry=wrong.status)
        except PinLocked as locked:
            _wipe(credential)
            # The store knows why (blocked, expired, never set): pass its word on.
            await _pin_locked(core, ctx, token, str(locked.data.get("unlock", token.unlock)))
        except BaseException:
            _wipe(credential)
            raise
    raise UserCancelled("too many wrong PINs for one request")


def _wipe(credential: Credential | None) -> None:
    if isinstance(credential, Secret):
        credential.wipe()


async def _pin_locked(core: AgentCore, ctx: CallContext, token: TokenInfo,
                      unlock: str) -> None:
    """Tell the user how to unlock, then fail the request with the same word."""
    with contextlib.suppress(UserCancelled, UserTimeout):
        await core.dialog(ctx, functools.partial(core.ui.show_pin_locked, ctx.origin,
                                                 token.label, unlock))
    raise PinLocked(unlock=unlock)
