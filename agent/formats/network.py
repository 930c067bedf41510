"""HTTP for TSA, OCSP, CRL and certificate downloads: one proxy, one timeout, the OCSP
responder configured for a certificate's issuer — and the guards a page cannot get past.

* **Capped replies.** Every answer is read by ``fetch`` through ``read_capped``: a limit per
  kind (``ResponseLimits``), no transparent decompression (the session asks for
  ``identity`` and a reply with another ``Content-Encoding`` is refused), a declared
  ``Content-Length`` over the cap refused before reading, the body read in chunks that stop
  at the cap.
* **Page-chosen addresses** (``AddressGuard``).  When a page chose the job's TSA, every
  request of the job whose URL the administrator or the signer's own certificates did not
  name must go to a public address: the host is resolved, and loopback, private, link-local,
  ULA, CGNAT, multicast, reserved and unspecified addresses (and IPv4 embedded in IPv6
  forms of those) are refused before any connection; the connection goes to the addresses
  that were checked (the resolver returns only those), so DNS rebinding between check and
  connect gains nothing.  Such requests follow no redirect; a trusted request may, and
  every hop it leads to is checked like a page-chosen address.

Light on purpose: the signing use case imports it on every format call; aiohttp is
imported only when a session is opened or a request made.  Nothing here is bound to an
event loop or a process: a ``NetworkSettings`` is plain data, a session is opened per job.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import ipaddress
import logging
import socket
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

if TYPE_CHECKING:
    import aiohttp
    from cryptography import x509

log = logging.getLogger(__name__)

Kind = Literal["tsa", "ocsp", "crl", "certificate"]
CHUNK = 64 * 1024


def issuer_fingerprint(der: bytes) -> str:
    """How the configuration names an issuing CA: SHA-256 of its certificate, lower hex."""
    return hashlib.sha256(der).hexdigest()


# --- limits on what a service may send ------------------------------------------------------

@dataclass(frozen=True)
class ResponseLimits:
    """Largest answer accepted per kind of service (bytes, as sent: never decompressed)."""

    tsa: int = 128 * 1024
    ocsp: int = 64 * 1024
    crl: int = 20 * 1024 * 1024
    certificate: int = 64 * 1024

    def of(self, kind: Kind) -> int:
        limit: int = getattr(self, kind)
        return limit


class FetchFailed(Exception):
    """A service could not be asked or gave no usable answer.  ``why`` is for the log
    (never shown to a page: what the page learns is one NETWORK text per service)."""

    def __init__(self, kind: Kind, why: str) -> None:
        super().__init__(f"{kind}: {why}")
        self.kind = kind
        self.why = why


# --- which addresses a page-chosen request may reach ----------------------------------------

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


def forbidden_address(address: str) -> bool:
    """True for an address a page must not make the agent reach: anything not globally
    routable (loopback, RFC 1918, link-local, ULA, CGNAT, unspecified, documentation,
    benchmarking…), multicast, reserved, and IPv6 forms that embed such an IPv4 address
    (mapped, 6to4, NAT64; Teredo altogether)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # a zone id means link-local
    except ValueError:
        return True
    if "%" in address:
        return True
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return forbidden_address(str(embedded))
        if ip.teredo is not None or ip.is_site_local:
            return True
    elif ip in _CGNAT:
        return True
    return (not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_loopback
            or ip.is_link_local or ip.is_private or ip.is_unspecified)


def url_key(url: str) -> tuple[str, str, int, str, str] | None:
    """A URL as compared for trust: scheme and host lower-case, the port explicit."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname.lower().rstrip(".")
    return (scheme, host, port or (443 if scheme == "https" else 80), parts.path or "/",
            parts.query)


@dataclass(frozen=True)
class AddressGuard:
    """In force for a job whose TSA a page chose.  ``trusted_urls`` (as ``url_key``): the
    addresses the administrator configured and those the signer's own certificates and the
    configured anchors name — they may be on a private network and may redirect.  Any
    other URL must resolve to public addresses only (unless ``private_allowed``, a
    development setting) and is asked without following redirects."""

    trusted_urls: frozenset[tuple[str, str, int, str, str]] = frozenset()
    private_allowed: bool = False

    @classmethod
    def for_page_tsa(cls, trusted: Iterable[str], *, private_allowed: bool) -> AddressGuard:
        keys = frozenset(k for k in (url_key(u) for u in trusted) if k is not None)
        return cls(keys, private_allowed)

    def trusts(self, url: str) -> bool:
        return url_key(url) in self.trusted_urls

    @property
    def trusted_hosts(self) -> frozenset[str]:
        return frozenset(key[1] for key in self.trusted_urls)

    def check_addresses(self, host: str, addresses: Iterable[str]) -> None:
        """Raise ``AddressRefused`` unless every address ``host`` resolved to is allowed.
        All of them, not a filtered subset: a name answering with a private address next
        to a public one is someone's trick, not a service."""
        found = list(addresses)
        if not found:
            raise AddressRefused(host)
        if not self.private_allowed and any(forbidden_address(a) for a in found):
            raise AddressRefused(host)


