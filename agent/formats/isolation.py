"""The daemon's side of document workers: every document a page sends is parsed and
prepared in a process of its own (``agent.formats.worker``), under CPU-time and memory
limits and a wall-clock timeout, so no document can stall the daemon or another site.

Design:

* a worker is ``python -m agent.formats.worker`` started with
  ``asyncio.create_subprocess_exec`` (as PKCS#11 workers are): a fresh interpreter that
  inherits none of the daemon's threads, locks or descriptors (``fork`` of a threaded
  daemon could deadlock), sets its own limits before reading anything, and speaks a
  length-prefixed protocol on its pipes (``worker_wire``) — the daemon never unpickles
  what a worker says; a job's documents travel as raw frames beside its pickle, and a
  signed document that begins with the page's comes back as the bytes after it
  (``worker_payload``);
* one worker per request, never shared, never reused: a hostile document's leftovers
  (and the CPU seconds it burnt, which ``RLIMIT_CPU`` counts per process) never reach the
  next request; the worker is killed and reaped when its request ends.  A ``sign.batch``
  is one request: its items are built in one worker (``run_batch``), under the same
  limits for all of them, which the method bounds in number and bytes;
* after the first document, ``warm_workers`` idle workers are kept started, so a
  document does not wait for Python and pyHanko to load (about half a second); a
  small document's spare starts beside it, a large one's when it asks to confirm, a
  batch's once the batch is done (both keep the CPU busy, and a starting spare would
  slow them down);
* at most ``max_workers`` documents at once; one more is answered BUSY at once rather
  than queued;
* the wall-clock ``prepare_timeout`` applies before the confirmation and, afresh, after
  it and after each signature; the time the user spends in the dialog is not counted
  (the worker is idle then).  The worker asks to confirm once its documents are ready,
  and only then builds what it signs, with the signing time (D3 of issue 14);
* a batch's XML previews are made by the worker that signs the batch, from the very
  bytes it signs, and travel with its "confirm" (``WorkerPreviews``): the daemon asked
  for each of them, with its size limit, and refuses anything else.  A preview from the
  signing worker is no less trustworthy than one from a process of its own: both come
  from parsing the page's bytes in isolation, and a worker subverted by a document
  could sign other bytes whatever a separate process showed.

A worker that runs out of CPU time or memory, or is killed for time, ends its request
with TOO_LARGE; a worker that dies otherwise ends it with INTERNAL.  Either way the next
document gets a fresh worker and the daemon never noticed more than a closed pipe.

Windows and macOS have no ``RLIMIT_AS``/``RLIMIT_CPU`` the way Linux does: the worker
reports that it runs unlimited there (``apply_limits``), the timeout and the structural
caps still hold, and a job object is the Windows issue's part.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import agent
from agent.errors import (
    AgentError,
    Busy,
    CertificateInvalid,
    InternalError,
    NetworkError,
    PermissionDenied,
    RateLimited,
    TooLarge,
    Unsupported,
)
from agent.formats import worker_payload, worker_wire
from agent.formats.document_caps import StructureCaps
from agent.formats.handover import wait_for_handover
from agent.formats.job import FormatJob, KeylessJob, confirm
from agent.formats.worker import EXIT_OUT_OF_MEMORY
from agent.platform.process_limits import EXIT_TIME_QUOTA

if TYPE_CHECKING:
    from agent.config import DocumentsConfig

log = logging.getLogger(__name__)

_WORKER_MODULE = "agent.formats.worker"
_DIGEST_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64}
# What a worker may report as the request's error; anything else becomes INTERNAL.  A
# builder that raises a new kind of error must be listed here.
_WORKER_ERRORS: dict[str, type[AgentError]] = {cls.reason: cls for cls in (
    Unsupported, TooLarge, NetworkError, CertificateInvalid, PermissionDenied, RateLimited)}
_LOGGER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,99}")
_MAX_MESSAGE = 500
_MAX_LOG = 8000
_MAX_LOG_RECORDS = 200  # per worker: a subverted one cannot flood the agent's log


DEFAULT_MAX_BATCH_ITEMS = 100
DEFAULT_MAX_BATCH_BYTES = 100 * 1024 * 1024  # as [server] max_document_bytes


@dataclass(frozen=True)
class WorkerLimits:
    cpu_seconds: int = 30
    memory_mb: int = 1024
    prepare_timeout: float = 120.0
    max_workers: int = 4
    warm_workers: int = 1
    caps: StructureCaps = field(default_factory=StructureCaps)
    # sign.batch: items of one batch, and their documents' bytes together (one worker
    # builds them all, under the limits above).
    max_batch_items: int = DEFAULT_MAX_BATCH_ITEMS
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES


def limits_from_config(config: DocumentsConfig) -> WorkerLimits:
    return WorkerLimits(
        cpu_seconds=config.worker_cpu_seconds, memory_mb=config.worker_memory_mb,
        prepare_timeout=config.prepare_timeout, max_workers=config.max_workers,
        warm_workers=config.warm_workers,
        max_batch_items=config.max_batch_items, max_batch_bytes=config.max_batch_bytes,
        caps=StructureCaps(
            xref_entries_per_kib=config.max_xref_entries_per_kib,
            xref_entries_slack=config.max_xref_entries_slack,
            pdf_objects=config.max_pdf_objects, page_tree_nodes=config.max_page_tree_nodes,
            page_tree_depth=config.max_page_tree_depth, form_fields=config.max_form_fields,
            xml_namespace_declarations=config.max_xml_namespace_declarations,
            xml_elements=config.max_xml_elements,
            container_files=config.max_container_files,
            container_entries=config.max_container_entries,
            container_unpacked_bytes=config.max_container_unpacked_bytes,
            container_ratio=config.max_container_ratio,
            container_name_bytes=config.max_container_name_bytes,
            verified_signatures=config.max_verified_signatures))


class WorkerDied(Exception):
    """The worker's pipe closed or carried garbage; ``code`` is its exit status."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"document worker ended with {code}")
        self.code = code


