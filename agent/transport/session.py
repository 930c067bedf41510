"""What every transport does with an admitted connection's text frames.

Before a frame is parsed it must pass, cheapest check first: the frame size (small until
the origin holds a grant), the per-connection cap on requests in flight, the origin's
request rate, the site's byte rate, the size of a frame that carries no document (large
frames are for the document methods only), and the site's and the agent's caps on pending
requests and on the frame bytes they hold. A refused frame is answered RATE_LIMITED (or
TOO_LARGE) without being parsed: its ``id`` (and ``method``) are read from the frame's first
few hundred characters only.

A document method's document is checked against its own limit and decoded once, right after
parsing (agent/transport/document_frames.py); after a large frame the allocator is asked to
return its free memory (agent/transport/heap.py).

On a WebSocket connection a document may come as binary frames instead
(agent/transport/uploads.py): ``document.upload`` is answered here, at once, before the
next frame is read, so the upload's bytes may follow its request without waiting for the
answer; a request naming an upload gets the upload's bytes in place of the base64 document,
and its signed document back as a binary frame after the text answer.

Parsing itself is cheap for ordinary requests and runs inline; a frame that may be costly
(large, or with many values) is parsed and validated in a worker process, because the JSON
parser holds the GIL: in a thread it would still stall the event loop for every other site.

Each request then runs as its own task (so a request waiting for the user does not hold up
``agent.info``); on close, what still runs is cancelled and the connection cleaned up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from pydantic import ValidationError

from agent.document_tail import allow_appended
from agent.errors import InternalError, PermissionDenied, RateLimited, TooLarge
from agent.limits import PendingLedger, PendingLimits, RateLimiter
from agent.policy.site import site_of
from agent.protocol import jsonrpc
from agent.protocol.catalog import METHODS
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.protocol.params import DOCUMENT_FIELDS
from agent.protocol.params_upload import DocumentUploadParams, DocumentUploadResult
from agent.transport.document_frames import prepare_document, too_large
from agent.transport.heap import TRIM_AFTER_BYTES, release_free_memory
from agent.transport.uploads import (
    UPLOAD_METHOD,
    BinaryAnswer,
    SiteUploads,
    TakenUploads,
    Upload,
    UploadRefused,
    UploadStore,
    new_upload_id,
    take_uploads,
    with_placeholders,
)

if TYPE_CHECKING:  # multiprocessing (and pickle, queues...) only once a costly frame comes
    from concurrent.futures import ProcessPoolExecutor

log = logging.getLogger("imza_agent.transport")

Send = Callable[[str], Awaitable[None]]
# Sends a text answer and, right after it with nothing in between, a binary frame.
SendWithBinary = Callable[[str, memoryview], Awaitable[None]]
# ``[server] max_pending_uploads`` when the settings predate it.
DEFAULT_MAX_PENDING_UPLOADS = 2
DEFAULT_UPLOAD_TIMEOUT = 120.0  # ``[server] upload_timeout``
# Whether an origin holds a grant: by policy or the user's stored answer, and, once the
# connection exists, its own "allow once" grants. Injected by the runtime (agent.app
# knows the connection's grants; the transport does not import it).
GrantCheck = Callable[[str, CallContext | None], bool]


class ServerSettings(Protocol):
    """The ``[server]`` settings the session reads (``agent.config.ServerConfig``)."""

    @property
    def max_frame_bytes(self) -> int: ...
    @property
    def max_frame_bytes_ungranted(self) -> int: ...
    @property
    def max_document_frame_bytes(self) -> int: ...
    @property
    def max_document_bytes(self) -> int: ...
    @property
    def max_pending_uploads(self) -> int: ...
    @property
    def upload_timeout(self) -> float: ...
    @property
    def rate_per_second(self) -> float: ...
    @property
    def rate_burst(self) -> int: ...
    @property
    def bytes_per_second(self) -> int: ...
    @property
    def bytes_burst(self) -> int: ...
    @property
    def max_requests_in_flight(self) -> int: ...
    @property
    def max_pending_requests_per_site(self) -> int: ...
    @property
    def max_pending_requests(self) -> int: ...
    @property
    def max_pending_bytes_per_site(self) -> int: ...
    @property
    def max_pending_bytes(self) -> int: ...
    @property
    def reserved_for_granted(self) -> float: ...


def _no_grant(origin: str, ctx: CallContext | None) -> bool:
    return False


class OversizedFrame(Exception):
    """A frame over the connection's current limit reached the session (the transport's
    own check normally stops it first): the transport closes the connection."""


# --- the shared limits ---------------------------------------------------------------------

@dataclass
class SessionLimits:
    """Everything every connection of every transport shares, so a page cannot multiply a
    limit by opening more connections or using another transport."""

    requests: RateLimiter  # per origin
    bytes: RateLimiter  # per site
    pending: PendingLedger  # per site and overall
    parser: FrameParser
    max_frame_bytes: int  # granted, methods without a document
    max_frame_bytes_ungranted: int
    max_in_flight: int  # per connection
    max_document_frame_bytes: int = 0  # granted, document methods; 0: max_frame_bytes
    max_document_bytes: int = 2**62  # decoded
    max_pending_uploads: int = DEFAULT_MAX_PENDING_UPLOADS  # per connection
    upload_timeout: float = DEFAULT_UPLOAD_TIMEOUT  # from announcement to use
    has_grant: GrantCheck = _no_grant
    clock: Callable[[], float] | None = None
    # Per site, a site's uploads together: at most one request's worth of documents.
    site_uploads: SiteUploads = field(init=False)

    def __post_init__(self) -> None:
        self.site_uploads = SiteUploads(self.max_document_bytes)

    @classmethod
    def from_settings(cls, s: ServerSettings, has_grant: GrantCheck = _no_grant, *,
                      clock: Callable[[], float] | None = None,
                      parser: FrameParser | None = None) -> SessionLimits:
        return cls(
            requests=RateLimiter(s.rate_per_second, s.rate_burst),
            bytes=RateLimiter(s.bytes_per_second, s.bytes_burst),
            pending=PendingLedger(PendingLimits(
                s.max_pending_requests_per_site, s.max_pending_requests,
                s.max_pending_bytes_per_site, s.max_pending_bytes, s.reserved_for_granted)),
            parser=parser or FrameParser(),
            max_frame_bytes=s.max_frame_bytes,
            max_frame_bytes_ungranted=min(s.max_frame_bytes_ungranted, s.max_frame_bytes),
            max_in_flight=s.max_requests_in_flight,
            max_document_frame_bytes=s.max_document_frame_bytes,
            max_document_bytes=s.max_document_bytes,
            max_pending_uploads=s.max_pending_uploads,
            upload_timeout=s.upload_timeout,
            has_grant=has_grant, clock=clock)

    def frame_limit(self, origin: str, ctx: CallContext | None = None) -> int:
        return self.limit_for(self.has_grant(origin, ctx))

    def limit_for(self, granted: bool) -> int:
        """The largest frame the transport reads: with a grant, a document method's (a
        larger frame of another method is then answered TOO_LARGE by the session)."""
        if not granted:
            return self.max_frame_bytes_ungranted
        return max(self.max_frame_bytes, self.max_document_frame_bytes)

    def now(self) -> float:
        return self.clock() if self.clock is not None else asyncio.get_running_loop().time()


# --- one connection ------------------------------------------------------------------------

class FrameSession:
    def __init__(self, dispatcher: Dispatcher, ctx: CallContext, send: Send,
                 limits: SessionLimits, closed_errors: tuple[type[BaseException], ...], *,
                 on_frame_limit: Callable[[int], None] | None = None,
                 send_with_binary: SendWithBinary | None = None) -> None:
        self.dispatcher = dispatcher
        self.ctx = ctx
        self.site = site_of(ctx.origin)
        self._send = send
        self._limits = limits
        self._closed_errors = closed_errors
        self._on_frame_limit = on_frame_limit
        self._in_flight: set[asyncio.Task[None]] = set()
        self.granted = limits.has_grant(ctx.origin, ctx)
        self.frame_limit = limits.limit_for(self.granted)
        # Uploads: on transports that carry binary frames (WebSocket) only.
        self._send_with_binary = send_with_binary
        self.uploads: UploadStore | None = None
        if send_with_binary is not None:
            self.uploads = UploadStore(self._unbook_upload, limits.upload_timeout)

    async def submit(self, text: str) -> None:
        """Take one text frame: refuse it unparsed, or start answering it."""
        if len(text) > self.frame_limit:
            raise OversizedFrame(len(text))
        limits = self._limits
        now = limits.now()
        size = len(text)
        refusal: str | None = None
        if (len(self._in_flight) >= limits.max_in_flight
                or not limits.requests.allow(self.ctx.origin, now)):
            refusal = RateLimited.default_message
        elif not limits.bytes.allow(self.site, now, size):
            refusal = "too much data from this site; try again later"
        elif size > limits.max_frame_bytes and not _is_document_method(text):
            # Large frames are read for the document methods only; this one is answered,
            # unparsed, and the connection stays open.
            await self.send_quietly(too_large(peek_id(text), limits.max_frame_bytes,
                                              "the frame"))
            return
        elif self.uploads is not None and peek_member(text, "method") == UPLOAD_METHOD:
            await self._open_upload(text, now)
            return
        else:
            refusal = limits.pending.reserve(self.site, size, granted=self.granted)
        if refusal is not None:
            await self.send_quietly(jsonrpc.error_frame(peek_id(text),
                                                        RateLimited(refusal).to_wire()))
            return
        # The uploads a request may name: those complete when its frame came, whatever
        # arrives while it is parsed.
        complete = self.uploads.complete_ids() if self.uploads is not None else frozenset()
        task = asyncio.create_task(self._answer(text, size, complete))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _answer(self, text: str, size: int, complete: frozenset[str]) -> None:
        taken: TakenUploads | None = None
        binary: BinaryAnswer | None = None
        try:
            message = await self._limits.parser.parse(text)
            del text  # the parsed request is all that is needed from here on
            if isinstance(message, jsonrpc.Request):
                try:
                    taken = take_uploads(message, self.uploads, complete)
                except UploadRefused as exc:
                    message = jsonrpc.ErrorReply(
                        jsonrpc.INVALID_PARAMS, jsonrpc.invalid_params_frame(message.id, str(exc)))
            if isinstance(message, jsonrpc.Request):
                refused = prepare_document(message, self._limits.max_document_bytes)
                if refused is not None:
                    message = jsonrpc.ErrorReply(TOO_LARGE_CODE, refused)
            if isinstance(message, jsonrpc.ErrorReply):
                log.debug("refused a frame from %s: code %d", self.ctx.origin, message.code)
                reply: str | None = message.text
            elif isinstance(message, jsonrpc.Notification):
                reply = None  # the contract defines no client notification
            elif taken is not None and taken.document is not None \
                    and self._send_with_binary is not None:
                binary = BinaryAnswer(message.method, taken.document)
                # Its signed document may stay in parts (the upload + the update): the
                # answer sends only the update, and nobody joins the two.
                with allow_appended(taken.document):
                    taken.document = None
                    reply = await self.dispatcher.handle_request(self.ctx, message,
                                                                 result_frame=binary.frame)
            else:
                reply = await self.dispatcher.handle_request(self.ctx, message)
            self._refresh_frame_limit()
            del message  # the document's bytes, once the request is answered
            if reply is not None:
                await self._send_answer(reply, binary)
            # The answer and the signed document, before the trim below returns their pages.
            reply = binary = None
        finally:
            self._limits.pending.release(self.site, size)
            if taken is not None and self.uploads is not None:
                for upload_id in taken.ids:
                    self.uploads.forget(upload_id)
            if size >= TRIM_AFTER_BYTES or (taken is not None
                                            and taken.size >= TRIM_AFTER_BYTES):
                release_free_memory()

    async def _send_answer(self, reply: str, binary: BinaryAnswer | None) -> None:
        tail = binary.tail if binary is not None else None
        if tail is None or not len(tail) or self._send_with_binary is None:
            await self.send_quietly(reply)
            return
        with contextlib.suppress(*self._closed_errors):
            await self._send_with_binary(reply, tail)

    # --- uploads -------------------------------------------------------------------------

    def upload_key(self, upload_id: str) -> str:
        """The pending ledger's key for one upload: apart from the site's requests, so the
        request that uses an upload is not held back by it (the site's uploads have their
        own budget, ``SessionLimits.site_uploads``), and within the overall caps the
        requests' frames count in too. No site name has a space."""
        return f"{self.site} upload {upload_id}"

    def _unbook_upload(self, upload: Upload) -> None:
        self._limits.pending.release(self.upload_key(upload.id), upload.size)
        self._limits.site_uploads.release(self.site, upload.size)

    async def _open_upload(self, text: str, now: float) -> None:
        """Answer ``document.upload`` before the next frame is read. In order: a grant
        (before any binary byte is read), the params, the size, this connection's count,
        the site's byte rate, the site's uploads together, and the overall pending cap."""
        assert self.uploads is not None
        limits = self._limits
        message = await limits.parser.parse(text)
        if isinstance(message, jsonrpc.ErrorReply):
            await self.send_quietly(message.text)
            return
        if isinstance(message, jsonrpc.Notification):
            return  # no id to answer with: nothing is opened
        if not limits.has_grant(self.ctx.origin, self.ctx):
            await self._refuse(message.id, PermissionDenied(
                "document.upload needs a grant for this origin (e.g. certificates.select "
                "first)"))
            return
        params: object = message.params
        if not isinstance(params, dict):
            await self.send_quietly(jsonrpc.invalid_params_frame(
                message.id, "params must be an object"))
            return
        try:
            size = DocumentUploadParams.model_validate(params, by_alias=True,
                                                       by_name=False).size
        except ValidationError as exc:
            await self.send_quietly(jsonrpc.invalid_params_frame(message.id, exc))
            return
        refusal: TooLarge | RateLimited | None = None
        if size > limits.max_document_bytes:
            refusal = TooLarge(f"the document is over the limit of "
                               f"{limits.max_document_bytes} bytes",
                               limit=limits.max_document_bytes)
        elif self.uploads.held >= limits.max_pending_uploads:
            refusal = TooLarge(f"this connection holds {self.uploads.held} uploads, the "
                               "most it may: use or close them first",
                               limit=limits.max_pending_uploads)
        elif not limits.bytes.allow(self.site, now, size):
            refusal = RateLimited("too much data from this site; try again later")
        elif not limits.site_uploads.reserve(self.site, size):
            refusal = RateLimited("too much data pending for this site")
        else:
            upload = Upload(new_upload_id(), size, deadline=now + limits.upload_timeout)
            booked = limits.pending.reserve(self.upload_key(upload.id), size, granted=True)
            if booked is not None:
                limits.site_uploads.release(self.site, size)
                refusal = RateLimited(booked)
        if refusal is not None:
            await self._refuse(message.id, refusal)
            return
        self.uploads.open(upload)
        await self.send_quietly(jsonrpc.result_frame(
            message.id, DocumentUploadResult(upload=upload.id)))

    async def _refuse(self, msg_id: jsonrpc.JsonRpcId,
                      error: PermissionDenied | TooLarge | RateLimited) -> None:
        await self.send_quietly(jsonrpc.error_frame(msg_id, error.to_wire()))

    def receive_binary(self, frame: bytes) -> str | None:
        """Take one binary frame; the reason to close the connection with 1008 when it is
        not one the connection announced."""
        if self.uploads is None:
            return "binary frames are not accepted on this transport"
        return self.uploads.receive(frame)

    def expire_uploads(self) -> str | None:
        """Forget the uploads not used in time (``[server] upload_timeout``); the reason to
        close the connection with 1008 when one of them was still incomplete. The
        transport calls this before each frame and when ``upload_wait`` has passed."""
        if self.uploads is None:
            return None
        held = self.uploads.held
        violation = self.uploads.expire(self._limits.now())
        if self.uploads.held < held:
            log.info("%d upload(s) of %s expired unused", held - self.uploads.held,
                     self.ctx.origin)
        return violation

    def upload_wait(self) -> float:
        """Seconds until the next upload may expire: the transport's timer sleeps this long
        (with no upload held, a whole timeout: one announced meanwhile expires later)."""
        deadline = self.uploads.next_deadline() if self.uploads is not None else None
        if deadline is None:
            return self._limits.upload_timeout
        return max(0.0, deadline - self._limits.now())

    def _refresh_frame_limit(self) -> None:
        """After each answer: a grant given meanwhile (e.g. "allow once") admits large
        frames from the next frame on."""
        self.granted = self._limits.has_grant(self.ctx.origin, self.ctx)
        limit = self._limits.limit_for(self.granted)
        if limit != self.frame_limit:
            self.frame_limit = limit
            if self._on_frame_limit is not None:
                self._on_frame_limit(limit)

    async def send_quietly(self, text: str) -> None:
        """Send, ignoring a peer that has gone: its requests die with it."""
        with contextlib.suppress(*self._closed_errors):
            await self._send(text)

    async def close(self) -> None:
        for task in self._in_flight:
            task.cancel()
        if self.uploads is not None:
            held = self.uploads.held
            self.uploads.close()
            if held:
                release_free_memory()
        await self.ctx.close()


