"""The document formats (CAdES, PAdES, XAdES) on the one signing use case.

``sign_document`` runs ``agent.app.signing.sign_with_key`` and, inside it, prepares what
a format builder needs — the chain, the trust anchors, the time-stamping service, the
signer's status (all before any dialog) — and hands the builder a ``FormatJob`` whose
``sign`` is the request's single use of the key.

Which TSA serves a request is decided here, not in the builders: it depends on the
requesting origin and the administrator's configuration.  A TSA the page chose is the
exception the administrator must allow (``allow_page_tsa``, ``page_tsa_allowed``); the job
then carries an ``AddressGuard`` (only public addresses for what the page influenced, no
redirects), and its failures are counted per handle (``max_tsa_failures_per_handle``), so a
page cannot use the agent to probe a network.

What the confirmation dialog shows of the document is made here too (``document_preview``,
``xml_preview``): the document as the page sent it, or for XML the indented text of what
the signature covers; a document over ``[ui] preview_bytes`` shows its size and SHA-256
only.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit
from weakref import WeakKeyDictionary

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from agent.app.certs import build_chain
from agent.app.core import AgentCore
from agent.app.dialogs import Preview, PreviewKind
from agent.app.signing import (
    DOCUMENT_NAME_LIMIT,
    KeyUse,
    PreviewSource,
    SigningRequest,
    mechanism_for,
    one_line,
    sign_with_key,
)
from agent.config import FormatsConfig
from agent.errors import AgentError, InternalError, NetworkError, RateLimited, Unsupported
from agent.formats.anchors import Anchors, load_anchors
from agent.formats.handover import wait_for_handover
from agent.formats.isolation import WorkerPreviews, build_together, document_workers
from agent.formats.job import DigestSigner, FormatJob
from agent.formats.network import (
    AddressGuard,
    NetworkSettings,
    ResponseLimits,
    certificate_urls,
    issuer_fingerprint,
    url_key,
)
from agent.formats.preview import indented_xml_isolated, sniff
from agent.protocol.dispatch import CallContext
from agent.protocol.enums import EcdsaEncoding, HashAlgorithm

log = logging.getLogger(__name__)

Builder = Callable[[FormatJob], Awaitable[bytes]]

HASH_BY_NAME = {"sha256": HashAlgorithm.SHA256, "sha384": HashAlgorithm.SHA384,
                "sha512": HashAlgorithm.SHA512}
NAME_BY_HASH = {v: k for k, v in HASH_BY_NAME.items()}


def _content_preview(data: bytes, limit: int, kind: PreviewKind | None) -> Preview:
    shown = len(data) <= limit
    found = kind or PreviewKind(sniff(data, whole=shown))
    return Preview(found, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                   data=data if shown and found is not PreviewKind.BINARY else b"")


def document_preview(data: bytes, kind: PreviewKind | None = None) -> PreviewSource:
    """The document as the page sent it: as ``kind``, or as what its content is (PDF,
    text, else binary: size and SHA-256 only)."""

    async def previews(limit: int) -> tuple[Preview, ...]:
        # Hashing (and sniffing) up to ``preview_bytes`` of content: off the event loop.
        return (await asyncio.to_thread(_content_preview, data, limit, kind),)

    return previews


@dataclass(frozen=True)
class XmlPreview:
    """The indented text of what the XAdES signature covers, made in a preview process
    (``agent.formats.preview``) under the document workers' limits; without its text
    when the document is over the limit or the process gives none.  In a batch, the
    worker that signs the items makes their texts (``batch_previews``)."""

    document: bytes
    enveloped: bool

    async def __call__(self, limit: int) -> tuple[Preview, ...]:
        text = b""
        if len(self.document) <= limit:
            text = await indented_xml_isolated(self.document, limit,
                                               document_workers().limits,
                                               enveloped=self.enveloped) or b""
        return (await self.preview(text),)

    async def preview(self, text: bytes) -> Preview:
        if len(self.document) <= INLINE_HASH_BYTES:  # a thread costs more than the hash
            digest = hashlib.sha256(self.document).hexdigest()
        else:
            digest = await asyncio.to_thread(
                lambda: hashlib.sha256(self.document).hexdigest())
        return Preview(PreviewKind.XML, size=len(self.document), sha256=digest, data=text)


# Documents hashed on the event loop for their preview (about 0.1 ms); larger ones in a
# thread.
INLINE_HASH_BYTES = 256 * 1024


def xml_preview(document: bytes, *, enveloped: bool) -> PreviewSource:
    return XmlPreview(document, enveloped)


def network_settings(config: FormatsConfig) -> NetworkSettings:
    limits = ResponseLimits(tsa=config.max_tsa_response_bytes,
                            ocsp=config.max_ocsp_response_bytes, crl=config.max_crl_bytes,
                            certificate=config.max_certificate_bytes)
    return NetworkSettings(timeout=config.network_timeout, proxy=config.http_proxy,
                           ocsp_by_issuer=dict(config.ocsp_by_issuer), limits=limits)


@dataclass(frozen=True)
class TsaChoice:
    url: str
    from_page: bool  # a page chose it: guarded addresses, failures counted


def choose_tsa(config: FormatsConfig, origin: str, page_url: str | None,
               issuer: str | None = None) -> TsaChoice:
    """The TSA for this request: the administrator's mapping for the origin, then for the
    signer's issuing CA (``issuer``: its fingerprint), the configured default, and — when
    allowed (``allow_page_tsa``, and ``page_tsa_allowed`` when not empty) — the page's own
    ``tsaUrl``.  A page URL the administrator listed exactly counts as configured."""
    if origin in config.tsa_by_origin:
        return TsaChoice(str(config.tsa_by_origin[origin]), False)
    if issuer is not None and issuer in config.tsa_by_issuer:
        return TsaChoice(str(config.tsa_by_issuer[issuer]), False)
    if config.tsa_url:
        return TsaChoice(str(config.tsa_url), False)
    if not config.allow_page_tsa:
        raise Unsupported("no time-stamping service is configured for this origin")
    if page_url is None:
        raise Unsupported("this level needs a time-stamping service (tsaUrl)")
    if not config.page_tsa_allowed:
        return TsaChoice(page_url, True)
    key = url_key(page_url)
    for entry in config.page_tsa_allowed:
        if "://" in entry:
            if key is not None and key == url_key(entry):
                return TsaChoice(page_url, False)
        elif _host_matches(page_url, entry):
            return TsaChoice(page_url, True)
    raise Unsupported("this time-stamping service is not allowed here")


def _host_matches(url: str, pattern: str) -> bool:
    """``tsa.example`` matches that host only; ``*.example.az`` its sub-domains."""
    try:
        host = (urlsplit(url).hostname or "").rstrip(".").lower()
    except ValueError:
        return False
    pattern = pattern.lower()
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def configured_urls(config: FormatsConfig) -> set[str]:
    """Every service address the administrator wrote down."""
    urls = {*config.tsa_by_origin.values(), *config.tsa_by_issuer.values(),
            *config.ocsp_by_issuer.values(),
            *(e for e in config.page_tsa_allowed if "://" in e)}
    if config.tsa_url:
        urls.add(config.tsa_url)
    return urls


def page_tsa_guard(config: FormatsConfig, trusted_certs: list[x509.Certificate]
                   ) -> AddressGuard:
    """The guard for a job whose TSA a page chose: the administrator's addresses and those
    the signer's own certificates and the anchors name stay reachable as they are."""
    return AddressGuard.for_page_tsa(
        configured_urls(config) | certificate_urls(trusted_certs),
        private_allowed=config.page_tsa_private_addresses)


