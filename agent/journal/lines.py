"""One journal line: its fields, its canonical form and the MAC over it.

A line is a JSON object on one line.  ``hash`` is computed over the canonical JSON of
every other field (sorted keys, no spaces, UTF-8), and that includes ``prev``, the hash of
the line before, so the lines form a chain.

Two formats are read:

- keyed (written since issue 11): the line has ``kid``, the id of the key, and ``hash`` is
  HMAC-SHA256 under that key.  Rewriting and re-chaining lines needs the key, which lives
  in the OS keyring.
- plain (older journals): no ``kid``; ``hash`` is plain SHA-256.  Still verified, but only
  before the first keyed line: a plain line after a keyed one is a forgery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import TypedDict

GENESIS = "0" * 64
KEY_BYTES = 32


class JournalEntry(TypedDict):
    """One line of the journal, with the wire's key names."""

    seq: int
    time: str  # ISO 8601, UTC, milliseconds
    origin: str
    method: str
    certificate: str | None  # SHA-256 of the certificate, hex
    digestAlgorithm: str | None
    digest: str | None  # hex
    count: int
    result: str  # "ok" or the error reason
    prev: str  # the previous line's hash (GENESIS for the first)
    kid: str  # which key made ``hash`` (see key_id)
    hash: str  # HMAC-SHA256 over the line's canonical JSON without this field


def canonical(entry: Mapping[str, object]) -> bytes:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def plain_hash(entry: Mapping[str, object]) -> str:
    """The hash of the plain format (journals written before the key existed)."""
    return hashlib.sha256(canonical(entry)).hexdigest()


def keyed_hash(key: bytes, entry: Mapping[str, object]) -> str:
    return hmac.new(key, canonical(entry), hashlib.sha256).hexdigest()


def key_id(key: bytes) -> str:
    """Names a key in each line without revealing it: verify picks the key by it."""
    return hashlib.sha256(b"imza-agent journal key id\0" + key).hexdigest()[:16]


def encode(entry: Mapping[str, object]) -> bytes:
    return (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