# --- reading the id of a frame that will not be parsed ----------------------------------------

PEEK_CHARS = 512  # ids are at most 256 characters; the SDK writes "id" second
_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
TOO_LARGE_CODE = TooLarge.code


def peek_id(text: str) -> jsonrpc.JsonRpcId | None:
    """The frame's top-level ``id`` if it lies within the first ``PEEK_CHARS`` characters,
    else None."""
    value = peek_member(text, "id")
    return value if isinstance(value, str | int) and _plausible_id(value) else None


def peek_member(text: str, name: str) -> object:
    """The frame's top-level member ``name`` if it lies within the first ``PEEK_CHARS``
    characters, else None. Reads the top-level members in order and stops at anything
    unexpected, so the cost is bounded whatever the frame holds."""
    head = text[:PEEK_CHARS]

    def skip(i: int) -> int:
        match = _WS.match(head, i)
        return match.end() if match else i

    try:
        i = skip(0)
        if head[i:i + 1] != "{":
            return None
        i = skip(i + 1)
        while True:
            key, i = _DECODER.raw_decode(head, i)
            i = skip(i)
            if not isinstance(key, str) or head[i:i + 1] != ":":
                return None
            value, i = _DECODER.raw_decode(head, skip(i + 1))
            if key == name:
                return value
            i = skip(i)
            if head[i:i + 1] != ",":
                return None
            i = skip(i + 1)
    except (ValueError, RecursionError):  # a value cut off by the peek, or not JSON
        return None