class TsaFailures:
    """Failed requests with a page-chosen TSA, per connection and handle (``None``: the
    picker chose the certificate).  Forgotten with the connection; at most ``KEYS`` keys
    per connection (handles are few: each needs a pick by the user)."""

    KEYS = 256

    def __init__(self) -> None:
        self._counts: WeakKeyDictionary[CallContext, OrderedDict[str | None, int]] = \
            WeakKeyDictionary()

    def _of(self, ctx: CallContext) -> OrderedDict[str | None, int]:
        counts = self._counts.get(ctx)
        if counts is None:
            counts = self._counts[ctx] = OrderedDict()
            ctx.on_close(lambda: self._forget(ctx))
        return counts

    def _forget(self, ctx: CallContext) -> None:
        self._counts.pop(ctx, None)

    def check(self, ctx: CallContext, handle: str | None, limit: int) -> None:
        if self._of(ctx).get(handle, 0) >= limit:
            raise RateLimited("too many failed time-stamp requests for this certificate")

    def failed(self, ctx: CallContext, handle: str | None) -> None:
        counts = self._of(ctx)
        counts[handle] = counts.get(handle, 0) + 1
        counts.move_to_end(handle)
        while len(counts) > self.KEYS:
            counts.popitem(last=False)


tsa_failures = TsaFailures()