class AddressRefused(OSError):
    """A page-influenced request named an address the agent does not reach."""

    def __init__(self, host: str) -> None:
        super().__init__(f"address of {host!r} is not allowed for a page-chosen service")
        self.host = host


def certificate_urls(certs: Iterable[x509.Certificate]) -> set[str]:
    """Every OCSP, caIssuers and CRL (incl. delta) address these certificates name."""
    from cryptography import x509 as cx509

    urls: set[str] = set()
    for cert in certs:
        try:
            aia = cert.extensions.get_extension_for_class(
                cx509.AuthorityInformationAccess).value
        except cx509.ExtensionNotFound:
            aia = cx509.AuthorityInformationAccess([])
        for desc in aia:
            if isinstance(desc.access_location, cx509.UniformResourceIdentifier):
                urls.add(desc.access_location.value)
        points: list[cx509.DistributionPoint] = []
        with contextlib.suppress(cx509.ExtensionNotFound):
            points.extend(cert.extensions.get_extension_for_class(
                cx509.CRLDistributionPoints).value)
        with contextlib.suppress(cx509.ExtensionNotFound):
            points.extend(cert.extensions.get_extension_for_class(cx509.FreshestCRL).value)
        for point in points:
            for name in point.full_name or []:
                if isinstance(name, cx509.UniformResourceIdentifier):
                    urls.add(name.value)
    return urls


# --- settings and the session ---------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class NetworkSettings:
    timeout: float = 10.0
    proxy: str | None = field(default=None, repr=False)  # may carry proxy credentials
    ocsp_by_issuer: Mapping[str, str] = field(default_factory=dict)
    limits: ResponseLimits = ResponseLimits()
    guard: AddressGuard | None = None  # set when a page chose the job's TSA

    def guarded(self, guard: AddressGuard) -> NetworkSettings:
        return replace(self, guard=guard)

    def session(self) -> aiohttp.ClientSession:
        """A session for one job.  The configured proxy when there is one; otherwise the
        system's (``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY``, and on Windows and macOS
        the system settings, as Python's ``urllib.request.getproxies`` reads them).
        Never decompresses; checks page-influenced addresses (``guard``)."""
        import aiohttp

        connector = _guarded_connector_class()(self.guard, self._proxy_hosts())
        common: dict[str, Any] = {
            "timeout": aiohttp.ClientTimeout(total=self.timeout), "connector": connector,
            "auto_decompress": False, "headers": {"Accept-Encoding": "identity"}}
        if self.proxy is None:
            return aiohttp.ClientSession(trust_env=True, **common)
        proxy, user, password = split_proxy_credentials(self.proxy)
        auth = aiohttp.BasicAuth(user, password) if user is not None else None
        return aiohttp.ClientSession(proxy=proxy, proxy_auth=auth, trust_env=False, **common)

    def _proxy_hosts(self) -> frozenset[str]:
        """Proxies are the administrator's or the system's: resolved without the guard."""
        urls = [self.proxy] if self.proxy else list(urllib.request.getproxies().values())
        return frozenset(h.lower().rstrip(".") for h in
                         (_hostname(u) for u in urls) if h)

    def ocsp_url_for(self, issuer_der: bytes | None) -> str | None:
        """The OCSP responder configured for certificates of this issuer, if any."""
        if issuer_der is None or not self.ocsp_by_issuer:
            return None
        return self.ocsp_by_issuer.get(issuer_fingerprint(issuer_der))


def _hostname(url: str) -> str | None:
    try:
        return urlsplit(url if "://" in url else f"http://{url}").hostname
    except ValueError:
        return None