# How much of a worker's answer the daemon buffers before it stops reading the pipe (twice
# this). asyncio's default (64 KiB) made reading a signed 50 MB document back a ping-pong
# of pausing and resuming the pipe that took seconds.
_PIPE_BUFFER = 4 * 1024 * 1024


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    # The worker must import this very package, even when run from a source tree.
    root = str(Path(agent.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    # glibc reserves 64 MiB of address space per malloc arena; under RLIMIT_AS a few
    # helper threads (aiohttp's resolver) would eat the budget without using it.
    env["MALLOC_ARENA_MAX"] = "2"
    return env


def _clean(text: object, limit: int, *, lines: bool = False) -> str:
    """A worker's text for the page or the log: control characters escaped (a worker
    cannot forge log lines), length capped."""
    out = []
    for ch in str(text)[:limit]:
        if ch == "\n" and lines:
            out.append("\n    | ")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
    return "".join(out)


class Worker:
    """One started worker process, used for one document."""

    def __init__(self, proc: asyncio.subprocess.Process, limited: bool) -> None:
        self.proc = proc
        self.limited = limited
        self.log_records = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    async def start(cls, limits: WorkerLimits) -> Worker:
        level = logging.getLogger().getEffectiveLevel()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", _WORKER_MODULE, str(limits.cpu_seconds),
            str(limits.memory_mb), str(level),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env=_worker_env(), limit=_PIPE_BUFFER)
        _widen_pipe(proc.stdin)
        worker = cls(proc, False)
        try:
            ready = await worker.next_answer()
        except BaseException:  # cancelled too (a spare being retired): reap the process
            worker.retire()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(proc.wait(), 2.0)
            raise
        if ready.get("type") != "ready":
            worker.retire()
            raise WorkerDied(None)
        worker.limited = bool(ready.get("limited"))
        return worker

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(worker_wire.encode_request(message))

    async def send_job(self, message: dict[str, Any]) -> None:
        """The job, its documents as raw frames (``worker_payload``) written a slice at a
        time as the worker reads them, so the pipe transport never holds a copy of a
        whole document.  A worker that went away is noticed by the next read."""
        stdin = self.proc.stdin
        assert stdin is not None
        head, documents = worker_payload.encode_job(message)
        try:
            stdin.write(head)
            for document in documents:
                for piece in worker_payload.document_frames(document):
                    stdin.write(piece)
                    await stdin.drain()
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            return

    async def next_answer(self) -> dict[str, Any]:
        """The worker's next frame that is not a log record (those go to our log)."""
        assert self.proc.stdout is not None
        try:
            while True:
                header = await self.proc.stdout.readexactly(worker_wire.HEADER_SIZE)
                body = await self.proc.stdout.readexactly(worker_wire.frame_length(header))
                answer = worker_wire.decode_answer(body)
                if answer.get("type") != "log":
                    return answer
                self.log_records += 1
                if self.log_records <= _MAX_LOG_RECORDS:
                    _relog(answer)
                elif self.log_records == _MAX_LOG_RECORDS + 1:
                    log.warning("document worker %d logs too much; the rest is dropped",
                                self.pid)
        except (asyncio.IncompleteReadError, ConnectionError, worker_wire.FrameError):
            code = await self.wait_ended()
            raise WorkerDied(code) from None

    async def read_result(self, size: object) -> bytes:
        """The raw frame of ``size`` bytes that a "done" answer announces."""
        assert self.proc.stdout is not None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InternalError("a worker announced a malformed result")
        try:
            header = await self.proc.stdout.readexactly(worker_wire.HEADER_SIZE)
            if worker_wire.frame_length(header) != size:
                raise InternalError("a worker sent a result of another size than announced")
            return await self.proc.stdout.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError, worker_wire.FrameError):
            code = await self.wait_ended()
            raise WorkerDied(code) from None

    async def wait_ended(self) -> int | None:
        """The exit status of a worker whose pipe closed (killed if it lingers)."""
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(self.proc.wait(), 5.0)
        self.retire()
        return await self.proc.wait()

    def retire(self) -> None:
        """Kill the worker if it still runs; its exit is reaped by asyncio's watcher."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        if self.proc.stdin is not None:
            self.proc.stdin.close()


# The pipe to a worker holds this much (Linux; 64 KiB by default, 1 MiB the most an
# unprivileged process may ask): a document goes through in fewer wake-ups of both sides.
_PIPE_SIZE = 1024 * 1024


def _widen_pipe(stdin: asyncio.StreamWriter | None) -> None:
    try:
        import fcntl

        pipe = stdin.get_extra_info("pipe") if stdin is not None else None
        if pipe is not None:
            fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    except (ImportError, AttributeError, OSError):  # not Linux, or over pipe-max-size
        pass


def _relog(record: dict[str, Any]) -> None:
    name = str(record.get("name", ""))
    if not _LOGGER_NAME.fullmatch(name):
        name = _WORKER_MODULE
    level = record.get("level")
    level = min(max(level, logging.DEBUG), logging.CRITICAL) \
        if isinstance(level, int) else logging.WARNING
    logger = logging.getLogger(name)
    if logger.isEnabledFor(level):
        logger.log(level, "%s", _clean(record.get("message", ""), _MAX_LOG, lines=True))


def error_from_worker(answer: dict[str, Any]) -> AgentError:
    """The worker's typed error rebuilt on this side, from a short list of kinds and
    with its text and data cleaned: the worker has read a hostile document."""
    cls = _WORKER_ERRORS.get(str(answer.get("reason")))
    if cls is None:
        return InternalError("the signature could not be built")
    data = answer.get("data")
    plain = {str(k)[:40]: (_clean(v, 200) if isinstance(v, str) else v)
             for k, v in (data.items() if isinstance(data, dict) else ())
             if isinstance(v, str | int | float | bool) and str(k).isidentifier()}
    return cls(_clean(answer.get("message", ""), _MAX_MESSAGE) or None,
               **dict(list(plain.items())[:8]))


def _death(code: int | None) -> AgentError:
    """What a worker's end without an answer means for the request."""
    # SIGXCPU: the soft CPU limit; SIGKILL: the hard one (or the kernel's OOM killer);
    # Windows: the job's time limit (agent/platform/process_limits.py).
    out_of_limits = {EXIT_OUT_OF_MEMORY, EXIT_TIME_QUOTA}
    for name in ("SIGXCPU", "SIGKILL"):  # POSIX only
        number = getattr(signal, name, None)
        if number is not None:
            out_of_limits.add(-number)
    if code in out_of_limits:
        return TooLarge("the document needs more time or memory than allowed")
    log.warning("a document worker ended with status %s", code)
    return InternalError("the document worker stopped")


