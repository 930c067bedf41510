"""The one PIN-management use case the tray and the CLI share.

``manageable_tokens`` lists the PKCS#11 tokens present now, with their PIN state read
afresh.  ``check_new_pin`` is the check both front ends make before the token is asked (the
repetition and the token's length rule), so that a typing slip never costs a try.
``change_pin`` and ``unblock_pin`` do the work and raise ``PinManagementError``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from agent.errors import PinStatus
from agent.keystores.base import KeyStore, Secret, TokenInfo
from agent.keystores.pkcs11.pin_management import (
    PinManagementError,
    PinProblem,
    PinState,
    TokenPins,
)
from agent.keystores.pkcs11.store import Pkcs11Store


@dataclass(frozen=True)
class ManagedToken:
    token: TokenInfo
    state: PinState
    pins: TokenPins

    @property
    def name(self) -> str:
        """How menus and prompts name the token: its label and serial."""
        serial = f" ({self.token.serial})" if self.token.serial else ""
        return f"{self.token.label}{serial}"

    @property
    def key(self) -> str:
        """Names the token across listings (store and token id)."""
        return f"{self.token.store_id}\n{self.token.token_id}"


async def manageable_tokens(stores: Sequence[KeyStore]) -> list[ManagedToken]:
    """Every PKCS#11 token present now (a PKCS#12 file or the demo has no PIN to manage);
    a store that fails to list is left out, as in the certificate listing."""
    found: list[ManagedToken] = []
    for store in stores:
        if not isinstance(store, Pkcs11Store):
            continue
        pins = TokenPins(store)
        with contextlib.suppress(PinManagementError, Exception):
            tokens = await store.tokens()
            states = await pins.states()
            found += [ManagedToken(t, states[t.token_id], pins)
                      for t in tokens if t.token_id in states]
    return found


class TokenChoiceError(LookupError):
    """``--token`` named no token, or more than one."""

    def __init__(self, wanted: str | None, matches: list[ManagedToken]) -> None:
        super().__init__(wanted or "")
        self.wanted = wanted
        self.matches = matches


def choose_token(tokens: Sequence[ManagedToken], wanted: str | None) -> ManagedToken:
    """The token named by serial or label (exact, then case-insensitive); with no name,
    the only token there is."""
    if wanted is None:
        if len(tokens) == 1:
            return tokens[0]
        raise TokenChoiceError(None, list(tokens))
    for fold in (False, True):
        def same(value: str, fold: bool = fold) -> bool:
            return value.casefold() == wanted.casefold() if fold else value == wanted

        matches = [t for t in tokens
                   if same(t.token.serial) or same(t.token.label) or same(t.key)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise TokenChoiceError(wanted, matches)
    raise TokenChoiceError(wanted, [])


def check_new_pin(new: Secret, repeated: Secret, pin: PinStatus) -> PinProblem | None:
    """What is wrong with the new PIN before the token sees it, if anything."""
    if new.reveal() != repeated.reveal():
        return PinProblem.MISMATCH
    size = len(new)
    if size == 0 or (pin.min_length and size < pin.min_length) or (
            pin.max_length and size > pin.max_length):
        return PinProblem.PIN_LENGTH
    return None


async def change_pin(item: ManagedToken, old: Secret, new: Secret) -> PinState | None:
    return await item.pins.change(item.token, old, new)


async def unblock_pin(item: ManagedToken, puk: Secret, new: Secret) -> PinState | None:
    return await item.pins.unblock(item.token, puk, new)
