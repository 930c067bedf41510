"""Field types of the wire format: base64 binary, the base64url login challenge, text
shown in dialogs, URLs and OIDs.

Binary fields decode to ``bytes`` on validation and encode back to base64 when a model is
dumped in JSON mode, so handlers never see base64 and portals never see raw bytes.
Validation messages never quote the value: it may be a document, and it is echoed to
whoever sent it.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, PlainSerializer, PlainValidator, WithJsonSchema

# --- standard base64 (RFC 4648 §4, with padding) ------------------------------------------


def _b64_decoder(min_bytes: int) -> Any:
    def decode(value: object) -> bytes:
        if isinstance(value, bytes | bytearray):
            raw = bytes(value)  # built in Python by a handler, not from the wire
        elif isinstance(value, str):
            try:
                raw = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(
                    "not valid standard base64 (alphabet A-Z a-z 0-9 + /, '=' padding, "
                    "no line breaks)") from None
        else:
            raise ValueError("must be a base64 string")
        if len(raw) < min_bytes:
            raise ValueError("must not be empty")
        return raw
    return decode


def _b64_encode(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


_B64_SCHEMA = {"type": "string", "contentEncoding": "base64",
               "pattern": "^[A-Za-z0-9+/]*={0,2}$"}

B64Bytes = Annotated[bytes, PlainValidator(_b64_decoder(0)),
                     PlainSerializer(_b64_encode, return_type=str, when_used="json"),
                     WithJsonSchema(_B64_SCHEMA)]
"""Binary value as standard base64 on the wire (signatures, hashes, certificates)."""

B64Document = Annotated[bytes, PlainValidator(_b64_decoder(1)),
                        PlainSerializer(_b64_encode, return_type=str, when_used="json"),
                        WithJsonSchema({**_B64_SCHEMA, "minLength": 4})]
"""A non-empty document (PDF, XML, data to sign) as standard base64."""

# --- the login challenge: base64url (RFC 4648 §5), padding optional -------------------------

CHALLENGE_MIN_CHARS = 43  # 32 random bytes without padding, as PKCE's code_verifier
CHALLENGE_MAX_CHARS = 128
CHALLENGE_MIN_BYTES = 32
_CHALLENGE_RE = re.compile(r"[A-Za-z0-9_-]+={0,2}")


def _decode_challenge(value: object) -> bytes:
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
    elif isinstance(value, str):
        if not CHALLENGE_MIN_CHARS <= len(value) <= CHALLENGE_MAX_CHARS:
            raise ValueError(f"must be {CHALLENGE_MIN_CHARS} to {CHALLENGE_MAX_CHARS} "
                             "characters of base64url")
        body = value.rstrip("=")
        padded = len(value) != len(body)
        if (not _CHALLENGE_RE.fullmatch(value) or len(body) % 4 == 1
                or (padded and len(value) % 4 != 0)):
            raise ValueError("not valid base64url (alphabet A-Z a-z 0-9 - _)")
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    else:
        raise ValueError("must be a base64url string")
    if len(raw) < CHALLENGE_MIN_BYTES:
        raise ValueError(f"must carry at least {CHALLENGE_MIN_BYTES} bytes of randomness")
    return raw


def _b64url_encode(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode("ascii")


Challenge = Annotated[bytes, PlainValidator(_decode_challenge),
                      PlainSerializer(_b64url_encode, return_type=str, when_used="json"),
                      WithJsonSchema({"type": "string", "contentEncoding": "base64url",
                                      "pattern": "^[A-Za-z0-9_-]+={0,2}$",
                                      "minLength": CHALLENGE_MIN_CHARS,
                                      "maxLength": CHALLENGE_MAX_CHARS})]

# --- text a dialog shows ------------------------------------------------------------------

# Bidi embeddings, overrides and isolates let a page make "invoice‮fdp.exe" read as
# something else in the confirmation dialog; a page has no honest use for them there.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _dialog_text(allow_newlines: bool) -> Any:
    def check(value: str) -> str:
        for ch in value:
            if ch == "\n" and allow_newlines:
                continue
            if ch in _BIDI_CONTROLS or unicodedata.category(ch) in ("Cc", "Cs"):
                raise ValueError("contains control or bidi-override characters")
        if not value.strip():
            raise ValueError("must not be blank")
        return value
    return check


DisplayText = Annotated[str, Field(min_length=1, max_length=1000),
                        AfterValidator(_dialog_text(allow_newlines=True))]
"""Free text for the confirmation dialog: what the user is agreeing to."""

ShortText = Annotated[str, Field(min_length=1, max_length=256),
                      AfterValidator(_dialog_text(allow_newlines=False))]
"""One line of text shown to the user (a document name)."""

# Characters that draw nothing or break lines: format characters (zero-width spaces and
# joiners, direction marks, the bidi controls above, soft hyphen) and the line and
# paragraph separators. In text that is signed they would make what a verifier shows
# differ from what the dialog showed.
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Zl", "Zp"})


def _no_invisible(value: str) -> str:
    if any(unicodedata.category(ch) in _INVISIBLE_CATEGORIES for ch in value):
        raise ValueError("contains invisible formatting or line-separator characters "
                         "(Unicode categories Cf, Zl, Zp)")
    return value


SignedText = Annotated[ShortText, AfterValidator(_no_invisible)]
"""One line of page text written into a signature (a PDF's reason, location, stamp
text): as ``ShortText``, and without Cf/Zl/Zp characters."""

# --- identifiers --------------------------------------------------------------------------

Handle = Annotated[str, Field(min_length=1, max_length=128)]
"""Opaque certificate handle, as ``certificates.select`` returned it."""

Oid = Annotated[str, Field(max_length=128, pattern=r"^[0-2](\.(0|[1-9][0-9]*))+$")]

PdfFieldName = Annotated[str, Field(min_length=1, max_length=128,
                                    pattern=r"^[^.\x00-\x1f]+$"),
                         AfterValidator(_dialog_text(allow_newlines=False)),
                         AfterValidator(_no_invisible)]
"""A signature field's partial name; PDF uses '.' to separate name parts.  It is written
into the document, so it follows the rules of ``SignedText``."""


def _check_tsa_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        port = parts.port  # raises on a malformed port
    except ValueError:
        raise ValueError("not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials")
    # Control and invisible characters too: a URL is logged and may be shown.
    if parts.fragment or port == 0 or any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError("not a valid URL")
    return value


TsaUrl = Annotated[str, Field(max_length=2048, json_schema_extra={"format": "uri"}),
                   AfterValidator(_check_tsa_url)]
"""RFC 3161 time-stamping service the agent queries for levels with a timestamp."""
