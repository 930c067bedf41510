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
from typing import Protocol, runtime_checkable

from agent.errors import PinStatus


class StoreKind(enum.StrEnum):
    PKCS11 = "pkcs11"
    PKCS12 = "pkcs12"
    DEMO = "demo"


class Scheme(enum.StrEnum):
    RSA_PKCS1_V15 = "RSASSA-PKCS1-v1_5"
    RSA_PSS = "RSASSA-PSS"
    ECDSA = "ECDSA"


class HashAlgorithm(enum.StrEnum):
    SHA256 = "SHA-256"
    SHA384 = "SHA-384"
    SHA512 = "SHA-512"

    @property
    def digest_size(self) -> int:
        return {"SHA-256": 32, "SHA-384": 48, "SHA-512": 64}[self.value]


class EcdsaEncoding(enum.StrEnum):
    DER = "der"
    RAW = "raw"


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
    kind: StoreKind
    pin: PinStatus = field(default_factory=PinStatus)
    present: bool = True
    # PKCS#12 files whose certificates are unknown until the first unlock.
    needs_unlock: bool = False
    demo: bool = False


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


@runtime_checkable
class KeyStore(Protocol):
    """What the agent needs from any source of keys."""

    store_id: str
    kind: StoreKind

    async def tokens(self) -> list[TokenInfo]:
        """Tokens present now. Never logs in, never asks for a PIN."""
        ...

    async def certificates(self, token: TokenInfo) -> list[CertificateEntry]:
        """Certificates on the token, paired with private keys. Never logs in."""
        ...

    async def login(self, token: TokenInfo, credential: Credential) -> None:
        """Log in to the token. Raises PinIncorrect (with status), PinLocked, Unsupported."""
        ...

    async def logout(self, token: TokenInfo) -> None: ...

    async def sign(self, key: KeyRef, digest: bytes, mechanism: SignMechanism,
                   credential: Credential | None = None) -> bytes:
        """Sign a precomputed hash. ``credential`` serves context-specific login
        (CKA_ALWAYS_AUTHENTICATE) or stores that need the secret per operation; without
        a login raises LoginRequired."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class BatchSigner(Protocol):
    """Optional: a store that signs many hashes with one key faster than one by one."""

    async def sign_many(self, key: KeyRef, digests: Sequence[bytes], mechanism: SignMechanism,
                        credential: Credential | None = None) -> list[bytes]: ...
