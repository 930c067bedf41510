"""Documents as binary WebSocket frames: a connection's uploads, their use by a signing
call, and the binary answer (docs/protocol.md, "Uploads").

A 50 MB document as base64 in one JSON frame costs a 67 MB frame, its parse, its decoding,
and on the way back the same again for the signed document. An upload sends the bytes as
they are; the signing call names the upload; and the answer sends only what the page does
not already hold: for a PAdES incremental update, the bytes after the uploaded document.

What a page can make the daemon hold is bounded before any binary byte is read:
``document.upload`` needs a grant, names its size (at most ``max_document_bytes``), a
connection holds at most ``max_pending_uploads`` uploads (received, being received, or in
use by a request that has not been answered yet), a site's uploads on all its connections
together at most ``max_document_bytes`` (what one request may carry as base64: its
documents may come as two uploads), and every upload is booked in the frame session's
pending ledger, in the overall caps it shares with the requests' frames, until it is
forgotten. A binary frame nobody announced, or one past the announced size, is a protocol
violation: the connection closes with 1008.

An upload not taken by a request within ``upload_timeout`` of its announcement expires, so
a page that stalls cannot keep the site's and the overall budgets: an incomplete one closes
its connection (its remaining frames would be nobody's), a complete one is forgotten.
"""

from __future__ import annotations

import io
import math
import re
import secrets
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.document_tail import Appended
from agent.protocol import jsonrpc
from agent.protocol.base import WireModel
from agent.protocol.params import DOCUMENT_EXTRA_FIELDS, DOCUMENT_FIELDS
from agent.protocol.params_upload import UPLOAD_ID_PATTERN

UPLOAD_METHOD = "document.upload"
# The result member that carries the signed document, per method whose document may come
# from an upload (signature.verify answers a report: nothing to send as binary).
RESULT_DOCUMENT_FIELDS: dict[str, str] = {"sign.pdf": "pdf", "sign.cms": "cms",
                                          "signature.extend": "signature"}
# Ids of used uploads remembered per connection, only to say "already used" rather than
# "unknown" (the upload itself is forgotten once used).
REMEMBERED_USED = 32
_UPLOAD_ID = re.compile(UPLOAD_ID_PATTERN)


def new_upload_id() -> str:
    """``u-`` and 22 URL-safe characters (128 random bits)."""
    return "u-" + secrets.token_urlsafe(16)


@dataclass(eq=False)
class Upload:
    id: str
    size: int
    received: int = 0
    # The bytes as they come. A document sent in one frame is kept as that frame's bytes
    # (no copy); in several, written into a buffer of the announced size whose bytes
    # ``getvalue`` then hands over without a copy (CPython shares a BytesIO's buffer when
    # it holds exactly the written bytes).
    _frames: bytes | None = None
    _buffer: io.BytesIO | None = None
    data: bytes | None = None  # once complete, until taken
    taken: bool = False
    deadline: float = math.inf  # on the session's clock: expires unless taken by then

    @property
    def complete(self) -> bool:
        return self.received == self.size

    def add(self, frame: bytes) -> None:
        if self._frames is None and self._buffer is None and len(frame) == self.size:
            self._frames = frame
        else:
            if self._buffer is None:
                self._buffer = io.BytesIO()
                self._buffer.seek(self.size - 1)
                self._buffer.write(b"\0")  # one allocation of the final size
                self._buffer.seek(0)
            self._buffer.write(frame)
        self.received += len(frame)
        if self.complete:
            if self._buffer is not None:
                self.data = self._buffer.getvalue()
                self._buffer.close()
                self._buffer = None
            else:
                self.data = self._frames if self._frames is not None else b""
            self._frames = None


class SiteUploads:
    """The bytes of the uploads each site holds, on all its connections (shared like the
    pending ledger). A site's first upload always fits (``max_document_bytes`` bounds
    it); more wait until the site's uploads together stay within ``per_site``."""

    def __init__(self, per_site: int) -> None:
        self.per_site = per_site
        self._bytes: defaultdict[str, int] = defaultdict(int)

    def reserve(self, site: str, size: int) -> bool:
        held = self._bytes.get(site, 0)
        if held and held + size > self.per_site:
            return False
        self._bytes[site] = held + size
        return True

    def release(self, site: str, size: int) -> None:
        self._bytes[site] -= size
        if self._bytes[site] <= 0:
            del self._bytes[site]

    def held(self, site: str) -> int:
        return self._bytes.get(site, 0)


