"""HTTP for TSA, OCSP, CRL and certificate downloads: one proxy, one timeout, and which
time-stamping service a request may use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.errors import Unsupported

if TYPE_CHECKING:
    import aiohttp


@dataclass(frozen=True)
class NetworkSettings:
    timeout: float = 10.0
    proxy: str | None = None

    @classmethod
    def from_config(cls, config: Any) -> NetworkSettings:
        if config is None:
            return cls()
        return cls(timeout=config.network_timeout, proxy=config.http_proxy)

    def session(self) -> aiohttp.ClientSession:
        """A session for one request; the environment's proxy variables are ignored so
        only the configured proxy is used."""
        import aiohttp

        return aiohttp.ClientSession(
            proxy=self.proxy, trust_env=False,
            timeout=aiohttp.ClientTimeout(total=self.timeout))


def choose_tsa(config: Any, origin: str, page_url: str | None) -> str:
    """The TSA for this origin: the administrator's mapping, the configured default, or
    (when allowed) the page's own ``tsaUrl``."""
    if config is not None:
        if origin in config.tsa_by_origin:
            return str(config.tsa_by_origin[origin])
        if config.tsa_url:
            return str(config.tsa_url)
        if not config.allow_page_tsa:
            raise Unsupported("no time-stamping service is configured for this origin")
    if page_url is None:
        raise Unsupported("this level needs a time-stamping service (tsaUrl)")
    return page_url