def _der(cert: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    der: bytes = cert.public_bytes(Encoding.DER)
    return der


def job_payload(job: FormatJob | KeylessJob,
                ders: dict[int, bytes] | None = None) -> dict[str, Any]:
    """The job's facts as the worker needs them (its ``sign`` stays here).  ``ders``: a
    batch's certificates already encoded, by object: its items share them, so each is
    encoded once and pickled once (the same bytes object), not once per item."""
    if ders is not None and isinstance(job, FormatJob):
        def der(cert: Any) -> bytes:
            return ders.get(id(cert)) or ders.setdefault(id(cert), _der(cert))

        return {"certificate": der(job.certificate), "chain": [der(c) for c in job.chain],
                "roots": [der(c) for c in job.anchors.roots],
                "others": [der(c) for c in job.anchors.others],
                "network": job.network, "tsa_url": job.tsa_url,
                "document_name": job.document_name}
    if isinstance(job, KeylessJob):
        return {"keyless": True, "roots": [_der(c) for c in job.anchors.roots],
                "others": [_der(c) for c in job.anchors.others],
                "network": job.network, "tsa_url": job.tsa_url}
    return {"certificate": _der(job.certificate), "chain": [_der(c) for c in job.chain],
            "roots": [_der(c) for c in job.anchors.roots],
            "others": [_der(c) for c in job.anchors.others],
            "network": job.network, "tsa_url": job.tsa_url,
            "document_name": job.document_name}


def _keyed(jobs: Sequence[FormatJob | KeylessJob], index: int) -> FormatJob:
    job = jobs[index]
    if isinstance(job, KeylessJob):
        raise InternalError("a worker asked to sign for a job that has no key")
    return job


async def _sign_together(jobs: Sequence[FormatJob | KeylessJob],
                         requests: list[tuple[int, bytes, str, bool]]) -> list[bytes]:
    """The signatures, in the requests' order: with one call when the items share a
    signer that can sign several digests (``sign_many``: one use of the token for the
    lot), else one by one."""
    signers = {id(_keyed(jobs, index).sign) for index, *_ in requests}
    first = _keyed(jobs, requests[0][0]).sign
    sign_many = getattr(first, "sign_many", None)
    if len(signers) == 1 and sign_many is not None:
        signatures: list[bytes] = await sign_many(
            [(digest, algorithm, raw) for _, digest, algorithm, raw in requests])
        return signatures
    return [await _keyed(jobs, index).sign(digest, algorithm, ecdsa_raw=raw)
            for index, digest, algorithm, raw in requests]


@dataclass
class WorkerPreviews:
    """The XML previews a batch's worker makes for the dialog (``sign.batch``): for each
    item index that wants one, the document it must be made of, whether the signature is
    enveloped, and the most bytes its text may have.  ``texts`` is settled when the
    worker asks to confirm (before the dialog), with the texts it made; an item without
    one shows its size and SHA-256 only."""

    wanted: dict[int, tuple[bytes, bool, int]]
    texts: asyncio.Future[dict[int, bytes]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())

    def deliver(self, texts: dict[int, bytes]) -> None:
        if not self.texts.done():
            self.texts.set_result(texts)


def checked_previews(answer: dict[str, Any], asked: dict[int, int]) -> dict[int, bytes]:
    """The previews a worker sent with its "confirm": only for items the daemon asked,
    each once, within its limit and UTF-8 (the dialog shows it as text).  Anything else
    is a worker that no longer follows the protocol: the request fails."""
    entries = answer.get("previews", [])
    if not isinstance(entries, list) or len(entries) > len(asked):
        raise InternalError("a worker sent malformed previews")
    texts: dict[int, bytes] = {}
    for entry in entries:
        index = entry.get("item") if isinstance(entry, dict) else None
        if not isinstance(index, int) or isinstance(index, bool) or index not in asked \
                or index in texts:
            raise InternalError("a worker sent a preview no item asked for")
        try:
            text = worker_wire.unb64(entry.get("text"))
            text.decode("utf-8")
        except (worker_wire.FrameError, UnicodeDecodeError):
            raise InternalError("a worker sent a malformed preview") from None
        if len(text) > asked[index]:
            raise InternalError("a worker sent a preview over its limit")
        texts[index] = text
    return texts


# Jobs whose documents together are at least this large start their spare worker once
# they ask to confirm, not beside their transfer and parse (on two cores, the spare's
# start-up took CPU from a 50 MB PDF's).
SPARE_AFTER_BYTES = 8 * 1024 * 1024


def _document_bytes(args: Mapping[str, Any] | None) -> int:
    return sum(len(v) for v in (args or {}).values() if isinstance(v, bytes))


def _split_results(data: bytes, sizes: object, count: int) -> list[bytes]:
    """A batch's documents, which the worker sent as one frame with their sizes."""
    if not isinstance(sizes, list) or len(sizes) != count or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in sizes) \
            or sum(sizes) != len(data):
        raise InternalError("a worker announced a malformed batch result")
    view = memoryview(data)
    out, start = [], 0
    for size in sizes:
        out.append(bytes(view[start:start + size]))
        start += size
    return out