def split_proxy_credentials(url: str) -> tuple[str, str | None, str]:
    """``http://user:secret@host:port`` → (``http://host:port``, user, secret): aiohttp
    wants proxy credentials apart from the URL."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None, ""
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return bare, unquote(parts.username), unquote(parts.password or "")


@functools.cache
def _guarded_connector_class() -> Any:
    """The aiohttp connector enforcing ``AddressGuard`` (built on first use, so importing
    this module does not import aiohttp).

    Every request, and every redirect hop, passes ``connect``: a URL the guard does not
    trust is checked there (IP literals, and names that are proxied or also a trusted
    host, by a lookup of our own) or by the resolver at connection time (other names:
    the connection then goes to exactly the addresses checked)."""
    import aiohttp
    from aiohttp.abc import AbstractResolver, ResolveResult
    from aiohttp.resolver import DefaultResolver

    class GuardedResolver(AbstractResolver):
        def __init__(self, guard: AddressGuard | None, exempt: frozenset[str]) -> None:
            self._inner = DefaultResolver()
            self._guard = guard
            self._exempt = exempt

        async def resolve(self, host: str, port: int = 0,
                          family: socket.AddressFamily = socket.AF_INET
                          ) -> list[ResolveResult]:
            results = await self._inner.resolve(host, port, family)
            if self._guard is not None and host.lower().rstrip(".") not in self._exempt:
                self._guard.check_addresses(host, (r["host"] for r in results))
            return results

        async def close(self) -> None:
            await self._inner.close()

    class GuardedConnector(aiohttp.TCPConnector):
        def __init__(self, guard: AddressGuard | None, proxy_hosts: frozenset[str]) -> None:
            exempt = proxy_hosts | (guard.trusted_hosts if guard is not None else frozenset())
            self._guard = guard
            self._lookup = DefaultResolver()
            # No DNS cache (a trusted lookup must not serve an untrusted request) and no
            # pooled connections (each request is checked on its own).
            super().__init__(resolver=GuardedResolver(guard, exempt), use_dns_cache=False,
                             force_close=True)
            self._exempt = exempt

        async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:
            guard = self._guard
            if guard is not None and not guard.trusts(str(req.url)):
                await self._check(guard, req)
            return await super().connect(req, traces, timeout)

        async def _check(self, guard: AddressGuard, req: Any) -> None:
            host = (req.url.raw_host or "").lower().rstrip(".")
            try:
                ipaddress.ip_address(host.split("%", 1)[0])
                literal = True
            except ValueError:
                literal = False
            if literal:
                guard.check_addresses(host, [host])
            elif req.proxy is not None or host in self._exempt:
                # The resolver will not check this name (the proxy resolves it, or it is
                # a trusted host at a path a page chose): look it up here.  The second
                # lookup (the proxy's, or the connector's for an administrator's host) is
                # outside this check: a trusted name's DNS is trusted with it.
                try:
                    found = await self._lookup.resolve(host, req.port or 0,
                                                       socket.AF_UNSPEC)
                except OSError:
                    raise AddressRefused(host) from None
                guard.check_addresses(host, (r["host"] for r in found))

        async def close(self, *args: Any, **kwargs: Any) -> Any:
            await self._lookup.close()
            return await super().close(*args, **kwargs)

    return GuardedConnector


# --- one request, one capped answer ---------------------------------------------------------

@dataclass(frozen=True)
class Reply:
    body: bytes
    content_type: str | None


async def fetch(session: aiohttp.ClientSession, settings: NetworkSettings, kind: Kind,
                method: str, url: str, *, data: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Reply:
    """One request whose answer is read through ``read_capped``.  Redirects are followed
    only for URLs the guard trusts (or with no guard in force); a 3xx otherwise, any
    status but 200, a refused address, a timeout or an over-size answer: FetchFailed."""
    import aiohttp

    guard = settings.guard
    follow = guard is None or guard.trusts(url)
    request_headers = {**(headers or {}), "Accept-Encoding": "identity"}
    try:
        async with session.request(
                method, url, data=data, headers=request_headers, allow_redirects=follow,
                timeout=aiohttp.ClientTimeout(total=settings.timeout)) as response:
            if 300 <= response.status < 400:
                raise FetchFailed(kind, f"redirected ({response.status}), not followed")
            if response.status != 200:
                raise FetchFailed(kind, f"HTTP {response.status}")
            body = await read_capped(response, settings.limits.of(kind), kind)
            return Reply(body, response.headers.get("Content-Type"))
    except FetchFailed:
        raise
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        refused = _refusal_in(exc)
        raise FetchFailed(kind, str(refused) if refused else type(exc).__name__) from None


def _refusal_in(exc: BaseException) -> AddressRefused | None:
    """The guard's refusal, however aiohttp wrapped it (ClientOSError, DNS error…)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, AddressRefused):
            return seen
        os_error = getattr(seen, "os_error", None)
        if isinstance(os_error, AddressRefused):
            return os_error
        seen = seen.__cause__ or seen.__context__
    return None


async def read_capped(response: aiohttp.ClientResponse, limit: int, kind: Kind) -> bytes:
    """The body as sent, at most ``limit`` bytes; FetchFailed past it or when encoded."""
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise FetchFailed(kind, f"answer encoded as {encoding[:40]!r}, refused")
    declared = response.content_length
    if declared is not None and declared > limit:
        raise FetchFailed(kind, f"answer of {declared} bytes is over the {limit}-byte limit")
    body = bytearray()
    async for chunk in response.content.iter_chunked(CHUNK):
        if len(body) + len(chunk) > limit:
            raise FetchFailed(kind, f"answer is over the {limit}-byte limit")
        body += chunk
    return bytes(body)