def _is_document_method(text: str) -> bool:
    method = peek_member(text, "method")
    return isinstance(method, str) and method in DOCUMENT_FIELDS


# Methods whose frames carry documents in a few long strings (a sign.batch of 100
# invoices is 600 KB in about 400 values): parsed inline, like the document methods', as
# long as they have few values; the frame parser process would copy the frame twice
# more and add a process hop (16-20 ms for the batch bench's frame).
INLINE_PARSED_METHODS = frozenset(DOCUMENT_FIELDS) | {"sign.batch", "sign.xml", "sign.asic"}


def _parses_inline(text: str) -> bool:
    method = peek_member(text, "method")
    return isinstance(method, str) and method in INLINE_PARSED_METHODS


def _plausible_id(value: object) -> bool:
    """The ids ``jsonrpc.parse_frame`` accepts: a short string or a safe integer."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) <= 2**53 - 1
    return isinstance(value, str) and len(value) <= jsonrpc.MAX_ID_CHARS


# --- parsing, inline or in a worker process ---------------------------------------------------

# Frames at least this long, or with at least this many commas (each JSON value in a
# container but the first needs one), may cost the parser more than a few milliseconds:
# an 8 MB frame of 2.6 M empty lists took 4.5 s inline. Those are parsed in the worker.
OFF_LOOP_CHARS = 64 * 1024
# A full sign.hashes (1,000 hashes) parses inline in ~0.25 ms; the worst frame with
# 1,100 values (empty lists) took ~1.5 ms here.
OFF_LOOP_COMMAS = 1100
# Params objects with more members than their model has fields plus this margin are
# refused before pydantic sees them: validating 600 k unknown members is itself costly.
EXTRA_MEMBERS_MARGIN = 8


def is_costly(text: str) -> bool:
    """Whether to parse in the worker. A document method's frame with few values is
    parsed inline however long: the JSON parser goes through one long string at several
    hundred MB/s, while the worker would cost two more copies of the frame (there and
    back) and the daemon's memory for them."""
    if len(text) < OFF_LOOP_CHARS:
        return text.count(",") >= OFF_LOOP_COMMAS
    return text.count(",") >= OFF_LOOP_COMMAS or not _parses_inline(text)