def _issuer_fingerprint(cert: x509.Certificate, chain: list[x509.Certificate]) -> str | None:
    """The signer's issuing CA as ``tsa_by_issuer`` names it, when the agent has it."""
    if not chain or chain[0].subject != cert.issuer:
        return None
    return issuer_fingerprint(chain[0].public_bytes(Encoding.DER))


def digest_signer(use: KeyUse) -> DigestSigner:
    """The builders' ``FormatJob.sign``: their digests through the request's key use (one
    job's, or every item's of a batch, which ``sign_many`` signs together)."""
    return _KeySigner(use)


class _KeySigner:
    """``digest_signer``'s signer.  A module-level class on purpose: a class made per call
    is a reference cycle (a class refers to itself), and through the ``use`` its methods
    closed over it kept the request — its document and preview, tens of MiB — alive
    until the next full garbage collection (issue 17, bar 5)."""

    def __init__(self, use: KeyUse) -> None:
        self.use = use

    async def confirm(self) -> None:
        """The dialog and the login, before the builder takes its signing time."""
        await self.use.confirm()

    async def __call__(self, digest: bytes, digest_algorithm: str, *,
                       ecdsa_raw: bool = False) -> bytes:
        [signature] = await self.sign_many([(digest, digest_algorithm, ecdsa_raw)])
        return signature

    async def sign_many(self, requests: Sequence[tuple[bytes, str, bool]]) -> list[bytes]:
        """``(digest, algorithm, ecdsa_raw)`` each; one token call per mechanism."""
        signatures: dict[int, bytes] = {}
        groups: dict[tuple[str, bool], list[int]] = {}
        for index, (_, algorithm, raw) in enumerate(requests):
            groups.setdefault((algorithm.lower(), raw), []).append(index)
        for (algorithm, raw), indexes in groups.items():
            hash_algorithm = HASH_BY_NAME.get(algorithm)
            if hash_algorithm is None:
                raise Unsupported(f"digest algorithm {algorithm} is not supported")
            mechanism = mechanism_for(self.use.entry, None, hash_algorithm,
                                      EcdsaEncoding.RAW if raw else EcdsaEncoding.DER)
            made = await self.use.sign([requests[i][0] for i in indexes], mechanism)
            signatures.update(zip(indexes, made, strict=True))
        return [signatures[i] for i in range(len(requests))]


async def check_status(cert: x509.Certificate, chain: list[x509.Certificate],
                       anchors: Anchors, network: NetworkSettings, mode: str) -> None:
    """``agent.formats.status.check_signer``, imported only when it has something to ask:
    pyHanko's validator costs the daemon about 14 MB for good once imported."""
    if mode == "off" or (not anchors.roots and mode != "enforce"):
        if mode == "warn":
            log.warning("signer status not checked: no [formats] trust_anchors configured")
        return
    from agent.formats.status import check_signer

    await check_signer(cert, chain, anchors, network, mode)


@dataclass(frozen=True)
class DocumentItem:
    """One document of a request: what its builder makes with its job, and the page's
    choices the job depends on."""

    build: Builder
    page_tsa_url: str | None
    needs_tsa: bool
    document_name: str | None = None


async def sign_document(core: AgentCore, ctx: CallContext, config: FormatsConfig,
                        request: SigningRequest, *, page_tsa_url: str | None,
                        needs_tsa: bool, build: Builder) -> bytes:
    """One document signed (``sign.cms``, ``sign.pdf``, ``sign.xml``); inside
    ``sign_in_batch``, one item of the batch, signed with the others."""
    item = DocumentItem(build, page_tsa_url, needs_tsa, request.display.document_name)
    plan = _planning.get()
    if plan is not None:
        return await plan.add(request, item)
    [signed] = await sign_documents(core, ctx, config, request, [item], batch=False)
    return signed


# --- batches (sign.batch) ---------------------------------------------------------------------

