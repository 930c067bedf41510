"""The one interface every key store implements: PKCS#11 tokens, PKCS#12 files, the demo.

A *store* owns one source of keys (one PKCS#11 module, one .p12 file).  It lists *tokens*
(a PKCS#11 slot with a token, or the file itself), each token lists *certificates*, and a
certificate may be paired with a private key that signs a *hash*.

All methods are coroutines so the daemon's event loop never blocks on a token; the
PKCS#11 store does its work in worker processes (see ``pkcs11/``).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeAlias, runtime_checkable

from agent.errors import PinStatus
from agent.protocol.enums import EcdsaEncoding, HashAlgorithm, Scheme


class StoreKind(enum.StrEnum):
    """A label for people (``doctor`` shows it); no code decides anything on it."""

    PKCS11 = "pkcs11"
    PKCS12 = "pkcs12"
    DEMO = "demo"
    OS = "os"  # the OS's certificate store (Windows CNG, macOS keychain)


class SecretKind(enum.StrEnum):
    """What the user types to unlock a token's keys (a PIN pad is ``PinStatus.pin_pad``)."""

    PIN = "pin"            # a token's user PIN
    PASSWORD = "password"  # a key file's password


class Unlock(enum.StrEnum):
    """The way out of PIN_LOCKED (``data.unlock``); the store that knows the token says which."""

    PUK = "PUK"                # blocked after wrong PINs: the PUK / SO PIN unblocks it
    ISSUER = "ISSUER"          # nothing the user holds unblocks it: ask the issuer
    CHANGE_PIN = "CHANGE_PIN"  # the PIN has expired: change it with the token's software
    INIT_PIN = "INIT_PIN"      # the token's user PIN was never set


class KeyType(enum.StrEnum):
    RSA = "RSA"
    EC = "EC"


@dataclass(frozen=True)
class TokenInfo:
    """A token as the user knows it: label, maker, serial; plus its PIN state."""

    store_id: str
    token_id: str  # stable within the store: PKCS#11 "<manufacturer>/<serial>", or file path
    label: str
    manufacturer: str
    model: str
    serial: str
    kind: StoreKind  # for people and `doctor` only: no code decides on it
    pin: PinStatus = field(default_factory=PinStatus)
    secret: SecretKind = SecretKind.PIN
    # What PIN_LOCKED's ``data.unlock`` says when this token's PIN is locked (an ``Unlock``
    # value): the store knows its token; the core passes it on unchanged.
    unlock: str = "PUK"
    present: bool = True
    # PKCS#12 files whose certificates are unknown until the first unlock.
    needs_unlock: bool = False
    demo: bool = False
    # The smart-card reader the token is in (a PC/SC reader name, possibly cut short by
    # the middleware), when the store knows it; None for files and software tokens.
    reader: str | None = None


@dataclass(frozen=True)
class KeyRef:
    """Names one private key inside one store; survives re-insertion of the same token."""

    store_id: str
    token_id: str
    key_id: str  # hex CKA_ID for PKCS#11; a local key id for PKCS#12
    key_type: KeyType
    always_authenticate: bool = False


@dataclass(frozen=True)
class CertificateEntry:
    """A certificate found on a token, with the private key it pairs with (if any)."""

    der: bytes
    token: TokenInfo
    label: str
    key: KeyRef | None
    # How the pairing was made: "id" (CKA_ID), "public-key" (matching public key),
    # "assumed-id" (private key not visible before login; CKA_ID of the certificate used),
    # or None when no private key was found.
    pairing: str | None = None


@dataclass(frozen=True)
class SignMechanism:
    scheme: Scheme
    hash_algorithm: HashAlgorithm
    ecdsa_encoding: EcdsaEncoding = EcdsaEncoding.DER


