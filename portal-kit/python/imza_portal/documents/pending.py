"""The state a portal keeps between ``prepare`` and ``finish``: small, plain, serialisable.

For PAdES it holds the prepared PDF (the original plus an incremental update whose
signature placeholder is still empty) and where the placeholder lies; for CAdES only the
document's digest, never the document. Both hold the signed attributes the agent signs the
hash of, and the certificate they were built for.

Keep it on the server (in the session store, a database row, a file): ``to_bytes`` is not
sealed, and whoever could change it could change what gets finished. A portal that must
keep it in the browser seals it first (an AEAD or an HMAC under a server key).
"""

from __future__ import annotations

import base64
import json
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from .algorithms import SCHEMES, HashName, SchemeName, digest, hash_name
from .errors import InvalidPendingState

Kind = Literal["PAdES", "CAdES"]
Level = Literal["B-B", "B-T", "B-LT"]
LEVELS: tuple[str, ...] = ("B-B", "B-T", "B-LT")
_MAGIC = b"imza-pending/1\n"
_VERSION = 1


@dataclass(frozen=True)
class PendingSignature:
    kind: Kind
    level: Level
    hash_algorithm: HashName
    scheme: SchemeName
    certificate: bytes  # DER, from certificates.select
    chain: tuple[bytes, ...]  # DER issuers, as certificates.select gave them
    signed_attributes: bytes  # DER SET OF Attribute: what the agent's signature covers
    message_digest: bytes  # PAdES: the /ByteRange digest; CAdES: the document's digest
    created: float = field(default_factory=time.time)  # seconds since the epoch
    pdf: bytes | None = None  # PAdES only: the prepared file, placeholder still empty
    reserved_start: int = 0  # PAdES only: the placeholder's offsets in ``pdf``
    reserved_end: int = 0

    @property
    def to_be_signed(self) -> bytes:
        """The hash ``sign.hash`` signs: of the DER signed attributes."""
        return digest(self.hash_algorithm, self.signed_attributes)

    def sign_hash_params(self, handle: str | None = None,
                         display: dict[str, str] | None = None) -> dict[str, Any]:
        """The ``sign.hash`` params (docs/protocol.md) as the page sends them; the page
        adds the ``handle`` it got from ``certificates.select`` if not given here."""
        params: dict[str, Any] = {
            "hash": base64.b64encode(self.to_be_signed).decode("ascii"),
            "hashAlgorithm": self.hash_algorithm, "scheme": self.scheme}
        if handle is not None:
            params["handle"] = handle
        if display:
            params["display"] = dict(display)
        return params

    # --- serialisation ---------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """A compact form for a session store: a JSON header, then the PDF as it is."""
        header = json.dumps({
            "v": _VERSION, "kind": self.kind, "level": self.level,
            "hash": self.hash_algorithm, "scheme": self.scheme,
            "cert": _b64(self.certificate), "chain": [_b64(c) for c in self.chain],
            "attrs": _b64(self.signed_attributes), "md": _b64(self.message_digest),
            "created": self.created, "range": [self.reserved_start, self.reserved_end],
        }, separators=(",", ":")).encode("utf-8")
        return _MAGIC + struct.pack(">I", len(header)) + header + (self.pdf or b"")

    @classmethod
    def from_bytes(cls, data: bytes) -> PendingSignature:
        if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 4:
            raise InvalidPendingState("not a pending signature of this version")
        start = len(_MAGIC) + 4
        (size,) = struct.unpack(">I", data[len(_MAGIC):start])
        try:
            header = json.loads(data[start:start + size])
            if header["v"] != _VERSION or header["kind"] not in ("PAdES", "CAdES") \
                    or header["level"] not in LEVELS or header["scheme"] not in SCHEMES:
                raise ValueError
            reserved_start, reserved_end = (int(n) for n in header["range"])
            pdf = data[start + size:] if header["kind"] == "PAdES" else None
            pending = cls(
                kind=cast(Kind, header["kind"]), level=cast(Level, header["level"]),
                hash_algorithm=hash_name(header["hash"]),
                scheme=cast(SchemeName, header["scheme"]),
                certificate=_unb64(header["cert"]),
                chain=tuple(_unb64(c) for c in header["chain"]),
                signed_attributes=_unb64(header["attrs"]), message_digest=_unb64(header["md"]),
                created=float(header["created"]), pdf=pdf,
                reserved_start=reserved_start, reserved_end=reserved_end)
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidPendingState(f"damaged pending signature ({type(exc).__name__})") \
                from None
        if pdf is not None and not 0 < reserved_start < reserved_end <= len(pdf):
            raise InvalidPendingState("damaged pending signature (placeholder range)")
        return pending


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise TypeError("not base64 text")
    return base64.b64decode(text, validate=True)