def parse_checked(text: str) -> jsonrpc.Request | jsonrpc.Notification | jsonrpc.ErrorReply:
    """``jsonrpc.parse_frame`` plus a cheap bound on the params' member count."""
    message = jsonrpc.parse_frame(text)
    if not isinstance(message, jsonrpc.Request) or not isinstance(message.params, dict):
        return message
    spec = METHODS.get(message.method)
    if spec is not None and len(message.params) > (len(spec.params.model_fields)
                                                   + EXTRA_MEMBERS_MARGIN):
        return jsonrpc.ErrorReply(jsonrpc.INVALID_PARAMS, jsonrpc.invalid_params_frame(
            message.id, "params has more members than the method takes"))
    return message


def parse_and_validate(text: str) -> jsonrpc.Request | jsonrpc.Notification | jsonrpc.ErrorReply:
    """In the worker: parse, and validate a request's params against the contract, so what
    goes back to the event loop is either a short error or a request whose shape the
    contract bounds (never millions of values to unpickle)."""
    message = parse_checked(text)
    if not isinstance(message, jsonrpc.Request):
        return message
    spec = METHODS.get(message.method)
    if spec is None:
        # Only the contract's methods are served by the running agent.
        return jsonrpc.ErrorReply(jsonrpc.METHOD_NOT_FOUND, jsonrpc.method_not_found_frame(
            message.id, message.method))
    if not isinstance(message.params, dict):
        return jsonrpc.ErrorReply(jsonrpc.INVALID_PARAMS, jsonrpc.invalid_params_frame(
            message.id, "params must be an object"))
    try:
        # An upload's bytes are not here: its reference stands in for them.
        spec.params.model_validate(with_placeholders(message.method, message.params),
                                   by_alias=True, by_name=False)
    except ValidationError as exc:
        return jsonrpc.ErrorReply(jsonrpc.INVALID_PARAMS,
                                  jsonrpc.invalid_params_frame(message.id, exc))
    return message