class DocumentWorkers:
    """The daemon's document workers; see the module docstring."""

    def __init__(self, limits: WorkerLimits | None = None) -> None:
        self.limits = limits or WorkerLimits()
        self.active = 0
        self._spares: list[asyncio.Task[Worker]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started = 0  # workers started so far (for tests and diagnostics)
        self.current: set[Worker] = set()  # workers serving a document now
        self._reapers: set[asyncio.Future[int]] = set()

    def configure(self, limits: WorkerLimits) -> None:
        """New limits, for workers started from now on (idle ones are retired)."""
        self.limits = limits
        self._drop_spares()

    async def run(self, kind: str, job: FormatJob | KeylessJob, args: dict[str, Any]) -> bytes:
        """Build the signature of one document in a worker; see the module docstring."""
        [result] = await self._run({"op": "build", "kind": kind,
                                    "args": worker_payload.out_of_band(args),
                                    "job": job_payload(job)}, [job], documents=args)
        return result

    async def run_batch(self, items: Sequence[tuple[str, FormatJob, dict[str, Any]]],
                        previews: WorkerPreviews | None = None) -> list[bytes]:
        """Build several documents in one worker (``sign.batch``): one process and one
        confirmation for all of them, one signature per item, all or nothing.  The
        worker's limits hold for the whole batch, whose size the method bounds.
        ``previews``: the XML items' dialog previews, which the worker makes too."""
        asked: dict[int, int] = {}  # item → its preview's limit
        for index, (document, _, limit) in (previews.wanted.items()
                                            if previews is not None else ()):
            # Only of the bytes the item signs: the worker previews its own "document".
            if 0 <= index < len(items) and items[index][0] == "xml" \
                    and items[index][2].get("document") == document:
                asked[index] = limit
        ders: dict[int, bytes] = {}  # the items' certificates are the same objects
        message = {"op": "batch", "items": [
            {"kind": kind, "args": worker_payload.out_of_band(args),
             "job": job_payload(job, ders)}
            for kind, job, args in items],
            "previews": [[index, previews.wanted[index][1], limit]
                         for index, limit in asked.items()] if previews is not None else []}
        return await self._run(message, [job for _, job, _ in items],
                               (previews, asked) if previews is not None else None)

    async def _run(self, message: dict[str, Any], jobs: Sequence[FormatJob | KeylessJob],
                   previews: tuple[WorkerPreviews, dict[int, int]] | None = None, *,
                   documents: Mapping[str, Any] | None = None) -> list[bytes]:
        """``documents``: a single job's arguments as the builder gave them (its
        answer may name one that the signed document begins with)."""
        limits = self.limits
        if self.active >= limits.max_workers:
            raise Busy("too many documents are being prepared at once; try again")
        self.active += 1
        worker: Worker | None = None
        # A batch keeps the CPU busy: its spare starts once it is done, rather than
        # slowing it down by loading Python and pyHanko beside it.  A large document's
        # starts while the user reads the dialog: not beside its transfer and parse.
        batch = message["op"] == "batch"
        large = not batch and _document_bytes(documents) >= SPARE_AFTER_BYTES
        try:
            worker = await self._take(limits)
            self.current.add(worker)
            if not batch and not large:
                self._refill(limits)
            return await self._serve(worker, limits, message, jobs, previews,
                                     documents or {},
                                     on_confirm=functools.partial(self._refill, limits)
                                     if large else None)
        finally:
            self.active -= 1
            if (batch or large) and worker is not None:
                with contextlib.suppress(RuntimeError):
                    self._refill(limits)
            if worker is not None:
                self.current.discard(worker)
                reaper = self._retire(worker)
                task = asyncio.current_task()
                if task is None or not task.cancelling():
                    # Usually done already: the worker exits once it has answered.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(reaper), 2.0)

    def _retire(self, worker: Worker) -> asyncio.Future[int]:
        """Kill the worker and reap it in the background."""
        worker.retire()
        reaper = asyncio.ensure_future(worker.proc.wait())
        self._reapers.add(reaper)
        reaper.add_done_callback(self._reapers.discard)
        return reaper

    async def _serve(self, worker: Worker, limits: WorkerLimits, message: dict[str, Any],
                     jobs: Sequence[FormatJob | KeylessJob],
                     previews: tuple[WorkerPreviews, dict[int, int]] | None,
                     documents: Mapping[str, Any], *,
                     on_confirm: Callable[[], None] | None = None) -> list[bytes]:
        """The worker's requests until its answer: the confirmation (dialog, PIN, login:
        D3, before the builder takes its signing time) with a batch's previews, then the
        items' signatures (as many exchanges as the worker likes, each item once)."""
        try:
            await asyncio.wait_for(worker.send_job({**message, "caps": limits.caps}),
                                   limits.prepare_timeout)
        except TimeoutError:
            log.warning("a document worker read no document for %.0f s; killed",
                        limits.prepare_timeout)
            worker.retire()
            raise TooLarge("the document took too long to prepare") from None
        signed: set[int] = set()
        while True:
            answer = await self._phase(worker, limits)
            kind_of_answer = answer.get("type")
            if kind_of_answer == "confirm":
                if previews is not None:  # before the dialog, which shows them
                    wanted, asked = previews
                    wanted.deliver(checked_previews(answer, asked))
                if on_confirm is not None:
                    on_confirm()
                # The dialog and the token: here, in the daemon, with no clock running.
                await confirm(_keyed(jobs, 0).sign)
                worker.send({"op": "confirmed"})
            elif kind_of_answer == "sign":
                requests = self._sign_requests(answer, len(jobs), signed)
                signatures = await _sign_together(jobs, requests)
                worker.send({"op": "signatures", "values": signatures})
            elif kind_of_answer == "done":
                data = await worker.read_result(answer.get("bytes"))
                if message["op"] != "batch":
                    try:
                        return [worker_payload.joined_result(answer, documents, data)]
                    except worker_wire.FrameError:
                        raise InternalError("a worker announced a malformed result") from None
                return _split_results(data, answer.get("items"), len(jobs))
            elif kind_of_answer == "error":
                raise error_from_worker(answer)
            else:
                raise InternalError(
                    f"unexpected answer {_clean(kind_of_answer, 20)!r} from a worker")

    @staticmethod
    def _sign_requests(answer: dict[str, Any], count: int,
                       signed: set[int]) -> list[tuple[int, bytes, str, bool]]:
        """The items' digests a worker asks signatures for: each item once, each digest
        as long as its algorithm's."""
        items = answer.get("items")
        if not isinstance(items, list) or not items:
            raise InternalError("a worker asked for no signature")
        requests = []
        for request in items:
            if not isinstance(request, dict):
                raise InternalError("a worker asked to sign a malformed digest")
            index = request.get("item")
            if not isinstance(index, int) or isinstance(index, bool) \
                    or not 0 <= index < count or index in signed:
                raise InternalError("a worker asked for a signature no item needs")
            signed.add(index)
            digest = worker_wire.unb64(request.get("digest"))
            algorithm = str(request.get("algorithm", "")).lower()
            if _DIGEST_SIZES.get(algorithm) != len(digest):
                raise InternalError("a worker asked to sign a malformed digest")
            requests.append((index, digest, algorithm, request.get("ecdsaRaw") is True))
        return requests

    @staticmethod
    async def _phase(worker: Worker, limits: WorkerLimits) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(worker.next_answer(), limits.prepare_timeout)
        except TimeoutError:
            log.warning("a document worker took over %.0f s; killed", limits.prepare_timeout)
            worker.retire()
            raise TooLarge("the document took too long to prepare") from None
        except WorkerDied as died:
            raise _death(died.code) from None

    async def _take(self, limits: WorkerLimits) -> Worker:
        """A started worker: an idle spare if there is one, else a new one."""
        self._check_loop()
        while self._spares:
            spare = self._spares.pop(0)
            try:
                worker = await asyncio.wait_for(asyncio.shield(spare), limits.prepare_timeout)
            except (Exception, asyncio.CancelledError):
                if not spare.done():
                    spare.cancel()
                continue
            if worker.proc.returncode is None:
                return worker
        try:
            worker = await asyncio.wait_for(Worker.start(limits), limits.prepare_timeout)
        except (TimeoutError, WorkerDied, OSError) as exc:
            log.warning("a document worker could not be started: %s", type(exc).__name__)
            raise InternalError("the document worker could not be started") from None
        self.started += 1
        return worker

    def _refill(self, limits: WorkerLimits) -> None:
        while len(self._spares) < limits.warm_workers:
            self.started += 1
            spare = asyncio.ensure_future(Worker.start(limits))
            # A spare that failed to start is replaced in _take; its error is not news.
            spare.add_done_callback(lambda task: task.cancelled() or task.exception())
            self._spares.append(spare)

    def _check_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # spares of another (finished) event loop are useless
            self._drop_spares()
            self._loop = loop

    def _drop_spares(self) -> None:
        spares, self._spares = self._spares, []
        for spare in spares:
            if spare.done() and not spare.cancelled() and spare.exception() is None:
                # Possibly of a closed event loop: kill it, and ignore the loop's protest.
                with contextlib.suppress(ProcessLookupError, RuntimeError):
                    spare.result().retire()
            else:
                spare.cancel()

    async def close(self) -> None:
        """Retire the idle workers (the daemon is stopping)."""
        spares, self._spares = self._spares, []
        for spare in spares:
            spare.cancel()
            with contextlib.suppress(BaseException):
                worker = await spare
                worker.retire()
                await worker.proc.wait()
        for worker in list(self.current):
            self._retire(worker)
        if self._reapers:
            await asyncio.wait(list(self._reapers), timeout=5)


# No warm spares until the daemon configures the pool at start: a spare belongs to one
# event loop, and in-process users (tests, the bench) run many.
_workers = DocumentWorkers(WorkerLimits(warm_workers=0))


def document_workers() -> DocumentWorkers:
    """The daemon's one pool."""
    return _workers


def configure_document_workers(config: DocumentsConfig) -> None:
    """Apply the ``[documents]`` section (the daemon calls this at start)."""
    _workers.configure(limits_from_config(config))


async def close_document_workers() -> None:
    await _workers.close()


async def build_isolated(kind: str, job: FormatJob, args: dict[str, Any]) -> bytes:
    """One document in a worker; inside ``build_together``, one item of its batch."""
    collector = _collecting.get()
    if collector is not None:
        return await collector.add(kind, job, args)
    return await _workers.run(kind, job, args)


class _Collector:
    """The items of a ``build_together`` batch as their builders hand them over, each in
    its builder's place (the worker's item index is the batch's)."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.slots: list[tuple[str, FormatJob, dict[str, Any], asyncio.Future[bytes]] | None] \
            = [None] * expected
        self.missing = expected
        self.complete: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def items(self) -> list[tuple[str, FormatJob, dict[str, Any], asyncio.Future[bytes]]]:
        return [slot for slot in self.slots if slot is not None]

    def add(self, kind: str, job: FormatJob, args: dict[str, Any]) -> asyncio.Future[bytes]:
        index = _build_index.get()
        if self.slots[index] is not None:
            raise InternalError("a batch item asked for a second document")
        result: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.slots[index] = (kind, job, args, result)
        self.missing -= 1
        if self.missing == 0:
            self.complete.set_result(None)
        return result


_collecting: contextvars.ContextVar[_Collector | None] = contextvars.ContextVar(
    "document_batch", default=None)
_build_index: contextvars.ContextVar[int] = contextvars.ContextVar("document_batch_index")


async def build_together(builds: Sequence[Callable[[], Awaitable[bytes]]],
                         previews: WorkerPreviews | None = None) -> list[bytes]:
    """Run each builder (``build_pades``, ``build_xades``, ...), but build their documents
    in ONE worker (``DocumentWorkers.run_batch``): each builder checks its page's values
    and hands its document to ``build_isolated`` as usual, which collects it here.

    Collecting through the builders, rather than copying what each passes to its
    worker, keeps a batch item exactly what the single-document method makes."""
    collector = _Collector(len(builds))
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[bytes]] = []
    for index, build in enumerate(builds):
        context = contextvars.copy_context()
        context.run(_collecting.set, collector)
        context.run(_build_index.set, index)
        tasks.append(loop.create_task(_awaited(build), context=context))
    try:
        await wait_for_handover(tasks, collector.complete,
                                "a batch item was built without a worker")
        results = await _workers.run_batch([item[:3] for item in collector.items], previews)
        for (*_, future), result in zip(collector.items, results, strict=True):
            future.set_result(result)
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        for *_, future in collector.items:
            future.cancel()


async def _awaited(build: Callable[[], Awaitable[bytes]]) -> bytes:
    return await build()


async def run_keyless(kind: str, job: KeylessJob, args: dict[str, Any]) -> bytes:
    """A job without a key (``"extend"``, ``"verify"``) in a document worker, under the
    same limits as a signature; the worker's answer is its bytes."""
    return await _workers.run(kind, job, args)
