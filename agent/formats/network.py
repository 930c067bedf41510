"""HTTP for TSA, OCSP, CRL and certificate downloads: one proxy, one timeout, and the
OCSP responder configured for a certificate's issuer.

Light on purpose: the signing use case imports it on every format call; aiohttp is
imported only when a session is opened."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit, urlunsplit

if TYPE_CHECKING:
    import aiohttp


def issuer_fingerprint(der: bytes) -> str:
    """How the configuration names an issuing CA: SHA-256 of its certificate, lower hex."""
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True, eq=False)
class NetworkSettings:
    timeout: float = 10.0
    proxy: str | None = field(default=None, repr=False)  # may carry proxy credentials
    ocsp_by_issuer: Mapping[str, str] = field(default_factory=dict)

    def session(self) -> aiohttp.ClientSession:
        """A session for one request.  The configured proxy when there is one; otherwise
        the system's (``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY``, and on Windows and
        macOS the system settings, as Python's ``urllib.request.getproxies`` reads them)."""
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.timeout)
        if self.proxy is None:
            return aiohttp.ClientSession(trust_env=True, timeout=timeout)
        proxy, user, password = split_proxy_credentials(self.proxy)
        auth = aiohttp.BasicAuth(user, password) if user is not None else None
        return aiohttp.ClientSession(proxy=proxy, proxy_auth=auth, trust_env=False,
                                     timeout=timeout)

    def ocsp_url_for(self, issuer_der: bytes | None) -> str | None:
        """The OCSP responder configured for certificates of this issuer, if any."""
        if issuer_der is None or not self.ocsp_by_issuer:
            return None
        return self.ocsp_by_issuer.get(issuer_fingerprint(issuer_der))


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
