"""The agent's shared use-case steps: consent, choosing a certificate, resolving a handle,
token events and the journal.  The one signing use case built on them is
``agent.app.signing``.

No sockets, threads or windows: the key stores, the dialogs, the policy and the journal
come in through the ports of ``agent.app.ports`` and ``agent.app.dialogs``.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Protocol, TypeVar, cast, runtime_checkable

from agent.app import certs
from agent.app.certs import CertificateFilter
from agent.app.connection import Connections, HandleTarget
from agent.app.dialog_queue import DialogLimits, DialogQueue
from agent.app.dialogs import ConsentAnswer, ConsentRequest, UserInterface
from agent.app.ports import JournalPort, KeyStoresPort, PolicyPort
from agent.app.select_limit import FilteredSelects
from agent.config import UiConfig
from agent.errors import (
    AgentError,
    Busy,
    InvalidHandle,
    NoCertificate,
    PermissionDenied,
    TokenNotPresent,
    UserCancelled,
)
from agent.keystores.base import CertificateEntry, TokenInfo
from agent.policy.rules import Permission
from agent.policy.site import site_of
from agent.protocol.dispatch import CallContext
from agent.protocol.results import TokenList, TokenState

T = TypeVar("T")


@runtime_checkable
class OneToken(Protocol):
    """A store that reads one token's state without listing all of them
    (``Pkcs11Store.current_token``: no walk over every slot of the module)."""

    async def current_token(self, token_id: str) -> TokenInfo: ...

    async def certificates(self, token: TokenInfo) -> list[CertificateEntry]: ...


# What one "allow" in the consent dialog covers. `list` is never granted by a dialog.
CONSENTABLE = (Permission.SELECT, Permission.SIGN, Permission.AUTH, Permission.TOKENS)

# Requests that never reached a key are counted in memory, not journalled, per (site,
# reason); past this many rows new sites share one "(other)" row per reason, so a page
# opening sub-domains cannot grow the count without bound.
UNJOURNALED_ROWS = 256
OTHER_SITES = "(other)"


class AgentCore:
    def __init__(self, *, stores: KeyStoresPort, ui: UserInterface, policy: PolicyPort,
                 journal: JournalPort | None, dialog_timeout: float,
                 max_pin_attempts: int = 5, limits: UiConfig | None = None) -> None:
        """``limits``: the ``[ui]`` settings for dialog queueing and filtered selects
        (their defaults when None); the timeout is ``dialog_timeout``."""
        limits = limits or UiConfig()
        self.stores = stores
        self.ui = ui
        self.policy = policy
        self.journal = journal
        self.dialog_timeout = dialog_timeout
        self.max_pin_attempts = max_pin_attempts
        # What the PIN dialog shows of a larger document: its size and SHA-256 only.
        self.preview_bytes = limits.preview_bytes
        self.connections = Connections()
        self._interacting: set[str] = set()
        self.dialogs = DialogQueue(DialogLimits(
            timeout=dialog_timeout, max_pending=limits.max_pending_dialogs,
            max_pending_per_site=limits.max_pending_dialogs_per_site))
        self.filtered_selects = FilteredSelects(limits.max_filtered_selects_per_site,
                                                limits.filtered_select_window)
        self.unjournaled: Counter[tuple[str, str]] = Counter()
        # Connections subscribed to tokens.changed, and what they were last told.
        self.watchers: set[CallContext] = set()
        self._last_tokens: TokenList | None = None

    # --- user interaction: one pending per origin, one dialog on screen ----------------

    async def dialog(self, ctx: CallContext, open_dialog: Callable[[], Awaitable[T]]) -> T:
        """Show one dialog through the queue (``agent.app.dialog_queue``): one on screen
        at a time, origins holding a grant first, within the dialog timeout counted from
        now.  ``open_dialog`` may be called again if the dialog loses the screen."""
        granted = (self.policy.has_any_grant(ctx.origin)
                   or bool(self.connections.of(ctx).once_grants))
        return await self.dialogs.show(ctx.origin, open_dialog, granted=granted)

    async def interaction(self, ctx: CallContext, work: Callable[[], Awaitable[T]]) -> T:
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
        """Allow, ask the user (allow once / always / deny / block this site), or raise
        PERMISSION_DENIED.

        Call inside ``interaction`` when a dialog may follow."""
        once = self.connections.of(ctx).once_grants
        state = self.policy.consent_state(ctx.origin, permission, once)
        if state == "granted":
            return
        if state == "denied" or not self.ui.interactive:
            raise PermissionDenied(permission=permission.value)
        wanted = tuple(p for p in CONSENTABLE
                       if self.policy.consent_state(ctx.origin, p, once) == "ask")
        answer = await self.dialog(ctx, functools.partial(
            self.ui.ask_consent, ConsentRequest(ctx.origin, tuple(p.value for p in wanted))))
        if answer is ConsentAnswer.BLOCK:
            # Refuses this origin's connections and consent from now on (the policy keeps
            # it); whatever else it has waiting for the user ends too.
            self.policy.block_origin(ctx.origin)
            self.dialogs.end_origin(ctx.origin, PermissionDenied(permission=permission.value))
            raise PermissionDenied(permission=permission.value)
        if answer is ConsentAnswer.DENY:
            self.policy.record_consent(ctx.origin, wanted, "deny")
            raise PermissionDenied(permission=permission.value)
        grant = self.policy.record_consent(
            ctx.origin, wanted, "always" if answer is ConsentAnswer.ALWAYS else "once")
        if grant is not None:
            once.append(grant)

    def allowed_without_asking(self, ctx: CallContext, permission: Permission) -> bool:
        once = self.connections.of(ctx).once_grants
        return self.policy.consent_state(ctx.origin, permission, once) == "granted"

    # --- certificates --------------------------------------------------------------------

    async def matching(self, purpose: str, flt: CertificateFilter) -> list[CertificateEntry]:
        return certs.candidates(await self.stores.certificates(), purpose, flt)

    @staticmethod
    def usable(entries: Sequence[CertificateEntry],
               flt: CertificateFilter) -> list[CertificateEntry]:
        if flt.include_expired:
            return list(entries)
        return [e for e in entries if certs.validity_problem(certs.load(e.der)) is None]

    async def choose(self, ctx: CallContext, purpose: str,
                     flt: CertificateFilter) -> tuple[str, CertificateEntry]:
        """The picker: usable certificates to choose from, invalid ones shown greyed.

        With nothing usable the picker is shown all the same (saying so, with only a way
        to close it) and NO_CERTIFICATE answers only once the user closed it: a page
        learns what certificates exist only through a dialog the user sees.  A page's
        filter is limited per site (``[ui] max_filtered_selects_per_site``)."""
        if flt.narrows:
            self.filtered_selects.take(ctx.origin)
        entries = await self.matching(purpose, flt)
        choices = [certs.choice_for(e) for e in entries]
        if flt.include_expired:
            choices = [replace(c, usable=True) for c in choices]
        nothing_usable = not any(c.usable for c in choices)
        try:
            index = await self.dialog(ctx, functools.partial(
                self.ui.choose_certificate, ctx.origin, purpose, choices,
                filtered=flt.narrows))
        except UserCancelled:
            if nothing_usable:
                raise NoCertificate() from None
            raise
        if not 0 <= index < len(entries) or not choices[index].usable:
            if nothing_usable:
                raise NoCertificate()
            raise UserCancelled("no usable certificate was chosen")
        entry = entries[index]
        return self.handle_for(ctx, entry, purpose), entry

    def handle_for(self, ctx: CallContext, entry: CertificateEntry, purpose: str) -> str:
        if entry.key is None:
            raise NoCertificate("this certificate has no private key")
        return self.connections.of(ctx).handles.issue(
            HandleTarget(entry.key, entry.der, purpose))

    async def entry_for(self, ctx: CallContext, handle: str, purpose: str) -> CertificateEntry:
        """The handle's certificate as it is on the token now, or a typed error."""
        target = self.connections.of(ctx).handles.resolve(handle)
        if target.purpose != purpose:
            # An authentication key is never usable for signing, nor the other way round.
            raise InvalidHandle(f"this handle is for {target.purpose}, not {purpose}")
        found = await self._entry_of_one_token(target)
        if found is not None:
            return found
        # Only the handle's own store: asking the others costs card round trips.
        for entry in await self.stores.certificates_in(target.key.store_id):
            if _is_target(entry, target):
                return entry
        # Not found: tell "token pulled out" from "certificate gone from the token".
        tokens = await self.stores.tokens()
        if not any(t.store_id == target.key.store_id and t.token_id == target.key.token_id
                   and t.present for t in tokens):
            raise TokenNotPresent()
        raise InvalidHandle("the certificate is no longer on the token")

    async def _entry_of_one_token(self, target: HandleTarget) -> CertificateEntry | None:
        """The handle's certificate through the store's one-token look (its PIN state
        read now, for the dialog); None: ask the long way."""
        try:
            store = _one_token(self.stores.store(target.key.store_id))
            if store is None:
                return None
            token = await store.current_token(target.key.token_id)
            for entry in await store.certificates(token):
                if _is_target(entry, target):
                    return entry
        except AgentError:  # the long way says which error, as it always has
            return None
        return None

    # --- token events ----------------------------------------------------------------------

    async def token_list(self) -> TokenList:
        return self._as_token_list(await self.stores.tokens())

    @staticmethod
    def _as_token_list(tokens: Sequence[TokenInfo]) -> TokenList:
        return TokenList(tokens=[TokenState(label=t.label, serial=t.serial, present=t.present)
                                 for t in tokens])

    async def subscribe(self, ctx: CallContext) -> TokenList:
        """Add a ``tokens.changed`` watcher and return the tokens now.  The first watcher
        sets the baseline, so nobody is "told" of a change that is just the list they got
        (the baseline goes stale while nobody watches)."""
        current = await self.token_list()
        if not self.watchers:
            self._last_tokens = current
        if ctx not in self.watchers:
            self.watchers.add(ctx)
            ctx.on_close(lambda: self.watchers.discard(ctx))
        return current

    async def publish_tokens(self, tokens: Sequence[TokenInfo]) -> None:
        """Tell subscribers when the set of tokens (as just listed) changed since the last
        look."""
        current = self._as_token_list(tokens)
        if current == self._last_tokens:
            return
        self._last_tokens = current
        for ctx in list(self.watchers):
            try:
                await ctx.notify("tokens.changed", current)
            except Exception:  # a closed connection; its cleanup removes it
                self.watchers.discard(ctx)

    # --- the journal -----------------------------------------------------------------------

    def count_unjournaled(self, ctx: CallContext, reason: str) -> None:
        """A request that never reached a key: counted here, never written, so a page
        cannot grow the journal."""
        key = (site_of(ctx.origin), reason)
        if key not in self.unjournaled and len(self.unjournaled) >= UNJOURNALED_ROWS:
            key = (OTHER_SITES, reason)
        self.unjournaled[key] += 1

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
            certificate_sha256=_fingerprint(entry.der) if entry else None,
            digest_algorithm=digest_algorithm, digest_hex=digest_hex, result=result,
            count=max(1, len(digests)))


_ONE_TOKEN_TYPES: dict[type, bool] = {}


def _one_token(store: object) -> OneToken | None:
    """``store`` if it reads one token at a time; the answer is kept per class, because
    isinstance() against a runtime-checkable Protocol walks its members every time."""
    kind = type(store)
    fits = _ONE_TOKEN_TYPES.get(kind)
    if fits is None:
        fits = _ONE_TOKEN_TYPES[kind] = isinstance(store, OneToken)
    return cast(OneToken, store) if fits else None


@lru_cache(maxsize=64)
def _fingerprint(der: bytes) -> str:
    return certs.fingerprint(der)


def _is_target(entry: CertificateEntry, target: HandleTarget) -> bool:
    return entry.der == target.certificate_der and entry.key is not None and (
        entry.key.token_id == target.key.token_id)
