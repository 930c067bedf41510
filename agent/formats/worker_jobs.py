"""Inside a document worker: the request's ``FormatJob`` (or a batch's, one per item)
rebuilt from what the daemon sent, and the builder for its format.  The job's ``sign``
asks the daemon (which owns the dialogs and the token) over the pipe: to confirm, once
per request, then for its one signature (a batch's items' signatures go together)."""

from __future__ import annotations

import asyncio
import concurrent.futures.thread  # noqa: F401  (asyncio.to_thread's pool: loaded idle)
import contextlib
import functools
from collections import deque
from typing import Any, BinaryIO

from cryptography import x509

from agent.errors import AgentError, InternalError
from agent.formats import worker_wire
from agent.formats.anchors import Anchors
from agent.formats.document_caps import parse_xml_counted
from agent.formats.job import FormatJob, KeylessJob

# Loaded while the worker is idle (``agent.formats.worker._warm_imports`` imports this
# module), not on a batch's path: the ECDSA signer loads cryptography's OpenSSL backend
# on first use, and the pipe's reader thread the thread pool.
with contextlib.suppress(ImportError):
    import cryptography.hazmat.backends.openssl.backend  # noqa: F401

# Items of a batch prepared at once before the confirmation (parsing, trial time-stamps,
# validation data), and built at once after it: the rest wait, so a batch of a hundred
# documents does not ask a hundred things of a TSA at the same moment, nor holds a
# hundred signed trees in memory.
PREPARING_AT_ONCE = 4
SIGNING_AT_ONCE = 32
# Digests sent to the daemon in one exchange as soon as this many wait: the token signs
# them while the worker builds the next ones (half of SIGNING_AT_ONCE: two groups in
# flight).
SIGN_GROUP = 16


