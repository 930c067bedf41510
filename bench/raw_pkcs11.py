"""The baseline: python-pkcs11 signing on the same SoftHSM token, in this process.

Two loops: ``sign`` in one logged-in session (what the issue compares against), and
open + C_Login + find key + sign + C_Logout per signature (what the agent's worker does
for each request), so the reader sees how much of the agent's time is the token's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pkcs11
from pkcs11 import Mechanism, ObjectClass

from agent.keystores.mechanisms import digest_info
from agent.protocol.enums import HashAlgorithm


@dataclass(frozen=True)
class RawKey:
    """One private key on the token and how to sign a SHA-256 hash with it."""

    name: str          # "RSA-2048" / "P-256"
    key_id: bytes
    rsa: bool

    def mechanism(self) -> Mechanism:
        return Mechanism.RSA_PKCS if self.rsa else Mechanism.ECDSA

    def data(self, digest: bytes) -> bytes:
        return digest_info(HashAlgorithm.SHA256, digest) if self.rsa else digest


def _timed(count: int, one: Callable[[int], object]) -> list[float]:
    samples = []
    for i in range(count):
        start = time.perf_counter()
        one(i)
        samples.append(time.perf_counter() - start)
    return samples


class RawSigner:
    def __init__(self, module: Path, token_label: str, pin: str) -> None:
        self.lib = pkcs11.lib(str(module))
        self.token = self.lib.get_token(token_label=token_label)
        self._pin = pin

    @staticmethod
    def _private_key(session: pkcs11.Session, key: RawKey) -> pkcs11.PrivateKey:
        return session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=key.key_id)

    def logged_in_loop(self, key: RawKey, digests: list[bytes]) -> list[float]:
        """Per-signature seconds of ``sign`` in one session that stays logged in."""
        with self.token.open(user_pin=self._pin) as session:
            private = self._private_key(session, key)
            mechanism = key.mechanism()
            private.sign(key.data(digests[0]), mechanism=mechanism)  # warm-up
            return _timed(len(digests), lambda i: private.sign(key.data(digests[i]),
                                                              mechanism=mechanism))

    def logged_in_batch(self, key: RawKey, digests: list[bytes]) -> float:
        """Seconds for the whole list signed in one logged-in session (key found once)."""
        with self.token.open(user_pin=self._pin) as session:
            private = self._private_key(session, key)
            mechanism = key.mechanism()
            start = time.perf_counter()
            for digest in digests:
                private.sign(key.data(digest), mechanism=mechanism)
            return time.perf_counter() - start

    def login_sign_logout_loop(self, key: RawKey, digests: list[bytes]) -> list[float]:
        """Per-signature seconds of open session + C_Login + find + sign + C_Logout."""
        def one(i: int) -> None:
            with self.token.open(user_pin=self._pin) as session:
                self._private_key(session, key).sign(key.data(digests[i]),
                                                     mechanism=key.mechanism())
        one(0)  # warm-up
        return _timed(len(digests), one)

    def close(self) -> None:
        self.lib.finalize()