class _BatchPlan:
    """The items of a batch as their methods hand them to ``sign_document``, in the
    entries' order whatever order they come in."""

    def __init__(self, expected: int) -> None:
        self.slots: list[tuple[SigningRequest, DocumentItem] | None] = [None] * expected
        self.results: list[asyncio.Future[bytes]] = [
            asyncio.get_running_loop().create_future() for _ in range(expected)]
        self.missing = expected
        self.complete: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def add(self, request: SigningRequest, item: DocumentItem) -> asyncio.Future[bytes]:
        index = _item_index.get()
        if self.slots[index] is not None:
            raise InternalError("a batch item asked for a second signature")
        self.slots[index] = (request, item)
        self.missing -= 1
        if self.missing == 0:
            self.complete.set_result(None)
        return self.results[index]

    def filled(self) -> list[tuple[SigningRequest, DocumentItem]]:
        return [slot for slot in self.slots if slot is not None]


_planning: contextvars.ContextVar[_BatchPlan | None] = contextvars.ContextVar(
    "document_batch_plan", default=None)
_item_index: contextvars.ContextVar[int] = contextvars.ContextVar("document_batch_item")


@dataclass(frozen=True)
class BatchEntry:
    """One item of a batch: its name for the dialog, and its single-document method
    (``sign.cms`` and the others, given the batch's handle) to run."""

    name: str
    method: Callable[[], Coroutine[Any, Any, Any]]


async def sign_in_batch(core: AgentCore, ctx: CallContext, config: FormatsConfig,
                        request: SigningRequest, entries: Sequence[BatchEntry]) -> list[Any]:
    """Every entry's method, with ONE confirmation + PIN dialog listing every item, one
    login and one document worker for all of them; their results in order, or the first
    failure and no result at all.

    Each method runs as it does alone — its checks, its preview, its builder — up to
    ``sign_document``, which hands its item over here instead of signing it.  An item
    that fails before that fails the batch before any dialog."""
    plan = _BatchPlan(len(entries))
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[Any]] = []
    for index, entry in enumerate(entries):
        context = contextvars.copy_context()
        context.run(_planning.set, plan)
        context.run(_item_index.set, index)
        tasks.append(loop.create_task(entry.method(), context=context))
    try:
        await wait_for_handover(tasks, plan.complete,
                                "a batch item finished without being signed")
        planned = plan.filled()
        sources = [(entry.name, item_request.previews)
                   for entry, (item_request, _) in zip(entries, planned, strict=True)]
        share = core.preview_bytes // max(1, len(sources))
        # The XML items' texts come from the worker that signs them (with its "confirm").
        from_worker = WorkerPreviews({
            index: (source.document, source.enveloped, share)
            for index, (_, source) in enumerate(sources)
            if isinstance(source, XmlPreview) and len(source.document) <= share})
        batch_request = replace(
            request,
            # Every item's page text that goes into its signature, in the items' order.
            signed_fields=tuple(f for item_request, _ in planned
                                for f in item_request.signed_fields),
            digest_algorithm=request.digest_algorithm or planned[0][0].digest_algorithm,
            previews=batch_previews(sources, from_worker))
        signed = await sign_documents(core, ctx, config, batch_request,
                                      [item for _, item in planned], batch=True,
                                      worker_previews=from_worker)
        for future, document in zip(plan.results, signed, strict=True):
            future.set_result(document)
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        for future in plan.results:
            future.cancel()


# Item previews made at once (hashing, sniffing: threads).
PREVIEW_CONCURRENCY = 4


def batch_previews(sources: Sequence[tuple[str, PreviewSource | None]],
                   from_worker: WorkerPreviews) -> PreviewSource:
    """Every item's preview, named, in order.  The items share ``[ui] preview_bytes``
    evenly: the dialog gets no more than for one document, and an item over its share
    shows its size and SHA-256 only.  The XML items' texts are ``from_worker``'s: the
    batch's document worker makes them while it prepares the items (one parse of the
    page's XML in isolation per item, no preview process), and the daemon has them when
    the worker asks to confirm."""

    async def previews(limit: int) -> tuple[Preview, ...]:
        share = limit // max(1, len(sources))
        texts: dict[int, bytes] = {}
        if from_worker.wanted:
            texts = await asyncio.shield(from_worker.texts)
        gate = asyncio.Semaphore(PREVIEW_CONCURRENCY)

        async def one(index: int, source: PreviewSource | None) -> tuple[Preview, ...]:
            if source is None:
                return ()
            if isinstance(source, XmlPreview):
                asked = from_worker.wanted.get(index)
                # A limit other than the one the worker was given: no text rather than more.
                fits = asked is not None and asked[2] <= share
                return (await source.preview(texts.get(index, b"") if fits else b""),)
            async with gate:
                return await source(share)

        made = await asyncio.gather(*(one(i, source) for i, (_, source) in enumerate(sources)))
        return tuple(replace(p, name=one_line(name, DOCUMENT_NAME_LIMIT))
                     for (name, _), item in zip(sources, made, strict=True) for p in item)

    return previews