class DaemonChannel:
    """The pipe to the daemon, shared by the items of one request: one confirmation for
    all of them, once every item is ready to be signed (all of them checked and
    prepared: a batch whose last item is malformed shows no dialog), with the previews
    the daemon asked for; then the items' signatures, asked for in groups.

    The confirmation blocks (every item waits for it).  The signatures do not: a group
    goes out once ``SIGN_GROUP`` digests wait, or when no other item is about to ask, and
    the daemon's answers are read by a thread, so the worker builds the next items while
    the daemon and the token sign the last ones.  The daemon answers in order."""

    def __init__(self, fd: int, stdin: BinaryIO, items: int) -> None:
        self.fd = fd
        self.stdin = stdin
        self.waiting = items  # items not yet ready to be signed
        self.failed = False   # an item failed: no confirmation, ever
        self.confirmed = asyncio.Event()
        self.previews: dict[int, bytes] = {}  # item → its preview's text (UTF-8)
        self._queue: list[tuple[dict[str, Any], asyncio.Future[bytes]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._in_flight: deque[list[tuple[dict[str, Any], asyncio.Future[bytes]]]] = deque()
        self._reader: asyncio.Task[None] | None = None

    def ready(self) -> None:
        """One more item is ready to be signed (or needs no signature); the last one
        asks the daemon to confirm."""
        self.waiting -= 1
        if self.waiting == 0 and not self.failed:
            message: dict[str, Any] = {"type": "confirm"}
            if self.previews:
                message["previews"] = [{"item": index, "text": worker_wire.b64(text)}
                                       for index, text in sorted(self.previews.items())]
                self.previews = {}
            worker_wire.write_answer(self.fd, message)
            reply = worker_wire.read_request(self.stdin)
            if reply is None or reply.get("op") != "confirmed":
                raise InternalError("the daemon did not answer 'confirm'")
            self.confirmed.set()

    def fail(self) -> None:
        self.failed = True

    async def sign(self, item: int, digest: bytes, digest_algorithm: str,
                   ecdsa_raw: bool) -> bytes:
        signature: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._queue.append(({"item": item, "digest": worker_wire.b64(digest),
                             "algorithm": digest_algorithm, "ecdsaRaw": ecdsa_raw},
                            signature))
        if len(self._queue) >= SIGN_GROUP:
            self._send()
        elif self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush_when_idle())
        return await signature

    async def _flush_when_idle(self) -> None:
        """Once no other item gets to its signature any more (its work in between is
        synchronous), one exchange for every waiting one."""
        try:
            queued = -1
            while queued != len(self._queue):
                queued = len(self._queue)
                await asyncio.sleep(0)
        finally:
            self._flusher = None
        if self._queue:
            self._send()

    def _send(self) -> None:
        group, self._queue = self._queue, []
        try:
            worker_wire.write_answer(self.fd, {"type": "sign", "items": [r for r, _ in group]})
        except BaseException as exc:
            _fail(group, exc)
            return
        self._in_flight.append(group)
        if self._reader is None:
            self._reader = asyncio.ensure_future(self._read_signatures())

    async def _read_signatures(self) -> None:
        """The daemon's answers, one per group sent, in order (read in a thread: the
        event loop keeps building)."""
        try:
            while self._in_flight:
                try:
                    reply = await asyncio.to_thread(worker_wire.read_request, self.stdin)
                    if reply is None or reply.get("op") != "signatures":
                        raise InternalError("the daemon did not answer 'sign'")
                    values = reply["values"]
                    if len(values) != len(self._in_flight[0]):
                        raise InternalError("the daemon sent another number of signatures")
                except BaseException as exc:  # each waiting item gets it (nobody awaits us)
                    while self._in_flight:
                        _fail(self._in_flight.popleft(), exc)
                    return
                for (_, signature), value in zip(self._in_flight.popleft(), values,
                                                 strict=True):
                    if not signature.done():
                        signature.set_result(value)
        finally:
            self._reader = None


def _fail(group: list[tuple[dict[str, Any], asyncio.Future[bytes]]],
          exc: BaseException) -> None:
    for _, signature in group:
        if not signature.done():
            signature.set_exception(exc)


class PipeSigner:
    """``FormatJob.sign`` in the worker for one item: ``confirm`` waits until the daemon
    confirmed (the dialog, the PIN, the login), the digest goes to the daemon and the
    signature comes back, once.  In a batch, the item holds a place among those
    ``preparing`` until it is ready, then one among those ``signing``."""

    def __init__(self, channel: DaemonChannel, item: int = 0,
                 preparing: asyncio.Semaphore | None = None,
                 signing: asyncio.Semaphore | None = None) -> None:
        self.channel = channel
        self.item = item
        self.preparing = preparing
        self.signing = signing
        self.holding: asyncio.Semaphore | None = None
        self.arrived = False
        self.used = False

    async def take(self, place: asyncio.Semaphore | None) -> None:
        if place is not None:
            await place.acquire()
            self.holding = place

    def leave(self) -> None:
        if self.holding is not None:
            self.holding.release()
            self.holding = None

    async def confirm(self) -> None:
        if self.arrived:
            return
        self.arrived = True
        self.leave()  # let another item get ready meanwhile
        self.channel.ready()
        await self.channel.confirmed.wait()
        await self.take(self.signing)

    async def __call__(self, digest: bytes, digest_algorithm: str, *,
                       ecdsa_raw: bool = False) -> bytes:
        if self.used:
            raise InternalError("a second signature was asked for in one request")
        self.used = True
        await self.confirm()
        return await self.channel.sign(self.item, digest, digest_algorithm, ecdsa_raw)


@functools.lru_cache(maxsize=64)
def _certificate(der: bytes) -> x509.Certificate:
    """A batch's items carry the same certificates: each is loaded once (they are
    immutable)."""
    return x509.load_der_x509_certificate(der)


def _certificates(ders: list[bytes]) -> list[x509.Certificate]:
    return [_certificate(der) for der in ders]


def job_from_request(job: dict[str, Any], sign: PipeSigner) -> FormatJob:
    return FormatJob(
        sign=sign, certificate=_certificate(job["certificate"]),
        chain=_certificates(job["chain"]),
        anchors=Anchors(roots=_certificates(job["roots"]), others=_certificates(job["others"])),
        network=job["network"], tsa_url=job["tsa_url"], document_name=job["document_name"])


def keyless_job(job: dict[str, Any]) -> KeylessJob:
    return KeylessJob(
        anchors=Anchors(roots=_certificates(job["roots"]), others=_certificates(job["others"])),
        network=job["network"], tsa_url=job["tsa_url"])


async def run_job(request: dict[str, Any], fd: int, stdin: BinaryIO) -> bytes:
    kind, args, caps = request["kind"], request["args"], request["caps"]
    if request["job"].get("keyless"):
        if kind == "extend":
            from agent.formats.extend_here import run_extend

            return await run_extend(keyless_job(request["job"]), caps=caps, **args)
        if kind == "asic-list":
            from agent.formats.asic import list_asic_here

            return await list_asic_here(caps=caps, **args)
        if kind == "verify":
            from agent.verify.worker import run_verify

            return await run_verify(keyless_job(request["job"]), caps=caps, **args)
        raise InternalError(f"unknown keyless job {kind!r}")
    job = job_from_request(request["job"], PipeSigner(DaemonChannel(fd, stdin, 1)))
    return await build(kind, job, args, caps)


async def run_batch(request: dict[str, Any], fd: int, stdin: BinaryIO) -> list[bytes]:
    """The items of a ``sign.batch``, built together: one confirmation once every item is
    ready, then each item's signature; the documents in item order, or the first
    failure (with its item's index) and nothing else."""
    items, caps = request["items"], request["caps"]
    channel = DaemonChannel(fd, stdin, len(items))
    preparing = asyncio.Semaphore(PREPARING_AT_ONCE)
    signing = asyncio.Semaphore(SIGNING_AT_ONCE)
    previews = {index: (enveloped, limit)
                for index, enveloped, limit in request.get("previews", ())}

    async def one(index: int, item: dict[str, Any]) -> bytes:
        signer = PipeSigner(channel, index, preparing, signing)
        await signer.take(preparing)
        try:
            args = item["args"]
            if index in previews:
                # One parse, counted against the caps as it goes, for the preview and
                # the signature (the same bytes).
                parsed = parse_xml_counted(args["document"], caps)
                args = {**args, "parsed": parsed}
                text = xml_preview(parsed, *previews[index])
                if text is not None:
                    channel.previews[index] = text
            document = await build(item["kind"], job_from_request(item["job"], signer),
                                   args, caps)
        except BaseException as exc:
            channel.fail()
            if isinstance(exc, AgentError):
                exc.data.setdefault("item", index)
            raise
        finally:
            signer.leave()
        if not signer.arrived:  # built without a signature: it holds nobody up
            signer.arrived = True
            channel.ready()
        return document

    return list(await asyncio.gather(*(one(i, item) for i, item in enumerate(items))))


def xml_preview(parsed: Any, enveloped: bool, limit: int) -> bytes | None:
    """What the dialog shows of an XML item (the text ``agent.formats.preview.indented_xml``
    makes, as a single document's preview process shows it), made here from the parse of
    the bytes this worker signs; None (size and SHA-256 only) when it gives none."""
    from agent.formats.preview import indented_tree

    try:
        return indented_tree(parsed, limit, enveloped=enveloped)
    except Exception:  # a DOCTYPE, say: the build will say why
        return None


async def build(kind: str, job: FormatJob, args: dict[str, Any], caps: Any) -> bytes:
    """One document with its format's builder."""
    if kind == "pdf":
        from agent.formats.pades import build_pades_here

        return await build_pades_here(job, caps=caps, **args)
    if kind == "xml":
        from agent.formats.xades import build_xades_here

        return await build_xades_here(job, caps=caps, **args)
    if kind == "cms":
        from agent.formats.cades import build_cades_here

        return await build_cades_here(job, **args)
    if kind == "asic":
        from agent.formats.asic import build_asic_here

        return await build_asic_here(job, caps=caps, **args)
    raise InternalError(f"unknown document kind {kind!r}")
