"""The document formats (CAdES, PAdES, XAdES) on the one signing use case.

``sign_document`` runs ``agent.app.signing.sign_with_key`` and, inside it, prepares what
a format builder needs — the chain, the trust anchors, the time-stamping service, the
signer's status (all before any dialog) — and hands the builder a ``FormatJob`` whose
``sign`` is the request's single use of the key.

Which TSA serves a request is decided here, not in the builders: it depends on the
requesting origin and the administrator's configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from agent.app.certs import build_chain
from agent.app.core import AgentCore
from agent.app.signing import KeyUse, SigningRequest, mechanism_for, sign_with_key
from agent.config import FormatsConfig
from agent.errors import AgentError, InternalError, Unsupported
from agent.formats.anchors import load_anchors
from agent.formats.job import DigestSigner, FormatJob
from agent.formats.network import NetworkSettings, issuer_fingerprint
from agent.protocol.dispatch import CallContext
from agent.protocol.enums import EcdsaEncoding, HashAlgorithm

log = logging.getLogger(__name__)

Builder = Callable[[FormatJob], Awaitable[bytes]]

HASH_BY_NAME = {"sha256": HashAlgorithm.SHA256, "sha384": HashAlgorithm.SHA384,
                "sha512": HashAlgorithm.SHA512}
NAME_BY_HASH = {v: k for k, v in HASH_BY_NAME.items()}


def network_settings(config: FormatsConfig) -> NetworkSettings:
    return NetworkSettings(timeout=config.network_timeout, proxy=config.http_proxy,
                           ocsp_by_issuer=dict(config.ocsp_by_issuer))


def choose_tsa(config: FormatsConfig, origin: str, page_url: str | None,
               issuer: str | None = None) -> str:
    """The TSA for this request: the administrator's mapping for the origin, then for the
    signer's issuing CA (``issuer``: its fingerprint), the configured default, and — when
    allowed — the page's own ``tsaUrl``."""
    if origin in config.tsa_by_origin:
        return str(config.tsa_by_origin[origin])
    if issuer is not None and issuer in config.tsa_by_issuer:
        return str(config.tsa_by_issuer[issuer])
    if config.tsa_url:
        return str(config.tsa_url)
    if not config.allow_page_tsa:
        raise Unsupported("no time-stamping service is configured for this origin")
    if page_url is None:
        raise Unsupported("this level needs a time-stamping service (tsaUrl)")
    return page_url


def _issuer_fingerprint(cert: x509.Certificate, chain: list[x509.Certificate]) -> str | None:
    """The signer's issuing CA as ``tsa_by_issuer`` names it, when the agent has it."""
    if not chain or chain[0].subject != cert.issuer:
        return None
    return issuer_fingerprint(chain[0].public_bytes(Encoding.DER))


def digest_signer(use: KeyUse) -> DigestSigner:
    """The builder's ``FormatJob.sign``: one digest through the request's key use."""

    async def sign(digest: bytes, digest_algorithm: str, *, ecdsa_raw: bool = False) -> bytes:
        hash_algorithm = HASH_BY_NAME.get(digest_algorithm.lower())
        if hash_algorithm is None:
            raise Unsupported(f"digest algorithm {digest_algorithm} is not supported")
        mechanism = mechanism_for(use.entry, None, hash_algorithm,
                                  EcdsaEncoding.RAW if ecdsa_raw else EcdsaEncoding.DER)
        [signature] = await use.sign([digest], mechanism)
        return signature

    return sign


async def sign_document(core: AgentCore, ctx: CallContext, config: FormatsConfig,
                        request: SigningRequest, *, page_tsa_url: str | None,
                        needs_tsa: bool, build: Builder) -> bytes:
    network = network_settings(config)

    async def produce(use: KeyUse) -> bytes:
        from agent.formats.status import check_signer  # pyHanko: only when a format runs

        cert = use.certificate
        anchors = load_anchors(config.trust_anchors)
        token_certs = [x509.load_der_x509_certificate(e.der)
                       for e in await core.stores.certificates()
                       if e.token.token_id == use.entry.token.token_id]
        chain = build_chain(cert, [*token_certs, *anchors.others, *anchors.roots])
        tsa = choose_tsa(config, ctx.origin, page_tsa_url,
                         _issuer_fingerprint(cert, chain)) if needs_tsa else None
        await check_signer(cert, chain, anchors, network, config.revocation)
        job = FormatJob(sign=digest_signer(use), certificate=cert, chain=chain,
                        anchors=anchors, network=network, tsa_url=tsa,
                        document_name=request.display.document_name)
        try:
            return await build(job)
        except AgentError:
            raise
        except Exception:
            log.exception("%s failed inside the format library", request.method)
            raise InternalError("the signature could not be built") from None

    return await sign_with_key(core, ctx, request, produce)