class UploadRefused(Exception):
    """A request names an upload it may not use; the message is for the page."""


class UploadStore:
    """One connection's uploads, oldest first. ``on_forget(upload)`` is called once per
    upload when it is forgotten (used and answered, expired, or its connection closed).
    ``timeout``: the seconds an upload may wait to be taken (for the messages)."""

    def __init__(self, on_forget: Callable[[Upload], None], timeout: float = math.inf) -> None:
        self._on_forget = on_forget
        self._timeout = timeout
        self._uploads: OrderedDict[str, Upload] = OrderedDict()
        self._used: deque[str] = deque(maxlen=REMEMBERED_USED)
        self._expired: deque[str] = deque(maxlen=REMEMBERED_USED)

    @property
    def held(self) -> int:
        """Uploads this connection holds: being received, complete, or in use."""
        return len(self._uploads)

    def open(self, upload: Upload) -> None:
        self._uploads[upload.id] = upload

    def receive(self, frame: bytes) -> str | None:
        """Take one binary frame for the oldest upload still waiting for bytes; the reason
        to close the connection (1008) when nothing waits or the frame goes past the
        announced size."""
        waiting = next((u for u in self._uploads.values() if not u.complete), None)
        if waiting is None:
            return "binary frame without an upload waiting for it"
        if len(frame) > waiting.size - waiting.received:
            return "binary frame past the announced upload size"
        waiting.add(frame)
        return None

    def complete_ids(self) -> frozenset[str]:
        return frozenset(u.id for u in self._uploads.values() if u.complete and not u.taken)

    def check(self, upload_id: str, complete: frozenset[str]) -> None:
        """UploadRefused unless ``upload_id`` was complete and unused in ``complete`` (the
        uploads complete when the request's frame arrived) and still is."""
        upload = self._uploads.get(upload_id)
        if upload is None:
            if upload_id in self._expired:
                raise UploadRefused(f"upload {upload_id} expired: an upload must be used "
                                    f"within {self._timeout:g} s of its announcement")
            if upload_id in self._used:
                raise UploadRefused(f"upload {upload_id} was already used: an upload is "
                                    "used once")
            raise UploadRefused(f"upload {upload_id} is unknown on this connection")
        if upload.taken:
            raise UploadRefused(f"upload {upload_id} was already used: an upload is used once")
        if upload_id not in complete:
            raise UploadRefused(f"upload {upload_id} is not complete: send all its bytes "
                                "before the request that names it")

    def take(self, upload_id: str) -> bytes:
        """The upload's bytes, for one request; it stays booked until ``forget``."""
        upload = self._uploads[upload_id]
        data, upload.data, upload.taken = upload.data, None, True
        assert data is not None
        self._used.append(upload_id)
        return data

    def next_deadline(self) -> float | None:
        """When the first upload not taken yet expires (None: nothing can expire)."""
        return min((u.deadline for u in self._uploads.values() if not u.taken), default=None)

    def expire(self, now: float) -> str | None:
        """Forget every upload not taken by its deadline; the reason to close the
        connection (1008) when one of them was still waiting for bytes."""
        violation: str | None = None
        for upload in [u for u in self._uploads.values() if not u.taken and u.deadline <= now]:
            if not upload.complete:
                violation = (f"upload not completed within {self._timeout:g} s of its "
                             "announcement")
            self._expired.append(upload.id)
            self.forget(upload.id)
        return violation

    def forget(self, upload_id: str) -> None:
        upload = self._uploads.pop(upload_id, None)
        if upload is not None:
            self._on_forget(upload)

    def close(self) -> None:
        for upload_id in list(self._uploads):
            self.forget(upload_id)


# --- a request that names uploads -----------------------------------------------------------

@dataclass
class TakenUploads:
    """The uploads one request used: forgotten once it is answered."""

    ids: list[str] = field(default_factory=list)
    document: bytes | None = None  # the method's document, when it came from an upload
    size: int = 0