WORKER_MEMORY_BYTES = 2 * 1024**3  # address space of the parsing worker


def _limit_worker() -> None:
    """In the worker: bound its memory, so a hostile frame costs the worker, not the
    machine (the frame limit already bounds the input to a few MiB)."""
    from agent.platform.process_limits import limit_this_process  # a job object on Windows

    limit_this_process(cpu_seconds=None, memory_bytes=WORKER_MEMORY_BYTES)


class FrameParser:
    """Parses frames: cheap ones inline, costly ones in one worker process, started on
    first use (spawned, not forked: the daemon has threads and open sockets)."""

    def __init__(self, *, costly: Callable[[str], bool] = is_costly) -> None:
        self._costly = costly
        self._pool: ProcessPoolExecutor | None = None
        self.off_loop = 0  # frames parsed in the worker, for tests and diagnostics

    async def parse(self, text: str) -> jsonrpc.Request | jsonrpc.Notification | jsonrpc.ErrorReply:
        if not self._costly(text):
            return parse_checked(text)
        self.off_loop += 1
        from concurrent.futures.process import BrokenProcessPool

        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                initializer=_limit_worker)
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, parse_and_validate, text)
        except Exception as exc:  # the worker died, or ran out of memory on this frame
            log.warning("the frame parser worker failed on a frame (%s)", type(exc).__name__)
            if isinstance(exc, BrokenProcessPool):
                self.close()  # the next costly frame starts a new worker
            return jsonrpc.ErrorReply(InternalError.code, jsonrpc.error_frame(
                peek_id(text), InternalError().to_wire()))

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
