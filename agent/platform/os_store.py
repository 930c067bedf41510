"""What the two OS certificate stores (Windows CNG, macOS keychain) share as key stores:
one token per key, a listing made off the event loop, and the PIN kept from ``login`` to
the signature (the OS checks a PIN only when the key is used).  Each subclass says how it
lists (``_scan``), how a listed key is a token (``_token``) and how it signs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar, Generic, Protocol, TypeVar

from agent.errors import InvalidHandle, LoginRequired, Unsupported
from agent.keystores.base import (
    CardEvents,
    CertificateEntry,
    Credential,
    KeyRef,
    KeyType,
    Secret,
    SignMechanism,
    StoreKind,
    TokenInfo,
)
from agent.keystores.mechanisms import check_digest, scheme_fits_key


class ListedKey(Protocol):
    """One certificate whose private key the OS can reach."""

    @property
    def der(self) -> bytes: ...

    @property
    def key_type(self) -> KeyType: ...

    @property
    def label(self) -> str: ...

    @property
    def key_id(self) -> str: ...


Item = TypeVar("Item", bound=ListedKey)


class OsKeyStore(Generic[Item]):
    store_id: str
    card_events: CardEvents | None = None
    WHERE: ClassVar[str]     # "the keychain": for "no such key in …"
    NO_PIN_PAD: ClassVar[str]  # why a PIN pad cannot be used through this store

    def __init__(self) -> None:
        self.kind = StoreKind.OS
        self._lock = asyncio.Lock()  # the OS's key handles are used one call at a time
        self._listed: dict[str, Item] = {}
        self._pins: dict[str, Secret] = {}  # login → logout only

    def _scan(self) -> list[Item]:
        raise NotImplementedError

    def _token(self, item: Item) -> TokenInfo:
        raise NotImplementedError

    async def _sign_item(self, item: Item, digests: Sequence[bytes],
                         mechanism: SignMechanism, pin: Secret) -> list[bytes]:
        """The signatures, the request already checked against the key."""
        raise NotImplementedError

    async def tokens(self) -> list[TokenInfo]:
        async with self._lock:
            items = await asyncio.to_thread(self._scan)
            self._listed = {i.key_id: i for i in items}
            return [self._token(i) for i in items]

    def _item(self, token_id: str) -> Item:
        item = self._listed.get(token_id)
        if item is None:
            raise InvalidHandle(f"no such key in {self.WHERE}")
        return item

    async def certificates(self, token: TokenInfo) -> list[CertificateEntry]:
        item = self._item(token.token_id)
        key = KeyRef(store_id=self.store_id, token_id=item.key_id, key_id=item.key_id,
                     key_type=item.key_type)
        return [CertificateEntry(der=item.der, token=self._token(item), label=item.label,
                                 key=key, pairing="public-key")]

    async def login(self, token: TokenInfo, credential: Credential) -> None:
        self._item(token.token_id)
        if not isinstance(credential, Secret):
            raise Unsupported(self.NO_PIN_PAD)
        # Kept until the signature: the OS checks a PIN only when the key is used.
        self._pins[token.token_id] = Secret(credential.reveal())

    async def logout(self, token: TokenInfo) -> None:
        pin = self._pins.pop(token.token_id, None)
        if pin is not None:
            pin.wipe()

    async def login_sign_logout(self, token: TokenInfo, key: KeyRef, digests: Sequence[bytes],
                                mechanism: SignMechanism,
                                credential: Credential) -> list[bytes]:
        """PIN and signatures in one go, inside the core's PIN loop: a wrong PIN is known
        only when the key is used, and must reach that loop as PIN_INCORRECT."""
        if not isinstance(credential, Secret):
            raise Unsupported(self.NO_PIN_PAD)
        return await self._sign(key, digests, mechanism, credential)

    async def sign(self, key: KeyRef, digest: bytes, mechanism: SignMechanism,
                   credential: Credential | None = None) -> bytes:
        [signature] = await self.sign_many(key, [digest], mechanism, credential)
        return signature

    async def sign_many(self, key: KeyRef, digests: Sequence[bytes], mechanism: SignMechanism,
                        credential: Credential | None = None) -> list[bytes]:
        pin = credential if isinstance(credential, Secret) else self._pins.get(key.token_id)
        if pin is None:
            raise LoginRequired()
        return await self._sign(key, digests, mechanism, pin)

    async def _sign(self, key: KeyRef, digests: Sequence[bytes], mechanism: SignMechanism,
                    pin: Secret) -> list[bytes]:
        if key.store_id != self.store_id:
            raise InvalidHandle("the key is not in this store")
        item = self._item(key.token_id)
        scheme_fits_key(mechanism.scheme, item.key_type)
        for digest in digests:
            check_digest(mechanism.hash_algorithm, digest)
        return await self._sign_item(item, digests, mechanism, pin)

    async def close(self) -> None:
        for pin in self._pins.values():
            pin.wipe()
        self._pins.clear()
