"""The wire vocabulary of signing: schemes, hash algorithms and ECDSA encodings, as
docs/protocol.md spells them.

A leaf module: key stores, formats and the core use these values too, and import them
from here, so nothing below the protocol has to import its models.
"""

from __future__ import annotations

import enum


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
