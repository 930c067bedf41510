"""Certificates and revocation data: trust anchors from the configuration, chains, a
pyhanko-certvalidator context whose OCSP/CRL/certificate fetches go over our session (so
our proxy, timeout and address guard), with OCSP responders configured per issuing CA, and
the validation data a B-LT signature embeds.

pyhanko-certvalidator's aiohttp fetchers read a whole answer with ``response.read()``
(decompressed, any size, after following redirects).  The three fetches are small, so
each is done here by ``agent.formats.network.fetch`` instead: the capped reader, a limit
per kind, no decompression, no redirect for a page-influenced address."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.authority import Authority
from pyhanko_certvalidator.errors import CertificateFetchError, CRLFetchError, OCSPFetchError
from pyhanko_certvalidator.fetchers.aiohttp_fetchers.cert_fetch_client import (
    AIOHttpCertificateFetcher,
)
from pyhanko_certvalidator.fetchers.aiohttp_fetchers.crl_client import AIOHttpCRLFetcher
from pyhanko_certvalidator.fetchers.aiohttp_fetchers.ocsp_client import AIOHttpOCSPFetcher
from pyhanko_certvalidator.fetchers.api import FetcherBackend, Fetchers, FetchLimits
from pyhanko_certvalidator.fetchers.common_utils import (
    ACCEPTABLE_CERT_DER_ALIASES,
    ACCEPTABLE_CERT_PEM_ALIASES,
    ACCEPTABLE_PKCS7_DER_ALIASES,
    ACCEPTABLE_STRICT_CERT_CONTENT_TYPES,
    FetchBudget,
    FetchKind,
    format_ocsp_request,
    ocsp_job_get_earliest,
    process_ocsp_response_data,
    unpack_cert_content,
)
from pyhanko_certvalidator.path import ValidationPath
from pyhanko_certvalidator.revinfo.validate_ocsp import verify_ocsp_response
from pyhanko_certvalidator.util import get_ocsp_urls

from agent.errors import AgentError, NetworkError
from agent.formats.anchors import Anchors
from agent.formats.network import FetchFailed, NetworkSettings, fetch

log = logging.getLogger(__name__)


def as_crypto(certs: Iterable[asn1_x509.Certificate]) -> list[x509.Certificate]:
    return [x509.load_der_x509_certificate(c.dump()) for c in certs]


def to_asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))


def validation_context(anchors: Anchors, extra: Iterable[x509.Certificate],
                       session: aiohttp.ClientSession, settings: NetworkSettings, *,
                       hard_fail: bool,
                       ocsps: Sequence[asn1_ocsp.OCSPResponse] = ()) -> ValidationContext:
    return ValidationContext(
        trust_roots=[to_asn1(c) for c in anchors.roots],
        other_certs=[to_asn1(c) for c in (*anchors.others, *extra)],
        allow_fetching=True, ocsps=list(ocsps),
        revocation_mode="hard-fail" if hard_fail else "soft-fail",
        fetcher_backend=SessionFetcherBackend(session, settings))


class SessionFetcherBackend(FetcherBackend):
    """pyhanko-certvalidator's aiohttp fetchers, all on our session (proxy, timeout,
    guard), each reading through the capped reader, the OCSP one asking the responder
    configured for the issuer when there is one."""

    def __init__(self, session: aiohttp.ClientSession, settings: NetworkSettings) -> None:
        self.session = session
        self.settings = settings

    def get_fetchers(self) -> Fetchers:
        budget = FetchBudget(FetchLimits())
        return Fetchers(
            ocsp_fetcher=IssuerOcspFetcher(self.session, self.settings, budget=budget),
            crl_fetcher=CappedCrlFetcher(self.session, self.settings, budget=budget),
            cert_fetcher=CappedCertificateFetcher(self.session, self.settings,
                                                  budget=budget))

    async def close(self) -> None:
        pass  # the session belongs to the request that opened it


class CappedCrlFetcher(AIOHttpCRLFetcher):
    def __init__(self, session: aiohttp.ClientSession, settings: NetworkSettings, *,
                 budget: FetchBudget) -> None:
        super().__init__(session, per_request_timeout=settings.timeout, budget=budget)
        self.settings = settings

    async def _single_fetch(self, url: str) -> Any:
        async def task() -> asn1_crl.CertificateList:
            self._charge(FetchKind.CRL)
            try:
                reply = await fetch(self.get_session(), self.settings, "crl", "GET", url,
                                    headers={"Accept": "application/pkix-crl"})
                data = reply.body
                if pem.detect(data):
                    _, _, data = pem.unarmor(data)
                return asn1_crl.CertificateList.load(data)
            except (FetchFailed, ValueError) as exc:
                log.info("CRL from %s: %s", url, getattr(exc, "why", type(exc).__name__))
                raise CRLFetchError(f"Failure to fetch CRL from URL {url}") from None

        return await self._post_fetch_task(url, task)  # type: ignore[no-untyped-call]


_CERT_TYPES = (ACCEPTABLE_STRICT_CERT_CONTENT_TYPES | ACCEPTABLE_CERT_PEM_ALIASES
               | ACCEPTABLE_CERT_DER_ALIASES | ACCEPTABLE_PKCS7_DER_ALIASES)


class CappedCertificateFetcher(AIOHttpCertificateFetcher):
    def __init__(self, session: aiohttp.ClientSession, settings: NetworkSettings, *,
                 budget: FetchBudget) -> None:
        super().__init__(session, per_request_timeout=settings.timeout, budget=budget)
        self.settings = settings

    async def fetch_certs(self, url: str, url_origin_type: str) -> Any:
        async def task() -> list[asn1_x509.Certificate]:
            self._charge(FetchKind.CERT)
            try:
                reply = await fetch(self.get_session(), self.settings, "certificate", "GET",
                                    url, headers={"Accept": ",".join(sorted(_CERT_TYPES))})
                content_type = (reply.content_type or "").split(";")[0].strip() or None
                if content_type is not None and content_type not in _CERT_TYPES:
                    raise FetchFailed("certificate", f"content type {content_type[:60]!r}")
                return list(unpack_cert_content(reply.body, content_type, url, True))
            except (FetchFailed, ValueError) as exc:
                log.info("certificates from %s: %s", url,
                         getattr(exc, "why", type(exc).__name__))
                raise CertificateFetchError(
                    f"Failed to fetch certificate(s) from url {url}.") from None

        return await self._post_fetch_task(url, task)  # type: ignore[no-untyped-call]


class IssuerOcspFetcher(AIOHttpOCSPFetcher):
    def __init__(self, session: aiohttp.ClientSession, settings: NetworkSettings, *,
                 budget: FetchBudget) -> None:
        super().__init__(session, per_request_timeout=settings.timeout, budget=budget)
        self.settings = settings

    async def _fetch(self, cert: asn1_x509.Certificate, authority: Authority
                     ) -> asn1_ocsp.OCSPResponse:
        configured = self.settings.ocsp_url_for(authority_der(authority))
        urls = [configured] if configured else get_ocsp_urls(cert)
        if not urls:
            raise OCSPFetchError("No URLs to fetch OCSP responses from")

        async def one(url: str) -> asn1_ocsp.OCSPResponse:
            self._charge(FetchKind.OCSP)
            return await fetch_ocsp(self.get_session(), url, cert, authority, self.settings)

        return await ocsp_job_get_earliest(one(url) for url in urls)


def authority_der(authority: Authority) -> bytes | None:
    cert = getattr(authority, "certificate", None)
    return cert.dump() if cert is not None else None


async def fetch_ocsp(session: aiohttp.ClientSession, url: str, cert: asn1_x509.Certificate,
                     authority: Authority, settings: NetworkSettings
                     ) -> asn1_ocsp.OCSPResponse:
    """One OCSP request (with a nonce) to ``url``; OCSPFetchError/OCSPValidationError if
    the responder cannot be reached or refuses."""
    request = format_ocsp_request(cert, authority, certid_hash_algo="sha1",
                                  request_nonces=True)
    headers = {"Accept": "application/ocsp-response",
               "Content-Type": "application/ocsp-request"}
    try:
        reply = await fetch(session, settings, "ocsp", "POST", url, data=request.dump(),
                            headers=headers)
    except FetchFailed as exc:
        log.info("OCSP from %s: %s", url, exc.why)
        raise OCSPFetchError(f"Failed to fetch OCSP response from {url}") from None
    return process_ocsp_response_data(reply.body, ocsp_request=request, ocsp_url=url)


async def ocsp_from_issuer_responder(cert: asn1_x509.Certificate, path: ValidationPath,
                                     context_for: Any, session: aiohttp.ClientSession,
                                     settings: NetworkSettings
                                     ) -> asn1_ocsp.OCSPResponse | None:
    """For a certificate naming no OCSP responder whose issuer has one configured
    (pyhanko-certvalidator only asks the responders a certificate names): ask it, and
    check the answer by pyhanko-certvalidator's OCSP rules.  ``None`` when this does not
    apply; RevokedError or an OCSPValidationError otherwise."""
    if get_ocsp_urls(cert):
        return None  # the fetcher has asked the configured responder already
    try:
        authority = path.find_issuing_authority(cert)
    except LookupError:
        return None
    url = settings.ocsp_url_for(authority_der(authority))
    if url is None:
        return None
    response = await fetch_ocsp(session, url, cert, authority, settings)
    context: ValidationContext = context_for([response])
    await verify_ocsp_response(cert, path, context)
    return response


@dataclass
class ValidationData:
    """What a B-LT signature carries so it can be checked after the certificates expire."""

    certificates: list[asn1_x509.Certificate] = field(default_factory=list)
    crls: list[asn1_crl.CertificateList] = field(default_factory=list)
    ocsps: list[asn1_ocsp.OCSPResponse] = field(default_factory=list)


async def collect_validation_data(context: ValidationContext,
                                  certs: Sequence[asn1_x509.Certificate], *,
                                  issuer_ocsp: Any = None) -> ValidationData:
    """Validate each certificate's path with hard-fail revocation checking and keep the
    certificates, OCSP responses and CRLs that took.  Anything missing is NETWORK: a
    B-LT signature without its validation data would be a lie.  ``issuer_ocsp(cert,
    path)`` asks an issuer's configured responder about a certificate naming none."""
    data = ValidationData()
    seen: set[bytes] = set()
    extra_ocsps: list[asn1_ocsp.OCSPResponse] = []
    for cert in certs:
        try:
            path = await CertificateValidator(cert, validation_context=context
                                              ).async_validate_path()
            if issuer_ocsp is not None:
                response = await issuer_ocsp(cert, path)
                if response is not None:
                    extra_ocsps.append(response)
        except AgentError:
            raise
        except Exception as exc:
            log.warning("validation data for %s unavailable: %s",
                        cert.subject.human_friendly, type(exc).__name__)
            raise NetworkError("validation data (OCSP/CRL) could not be gathered",
                               service="REVOCATION") from None
        for item in path:
            der = item.dump()
            if der not in seen:
                seen.add(der)
                data.certificates.append(item)
    data.crls = list(context.crls)
    data.ocsps = [*context.ocsps, *extra_ocsps]
    return data