class Secret:
    """A PIN or password held in a bytearray that is overwritten once used.

    ``str()`` and ``repr()`` never show the value, so a stray log line cannot leak it.
    """

    __slots__ = ("_buf",)

    def __init__(self, value: bytes | bytearray | str) -> None:
        self._buf = bytearray(value.encode("utf-8") if isinstance(value, str) else value)

    def reveal(self) -> bytes:
        return bytes(self._buf)

    def __len__(self) -> int:
        return len(self._buf)

    def wipe(self) -> None:
        for i in range(len(self._buf)):
            self._buf[i] = 0
        self._buf = bytearray()

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __enter__(self) -> Secret:
        return self

    def __exit__(self, *exc: object) -> None:
        self.wipe()


class PinPad:
    """Marker: log in through the reader's PIN pad (protected authentication path)."""

    def __repr__(self) -> str:
        return "PinPad()"


PIN_PAD = PinPad()
Credential = Secret | PinPad


# What ``diagnostics()`` reports: plain JSON values.
JSON: TypeAlias = str | int | float | bool | list["JSON"] | dict[str, "JSON"] | None


@dataclass(frozen=True)
class StoreReport:
    """What ``imza-agent doctor`` shows about one store, learnt without a login or a secret.

    ``section`` names the list of the doctor's report the row joins ("modules" for PKCS#11
    modules, "pkcs12" for files, "demo"); ``row`` holds its JSON fields.
    """

    section: str
    row: dict[str, JSON]


class CardEvents(Protocol):
    """A store whose tokens are smart cards in PC/SC readers, as the PC/SC code drives it
    when cards come and go (``agent/pcsc/sync.py``)."""

    @property
    def store_id(self) -> str: ...

    @property
    def module(self) -> Path:
        """The library that serves the cards, matched against the ATR table's modules."""
        ...

    @property
    def busy(self) -> bool:
        """A call into the token is in flight (a busy store is not re-initialised)."""
        ...

    async def tokens(self) -> list[TokenInfo]: ...

    def invalidate(self) -> None:
        """Forget what is cached about the tokens (certificates); list afresh next time."""
        ...

    async def reinitialize(self) -> None:
        """Start the store afresh, for drivers that read their readers only at start."""
        ...

    def token_pulled(self) -> None:
        """A card left while a call may hang on it: end that call (it fails with
        TOKEN_NOT_PRESENT) and forget the caches."""
        ...


@runtime_checkable
class KeyStore(Protocol):
    """What the agent needs from any source of keys."""

    store_id: str
    kind: StoreKind  # a label for people, see StoreKind

    @property
    def card_events(self) -> CardEvents | None:
        """How PC/SC events reach this store; None for stores that are not smart cards."""
        ...

    async def tokens(self) -> list[TokenInfo]:
        """Tokens present now, each saying how it is unlocked (``secret``, ``pin``,
        ``unlock``). Never logs in, never asks for a PIN."""
        ...

    async def certificates(self, token: TokenInfo) -> list[CertificateEntry]:
        """Certificates on the token, paired with private keys. Never logs in."""
        ...

    async def login(self, token: TokenInfo, credential: Credential) -> None:
        """Log in to the token. Raises PinIncorrect (with status), PinLocked (with the
        ``unlock`` this token needs), Unsupported."""
        ...

    async def logout(self, token: TokenInfo) -> None: ...

    async def sign(self, key: KeyRef, digest: bytes, mechanism: SignMechanism,
                   credential: Credential | None = None) -> bytes:
        """Sign a precomputed hash. ``credential`` serves context-specific login
        (CKA_ALWAYS_AUTHENTICATE) or stores that need the secret per operation; without
        a login raises LoginRequired."""
        ...

    async def sign_many(self, key: KeyRef, digests: Sequence[bytes], mechanism: SignMechanism,
                        credential: Credential | None = None) -> list[bytes]:
        """``sign`` for many hashes with one key, in order; a store with no faster way
        signs them one by one (``sign_each``)."""
        ...

    async def diagnostics(self) -> StoreReport:
        """What ``doctor`` shows about the store; never logs in, never raises."""
        ...

    async def close(self) -> None: ...


async def sign_each(store: KeyStore, key: KeyRef, digests: Sequence[bytes],
                    mechanism: SignMechanism, credential: Credential | None) -> list[bytes]:
    """``sign_many`` for a store without a batch path."""
    return [await store.sign(key, digest, mechanism, credential) for digest in digests]
