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
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit
from weakref import WeakKeyDictionary

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from agent.app.certs import build_chain
from agent.app.core import AgentCore
from agent.app.dialogs import Preview, PreviewKind
from agent.app.signing import (
    KeyUse,
    PreviewSource,
    SigningRequest,
    mechanism_for,
    sign_with_key,
)
from agent.config import FormatsConfig
from agent.errors import AgentError, InternalError, NetworkError, RateLimited, Unsupported
from agent.formats.anchors import Anchors, load_anchors
from agent.formats.isolation import document_workers
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


def xml_preview(document: bytes, *, enveloped: bool) -> PreviewSource:
    """The indented text of what the XAdES signature covers, made in a preview process
    (``agent.formats.preview``) under the document workers' limits; without its text
    when the document is over the limit or the process gives none."""

    async def previews(limit: int) -> tuple[Preview, ...]:
        digest = await asyncio.to_thread(lambda: hashlib.sha256(document).hexdigest())
        text = b""
        if len(document) <= limit:
            text = await indented_xml_isolated(document, limit, document_workers().limits,
                                               enveloped=enveloped) or b""
        return (Preview(PreviewKind.XML, size=len(document), sha256=digest, data=text),)

    return previews


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
    """The builder's ``FormatJob.sign``: one digest through the request's key use."""

    class Signer:
        async def confirm(self) -> None:
            """Contract placeholder: confirmed with the digest today (D3 moves it)."""

        async def __call__(self, digest: bytes, digest_algorithm: str, *,
                           ecdsa_raw: bool = False) -> bytes:
            hash_algorithm = HASH_BY_NAME.get(digest_algorithm.lower())
            if hash_algorithm is None:
                raise Unsupported(f"digest algorithm {digest_algorithm} is not supported")
            mechanism = mechanism_for(use.entry, None, hash_algorithm,
                                      EcdsaEncoding.RAW if ecdsa_raw else EcdsaEncoding.DER)
            [signature] = await use.sign([digest], mechanism)
            return signature

    return Signer()


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


async def sign_document(core: AgentCore, ctx: CallContext, config: FormatsConfig,
                        request: SigningRequest, *, page_tsa_url: str | None,
                        needs_tsa: bool, build: Builder) -> bytes:
    network = network_settings(config)

    async def produce(use: KeyUse) -> bytes:
        cert = use.certificate
        anchors = load_anchors(config.trust_anchors)
        token_certs = [x509.load_der_x509_certificate(e.der)
                       for e in await core.stores.certificates()
                       if e.token.token_id == use.entry.token.token_id]
        chain = build_chain(cert, [*token_certs, *anchors.others, *anchors.roots])
        tsa = choose_tsa(config, ctx.origin, page_tsa_url,
                         _issuer_fingerprint(cert, chain)) if needs_tsa else None
        job_network = network
        if tsa is not None and tsa.from_page:
            # Before anything is contacted: a page past its failures learns nothing more.
            tsa_failures.check(ctx, request.handle, config.max_tsa_failures_per_handle)
            job_network = network.guarded(page_tsa_guard(
                config, [cert, *chain, *anchors.others, *anchors.roots]))
        await check_status(cert, chain, anchors, network, config.revocation)
        job = FormatJob(sign=digest_signer(use), certificate=cert, chain=chain,
                        anchors=anchors, network=job_network,
                        tsa_url=tsa.url if tsa is not None else None,
                        document_name=request.display.document_name)
        try:
            return await build(job)
        except NetworkError:
            if tsa is not None and tsa.from_page:
                tsa_failures.failed(ctx, request.handle)
            raise
        except AgentError:
            raise
        except Exception:
            log.exception("%s failed inside the format library", request.method)
            raise InternalError("the signature could not be built") from None

    return await sign_with_key(core, ctx, request, produce)
