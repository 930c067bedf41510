"""The agent's use cases, shared by the method modules: consent, choosing a certificate,
the PIN loop and signing.  No sockets, threads or windows: key stores, the UI, the
policy and the journal are injected.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from agent.app import certs
from agent.app.certs import CertificateFilter
from agent.errors import (
    AgentError,
    Busy,
    CertificateInvalid,
    InvalidHandle,
    LoginRequired,
    NoCertificate,
    PermissionDenied,
    PinIncorrect,
    PinLocked,
    TokenNotPresent,
    UserCancelled,
    UserTimeout,
)
from agent.journal import Journal
from agent.keystores.base import (
    BatchSigner,
    CertificateEntry,
    Credential,
    KeyRef,
    KeyStore,
    KeyType,
    PinPad,
    Scheme,
    Secret,
    SignMechanism,
    TokenInfo,
)
from agent.keystores.mechanisms import scheme_fits_key, verify_with_certificate
from agent.policy.policy import Policy
from agent.policy.rules import Permission
from agent.protocol.dispatch import CallContext
from agent.protocol.ports import KeyStoresPort
from agent.protocol.results import TokenList, TokenState
from agent.ui.base import ConsentAnswer, ConsentRequest, PinRequest, UserInterface

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class HandleTarget:
    """What a handle names: one certificate (by DER) with its key on one token (by the
    token's stable id, so the handle survives re-insertion of the same token)."""

    key: KeyRef
    certificate_der: bytes
    purpose: str  # "sign" or "auth"

# What one "allow" in the consent dialog covers. `list` is never granted by a dialog.
CONSENTABLE = (Permission.SELECT, Permission.SIGN, Permission.AUTH, Permission.TOKENS)


@dataclass(frozen=True)
class Display:
    text: str | None = None
    document_name: str | None = None


# Text from a page is shown as plain text and capped: a page must not fill the dialog.
DISPLAY_TEXT_LIMIT = 500
DOCUMENT_NAME_LIMIT = 120


def _cap(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    text = "".join(ch for ch in text if ch.isprintable() or ch in "\n\t")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class AgentCore:
    def __init__(self, *, stores: KeyStoresPort, ui: UserInterface, policy: Policy,
                 journal: Journal | None, dialog_timeout: float,
                 max_pin_attempts: int = 5) -> None:
        self.stores = stores
        self.ui = ui
        self.policy = policy
        self.journal = journal
        self.dialog_timeout = dialog_timeout
        self.max_pin_attempts = max_pin_attempts
        self._interacting: set[str] = set()
        # Connections subscribed to tokens.changed, and what they were last told.
        self.watchers: set[CallContext] = set()
        self._last_tokens: TokenList | None = None

    # --- user interaction: one at a time per origin, each with a timeout -----------------

    async def _dialog(self, call: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(call, self.dialog_timeout)
        except TimeoutError:
            raise UserTimeout() from None

    async def interaction(self, ctx: CallContext,
                          work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` as this origin's one pending user interaction, or raise BUSY."""
        if ctx.origin in self._interacting:
            raise Busy()
        self._interacting.add(ctx.origin)
        try:
            return await work()
        finally:
            self._interacting.discard(ctx.origin)

    # --- permissions ---------------------------------------------------------------------

    async def require(self, ctx: CallContext, permission: Permission) -> None:
        """Allow, ask the user (allow once / always / deny), or raise PERMISSION_DENIED.

        Call inside ``interaction`` when a dialog may follow."""
        state = self.policy.consent_state(ctx.origin, permission, ctx.once_grants)
        if state == "granted":
            return
        if state == "denied" or not self.ui.interactive:
            raise PermissionDenied(permission=permission.value)
        wanted = tuple(p for p in CONSENTABLE
                       if self.policy.consent_state(ctx.origin, p, ctx.once_grants) == "ask")
        answer = await self._dialog(self.ui.ask_consent(
            ConsentRequest(ctx.origin, tuple(p.value for p in wanted))))
        if answer is ConsentAnswer.DENY:
            self.policy.record_consent(ctx.origin, wanted, "deny")
            raise PermissionDenied(permission=permission.value)
        once = self.policy.record_consent(ctx.origin, wanted, answer.value)
        if once is not None:
            ctx.once_grants.append(once)

    def allowed_without_asking(self, ctx: CallContext, permission: Permission) -> bool:
        return self.policy.consent_state(ctx.origin, permission, ctx.once_grants) == "granted"

    # --- certificates --------------------------------------------------------------------

    async def matching(self, purpose: str, flt: CertificateFilter) -> list[CertificateEntry]:
        return certs.candidates(await self.stores.certificates(), purpose, flt)

    def usable(self, entries: Sequence[CertificateEntry],
               flt: CertificateFilter) -> list[CertificateEntry]:
        if flt.include_expired:
            return list(entries)
        return [e for e in entries if certs.validity_problem(certs.load(e.der)) is None]

    async def choose(self, ctx: CallContext, purpose: str,
                     flt: CertificateFilter) -> tuple[str, CertificateEntry]:
        """The picker: usable certificates to choose from, invalid ones shown greyed."""
        entries = await self.matching(purpose, flt)
        if not self.usable(entries, flt):
            raise NoCertificate()
        choices = [certs.choice_for(e) for e in entries]
        if flt.include_expired:
            choices = [replace(c, usable=True) for c in choices]
        index = await self._dialog(self.ui.choose_certificate(ctx.origin, purpose, choices))
        if not 0 <= index < len(entries) or not choices[index].usable:
            raise UserCancelled("no usable certificate was chosen")
        entry = entries[index]
        return self.handle_for(ctx, entry, purpose), entry

    def handle_for(self, ctx: CallContext, entry: CertificateEntry, purpose: str) -> str:
        assert entry.key is not None
        return ctx.handles.issue(HandleTarget(entry.key, entry.der, purpose))

    async def entry_for(self, ctx: CallContext, handle: str,
                        purpose: str) -> tuple[HandleTarget, CertificateEntry]:
        """The handle's certificate as it is on the token now, or a typed error."""
        target: HandleTarget = ctx.handles.resolve(handle)
        if target.purpose != purpose:
            # An authentication key is never usable for signing, nor the other way round.
            raise InvalidHandle(f"this handle is for {target.purpose}, not {purpose}")
        for entry in await self.stores.certificates():
            if entry.der == target.certificate_der and entry.key is not None and (
                    entry.key.token_id == target.key.token_id):
                return target, entry
        # Not found: tell "token pulled out" from "certificate gone from the token".
        tokens = await self.stores.tokens()
        if not any(t.store_id == target.key.store_id and t.token_id == target.key.token_id
                   and t.present for t in tokens):
            raise TokenNotPresent()
        raise InvalidHandle("the certificate is no longer on the token")

    # --- signing -------------------------------------------------------------------------

    @staticmethod
    def mechanism_for(entry: CertificateEntry, scheme: Scheme | None, hash_alg: Any,
                      ecdsa_encoding: Any) -> SignMechanism:
        assert entry.key is not None
        key_type = entry.key.key_type
        if scheme is None:
            scheme = Scheme.ECDSA if key_type is KeyType.EC else Scheme.RSA_PKCS1_V15
        scheme_fits_key(scheme, key_type)
        kwargs = {"ecdsa_encoding": ecdsa_encoding} if ecdsa_encoding is not None else {}
        return SignMechanism(scheme, hash_alg, **kwargs)

    async def sign_digests(self, ctx: CallContext, entry: CertificateEntry, action: str,
                           digests: Sequence[bytes], mechanism: SignMechanism,
                           display: Display = Display()) -> list[bytes]:
        """Confirmation + PIN dialog, login, one signature per digest, checked against the
        certificate before any leaves the agent."""
        assert entry.key is not None
        cert = certs.load(entry.der)
        problem = certs.validity_problem(cert)
        if problem is not None:
            raise CertificateInvalid(detail=problem.upper())
        store = self.stores.store(entry.key.store_id)
        request = PinRequest(
            origin=ctx.origin, action=action, certificate=certs.choice_for(entry),
            pin=entry.token.pin, count=len(digests),
            display_text=_cap(display.text, DISPLAY_TEXT_LIMIT),
            document_name=_cap(display.document_name, DOCUMENT_NAME_LIMIT),
            password=entry.token.kind.value == "pkcs12")
        credential = await self._login(ctx, store, entry.token, request)
        try:
            # Before login a token may hide CKA_ALWAYS_AUTHENTICATE; the first signature
            # then asks for the context-specific login and we learn it.
            per_op = credential if entry.key.always_authenticate else None
            try:
                signatures = await self._sign_all(store, entry, digests, mechanism, per_op)
            except LoginRequired:
                if per_op is not None or isinstance(credential, PinPad):
                    raise
                signatures = await self._sign_all(store, entry, digests, mechanism, credential)
            # The key behind the handle must still be the certificate's. The store resolves
            # the key once per batch (or chunk of one): the first and the last signature
            # prove it without paying a verification per hash.
            for i in {0, len(signatures) - 1}:
                verify_with_certificate(cert, digests[i], signatures[i], mechanism)
            return signatures
        finally:
            if isinstance(credential, Secret):
                credential.wipe()
            try:
                await store.logout(entry.token)
            except AgentError:
                log.warning("logout from %s failed", entry.token.label)

    @staticmethod
    async def _sign_all(store: KeyStore, entry: CertificateEntry, digests: Sequence[bytes],
                        mechanism: SignMechanism, credential: Credential | None) -> list[bytes]:
        assert entry.key is not None
        if isinstance(store, BatchSigner):
            return await store.sign_many(entry.key, digests, mechanism, credential)
        return [await store.sign(entry.key, d, mechanism, credential) for d in digests]

    async def _login(self, ctx: CallContext, store: KeyStore, token: TokenInfo,
                     request: PinRequest) -> Credential:
        if token.pin.locked:
            await self._pin_locked(ctx, token)
        for _attempt in range(self.max_pin_attempts):
            credential = await self._dialog(self.ui.ask_pin(request))
            try:
                try:
                    await store.login(token, credential)
                finally:
                    if isinstance(credential, PinPad):
                        self.ui.pin_pad_finished()
                return credential
            except PinIncorrect as wrong:
                if isinstance(credential, Secret):
                    credential.wipe()
                if wrong.status.locked:
                    await self._pin_locked(ctx, token)
                request = replace(request, retry=wrong.status)
            except PinLocked:
                if isinstance(credential, Secret):
                    credential.wipe()
                await self._pin_locked(ctx, token)
            except BaseException:
                if isinstance(credential, Secret):
                    credential.wipe()
                raise
        raise UserCancelled("too many wrong PINs for one request")

    async def _pin_locked(self, ctx: CallContext, token: TokenInfo) -> None:
        unlock = "PUK" if token.kind.value == "pkcs11" else "ISSUER"
        with contextlib.suppress(UserCancelled, UserTimeout):
            await self._dialog(self.ui.show_pin_locked(ctx.origin, token.label, unlock))
        raise PinLocked(unlock=unlock)

    # --- token events ----------------------------------------------------------------------

    async def token_list(self) -> TokenList:
        tokens = await self.stores.tokens()
        return TokenList(tokens=[TokenState(label=t.label, serial=t.serial, present=t.present)
                                 for t in tokens])

    async def subscribe(self, ctx: CallContext) -> TokenList:
        """Add a ``tokens.changed`` watcher and return the tokens now.  The first watcher
        sets the baseline, so nobody is "told" of a change that is just the list they got
        (the baseline goes stale while nobody watches)."""
        current = await self.token_list()
        if not self.watchers:
            self._last_tokens = current
        self.watchers.add(ctx)
        return current

    async def publish_tokens(self) -> None:
        """Tell subscribers when the set of tokens changed since the last look."""
        current = await self.token_list()
        if current == self._last_tokens:
            return
        self._last_tokens = current
        for ctx in list(self.watchers):
            try:
                await ctx.notify("tokens.changed", current)
            except Exception:  # a closed connection; its cleanup removes it
                self.watchers.discard(ctx)

    def record(self, ctx: CallContext, method: str, entry: CertificateEntry | None,
               digest_algorithm: str | None, digests: Sequence[bytes], result: str) -> None:
        if self.journal is None:
            return
        if len(digests) == 1:
            digest_hex: str | None = digests[0].hex()
        elif digests:  # a batch: the digest of the concatenated hashes
            digest_hex = hashlib.sha256(b"".join(digests)).hexdigest()
        else:
            digest_hex = None
        self.journal.append(
            origin=ctx.origin, method=method,
            certificate_sha256=certs.fingerprint(entry.der) if entry else None,
            digest_algorithm=digest_algorithm, digest_hex=digest_hex, result=result,
            count=max(1, len(digests)))


