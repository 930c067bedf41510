"""The dialog port: the interface between the agent and the person in front of it.

Every dialog the citizen sees goes through ``UserInterface``: the production backend draws
Qt windows in the UI process (docs/ui-process.md), the scripted backend answers from a file
(tests, automated checks), the ``none`` backend refuses everything (a server with nobody
to ask).  Method code never
knows which one it talks to.  Timeouts are the caller's job (``asyncio.wait_for``); a
backend must close its dialog when its coroutine is cancelled.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from agent.errors import PinStatus
from agent.keystores.base import Credential


class ConsentAnswer(enum.StrEnum):
    ONCE = "once"
    ALWAYS = "always"
    DENY = "deny"
    BLOCK = "block"  # deny, and refuse every connection from this origin from now on


@dataclass(frozen=True)
class CertificateChoice:
    """One row of the certificate picker: what a person needs to recognise the certificate."""

    holder: str
    issuer: str
    serial_hex: str
    not_before: str  # ISO 8601 dates, so every UI formats the same facts
    not_after: str
    token_label: str
    usable: bool
    unusable_reason: str | None = None  # "expired" / "not_yet_valid"
    demo: bool = False
    reader: str | None = None  # the card reader the token is in, when the store knows it


@dataclass(frozen=True)
class ConsentRequest:
    origin: str
    permissions: tuple[str, ...]


class SignedField(enum.StrEnum):
    """Page-chosen text that goes into the signature itself; the dialog shows each one,
    labelled by the agent, inside the area that is marked as the site's."""

    REASON = "reason"
    LOCATION = "location"
    STAMP_TEXT = "stamp_text"  # the visible stamp's extra line
    FIELD_NAME = "field_name"  # the PDF signature field's name


class PreviewKind(enum.StrEnum):
    """How the trusted window shows one thing that is signed (what you see is what you sign)."""

    PDF = "pdf"        # ``data``: the PDF; its pages are rendered
    TEXT = "text"      # ``data``: UTF-8 text, shown whole, scrollable
    XML = "xml"        # ``data``: UTF-8, indented text of what the signature covers
    BINARY = "binary"  # no ``data``: "binary data, N bytes, SHA-256 …"
    HASH = "hash"      # no ``data``: the site shows no document, only a fingerprint is signed


@dataclass(frozen=True)
class Preview:
    """One item the signature covers, as the agent (never the page) describes it."""

    kind: PreviewKind
    size: int                 # bytes of the document (HASH: of the hash)
    sha256: str               # hex: of the document, or the hash itself for HASH
    name: str | None = None   # the page's name for the document, capped by the core
    data: bytes = b""         # PDF / TEXT / XML only; empty over ``[ui] preview_bytes``


@dataclass(frozen=True)
class PinRequest:
    """The confirmation + PIN dialog: what is signed, for whom, with which certificate."""

    origin: str
    action: str  # "sign" or "auth"
    certificate: CertificateChoice
    pin: PinStatus
    count: int = 1
    display_text: str | None = None
    document_name: str | None = None
    # Set after a wrong PIN: the token's state then (few tries left, final try).
    retry: PinStatus | None = None
    password: bool = False  # a PKCS#12 password rather than a token PIN
    # Every page-chosen string that is signed, in the order the page gave them; values
    # are already checked (no Cf/Zl/Zp characters) and capped by the core.
    signed_fields: tuple[tuple[SignedField, str], ...] = ()
    # What the signature covers, one per item (a batch has several; ``count`` equals their
    # number when they are given). Empty only for requests that sign no content (auth).
    previews: tuple[Preview, ...] = ()


@dataclass(frozen=True)
class ExtendRequest:
    """The confirmation of ``signature.extend``: no key and no PIN, yet the user agrees
    once, as for a signature, to have the agent time-stamp and archive a document the
    page sent (the services are asked on the user's behalf)."""

    origin: str
    format: str                 # "cms", "pdf" or "xml"
    level: str                  # the level asked for: "T"… for cms, "B-T"… for pdf and xml
    signatures: int = 1         # how many signatures the document holds (all are extended)
    document_name: str | None = None  # the page's name, as the core cut it to one line
    display_text: str | None = None
    previews: tuple[Preview, ...] = ()  # what is extended, as the PIN dialog shows it


class UserInterface(Protocol):
    async def ask_consent(self, request: ConsentRequest) -> ConsentAnswer: ...

    async def choose_certificate(self, origin: str, purpose: str,
                                 choices: list[CertificateChoice], *,
                                 filtered: bool = False) -> int:
        """Index into ``choices``; raises UserCancelled.

        ``choices`` may be empty: the picker is then still shown, saying that no
        certificate is there (``filtered``: none matches what this site asks for), with
        only a way to close it, so a page cannot learn without the user what certificates
        exist. ``filtered`` is True whenever the page narrowed the list."""
        ...

    async def ask_pin(self, request: PinRequest) -> Credential:
        """A Secret, or PIN_PAD when the token has a PIN pad; raises UserCancelled."""
        ...

    async def show_pin_locked(self, origin: str, token_label: str, unlock: str) -> None: ...

    async def ask_extend(self, request: ExtendRequest) -> None:
        """Returns when the user agreed to extend the signature(s); raises UserCancelled."""
        ...

    def pin_pad_finished(self) -> None:
        """The PIN-pad login ended (either way): take down the "enter the PIN on the
        reader" prompt that ``ask_pin`` left up."""
        ...

    @property
    def interactive(self) -> bool:
        """False when there is nobody to ask: consent then means PERMISSION_DENIED."""
        ...