async def sign_documents(core: AgentCore, ctx: CallContext, config: FormatsConfig,
                         request: SigningRequest, items: Sequence[DocumentItem], *,
                         batch: bool, worker_previews: WorkerPreviews | None = None
                         ) -> list[bytes]:
    """Every item signed with one confirmation, one PIN and one token session, all or
    nothing.  ``batch``: the items are built together in one document worker
    (``agent.formats.isolation.build_together``), which also makes ``worker_previews``;
    else the one item is built alone."""
    network = network_settings(config)
    previews = _Prefetched(request.previews) if request.previews is not None else None
    request = replace(request, previews=previews)

    async def produce(use: KeyUse) -> list[bytes]:
        if previews is not None:
            # Consent is given and the certificate found: the dialog's previews are made
            # while the document worker prepares, not after it.
            previews.start(core.preview_bytes)
        cert = use.certificate
        anchors = load_anchors(config.trust_anchors)
        token_certs = [x509.load_der_x509_certificate(e.der)
                       for e in await core.stores.certificates()
                       if e.token.token_id == use.entry.token.token_id]
        chain = build_chain(cert, [*token_certs, *anchors.others, *anchors.roots])
        issuer = _issuer_fingerprint(cert, chain)
        jobs: list[FormatJob] = []
        page_tsa = False
        signer = digest_signer(use)  # one for every item: their signatures go together
        for item in items:
            tsa = choose_tsa(config, ctx.origin, item.page_tsa_url,
                             issuer) if item.needs_tsa else None
            job_network = network
            if tsa is not None and tsa.from_page:
                # Before anything is contacted: a page past its failures learns nothing more.
                tsa_failures.check(ctx, request.handle, config.max_tsa_failures_per_handle)
                job_network = network.guarded(page_tsa_guard(
                    config, [cert, *chain, *anchors.others, *anchors.roots]))
                page_tsa = True
            jobs.append(FormatJob(sign=signer, certificate=cert, chain=chain,
                                  anchors=anchors, network=job_network,
                                  tsa_url=tsa.url if tsa is not None else None,
                                  document_name=item.document_name))
        await check_status(cert, chain, anchors, network, config.revocation)
        try:
            if batch:
                return await build_together([functools.partial(item.build, job)
                                             for item, job in zip(items, jobs, strict=True)],
                                            worker_previews)
            return [await items[0].build(jobs[0])]
        except NetworkError:
            if page_tsa:
                tsa_failures.failed(ctx, request.handle)
            raise
        except AgentError:
            raise
        except Exception:
            log.exception("%s failed inside the format library", request.method)
            raise InternalError("the signature could not be built") from None

    try:
        return await sign_with_key(core, ctx, request, produce, allowed=len(items))
    finally:
        if previews is not None:
            previews.close()


class _Prefetched:
    """A preview source started ahead of the dialog that shows it."""

    def __init__(self, source: PreviewSource) -> None:
        self.source = source
        self.task: asyncio.Task[tuple[Preview, ...]] | None = None
        self.limit = -1

    def start(self, limit: int) -> None:
        if self.task is None:
            self.limit = limit
            self.task = asyncio.ensure_future(self.source(limit))

    async def __call__(self, limit: int) -> tuple[Preview, ...]:
        if self.task is None or limit != self.limit:
            return await self.source(limit)
        return await asyncio.shield(self.task)

    def close(self) -> None:
        """The request is over: stop a preview the dialog never needed (a failed
        request; its error is not news), and let go of the source and its result, which
        hold the document (the request object may outlive the request in a log record
        or a traceback)."""
        task, self.task = self.task, None
        self.source = _no_preview
        if task is None:
            return
        if not task.done():
            task.cancel()
        elif not task.cancelled():
            task.exception()


async def _no_preview(limit: int) -> tuple[Preview, ...]:
    return ()