def upload_members(method: str) -> tuple[str, ...]:
    field_name = DOCUMENT_FIELDS.get(method)
    if field_name is None:
        return ()
    return (field_name, *DOCUMENT_EXTRA_FIELDS.get(method, ()))


def reference_of(value: object) -> str | None:
    """The id a member value names (``{"upload": "u-…"}``), or None for any other value
    (base64, or something malformed the params model will report). Only a well-formed
    id is ever quoted back to the page."""
    if isinstance(value, dict) and "upload" in value:
        upload_id = value["upload"]
        if len(value) != 1 or not isinstance(upload_id, str):
            raise UploadRefused('an upload is named as {"upload": "<id>"}, nothing else')
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise UploadRefused("not an upload id: document.upload answers u- and 22 "
                                "characters")
        return upload_id
    return None


def take_uploads(message: jsonrpc.Request, store: UploadStore | None,
                 complete: frozenset[str]) -> TakenUploads | None:
    """Put the bytes of the uploads a document method's members name in their place, as
    the base64 path puts the decoded document. None when the request names none;
    UploadRefused (nothing taken) when it names one it may not use."""
    params: Any = message.params
    if not isinstance(params, dict):
        return None
    named = [(name, ref) for name in upload_members(message.method)
             if (ref := reference_of(params.get(name))) is not None]
    if not named:
        return None
    if store is None:
        raise UploadRefused("uploads are taken on WebSocket connections only; send the "
                            "document as base64 on this transport")
    ids = [ref for _, ref in named]
    if len(set(ids)) != len(ids):
        raise UploadRefused("an upload is used once: one member per upload")
    for upload_id in ids:
        store.check(upload_id, complete)
    taken = TakenUploads(ids=ids)
    main = DOCUMENT_FIELDS[message.method]
    for name, upload_id in named:
        data = store.take(upload_id)
        params[name] = data
        taken.size += len(data)
        if name == main:
            taken.document = data
    return taken


def with_placeholders(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with upload references replaced by one byte, to validate the rest of the
    request where the uploads are not at hand (the parsing worker)."""
    names = [n for n in upload_members(method) if isinstance(params.get(n), dict)
             and "upload" in params[n]]
    return {**params, **{n: b"\0" for n in names}} if names else params


# --- the answer -----------------------------------------------------------------------------

class BinaryAnswer:
    """Encodes the result of a request whose document came from an upload: the signed
    document leaves the JSON as ``{"binary": N[, "prefix": M]}`` and its N bytes go in
    the binary frame that follows (``tail``)."""

    def __init__(self, method: str, uploaded: bytes) -> None:
        self.member = RESULT_DOCUMENT_FIELDS.get(method)
        self._uploaded: bytes | None = uploaded
        self.tail: memoryview | None = None

    def frame(self, msg_id: jsonrpc.JsonRpcId, result: WireModel) -> str:
        uploaded, self._uploaded = self._uploaded, None  # not held past the answer
        member, attribute = self.member, self._attribute(result)
        if member is None or attribute is None or uploaded is None:
            return jsonrpc.result_frame(msg_id, result)
        document = getattr(result, attribute)
        if not isinstance(document, bytes):
            return jsonrpc.result_frame(msg_id, result)
        payload = result.model_dump(mode="json", by_alias=True, exclude_none=True,
                                    exclude={attribute})
        # An incremental update begins with the uploaded document: the page has those bytes.
        if isinstance(document, Appended):
            # Kept in parts by the document path: nothing to compare, nothing to join.
            if document.document is uploaded:
                prefix, self.tail = len(uploaded), memoryview(document.update())
            else:  # not this upload's update (not made so today): sent whole
                prefix, self.tail = 0, memoryview(document.whole())
        else:
            prefix = len(uploaded) if uploaded and document.startswith(uploaded) else 0
            self.tail = memoryview(document)[prefix:]
        shape: dict[str, int] = {"binary": len(self.tail)}
        if prefix:
            shape["prefix"] = prefix
        payload[member] = shape
        return jsonrpc.result_frame(msg_id, payload)

    def _attribute(self, result: WireModel) -> str | None:
        for name, info in type(result).model_fields.items():
            if self.member in (info.alias, name):
                return name
        return None
