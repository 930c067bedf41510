"""RFC 3161 time-stamps: a pyHanko time-stamper whose every failure (unreachable, slow,
refusing, redirecting, a refused address, an over-size or encoded answer, garbage or a
token over another hash) is NETWORK with one and the same text, so a page learns nothing
from which of these it was."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from asn1crypto import cms, tsp
from asn1crypto import x509 as asn1_x509
from pyhanko.sign.timestamps.aiohttp_client import HTTPTimeStamper
from pyhanko.sign.timestamps.common_utils import set_tsp_headers

from agent.errors import AgentError, NetworkError
from agent.formats.network import FetchFailed, NetworkSettings, fetch

log = logging.getLogger(__name__)


class GuardedTimeStamper(HTTPTimeStamper):
    """One TSA for one request, through the configured proxy, within the timeout, its
    answer read through the capped reader (pyHanko's own request reads the whole body,
    decompressed, and follows redirects: ``async_request_tsa_response`` is ours)."""

    def __init__(self, url: str, settings: NetworkSettings,
                 session: aiohttp.ClientSession) -> None:
        super().__init__(url, timeout=settings.timeout, session=session)
        self.settings = settings
        self.session = session

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        reply = await fetch(self.session, self.settings, "tsa", "POST", self.url,
                            data=req.dump(), headers=set_tsp_headers({}))
        if (reply.content_type or "").split(";")[0].strip() != "application/timestamp-reply":
            raise FetchFailed("tsa", "answer is not application/timestamp-reply")
        return tsp.TimeStampResp.load(reply.body)

    async def async_timestamp(self, message_digest: bytes, md_algorithm: str
                              ) -> cms.ContentInfo:
        try:
            token = await asyncio.wait_for(
                super().async_timestamp(message_digest, md_algorithm),
                self.settings.timeout)
            _check_imprint(token, message_digest)
            return token
        except AgentError:
            raise
        except Exception as exc:  # anything the TSA did wrong ends the request the same way
            why = exc.why if isinstance(exc, FetchFailed) else type(exc).__name__
            log.warning("time-stamping service %s failed: %s", _loggable(self.url), why)
            raise NetworkError("the time-stamping service failed", service="TSA") from None

    async def preflight(self, md_algorithm: str) -> cms.ContentInfo:
        """Ask the TSA once before the user is asked, so a dead TSA costs no PIN entry.
        pyHanko keeps the answer as its size-estimate sample; the caller learns the TSA's
        certificates from it (``token_certificates``, ``token_signer``)."""
        return await self.async_dummy_response(md_algorithm)


def _loggable(url: str) -> str:
    """A page's URL in the log: control characters escaped, length capped."""
    return url[:200].encode("unicode_escape").decode("ascii")


def token_certificates(token: cms.ContentInfo) -> list[asn1_x509.Certificate]:
    """The certificates a time-stamp token carries (asn1crypto)."""
    return [c.chosen for c in token["content"]["certificates"] or []]


def token_signer(token: cms.ContentInfo) -> list[asn1_x509.Certificate]:
    """The certificate that signed the time-stamp token, as a one-item list (or empty)."""
    sid = token["content"]["signer_infos"][0]["sid"]
    if sid.name != "issuer_and_serial_number":
        return []
    issuer, serial = sid.chosen["issuer"], sid.chosen["serial_number"].native
    return [c for c in token_certificates(token)
            if c.issuer == issuer and c.serial_number == serial]


def _check_imprint(token: cms.ContentInfo, message_digest: bytes) -> None:
    encap = token["content"]["encap_content_info"]
    info = tsp.TSTInfo.load(encap["content"].parsed.dump()) \
        if not isinstance(encap["content"].parsed, tsp.TSTInfo) else encap["content"].parsed
    if info["message_imprint"]["hashed_message"].native != message_digest:
        raise NetworkError("the time-stamp is over something else", service="TSA")


async def preflight_tsa(url: str, settings: NetworkSettings, md_algorithm: str = "sha256"
                        ) -> None:
    """One request to the TSA before the user is asked (formats that time-stamp after
    signing, XAdES): a dead TSA then costs no PIN entry and leaves no half-made
    signature."""
    async with settings.session() as session:
        await GuardedTimeStamper(url, settings, session).preflight(md_algorithm)


async def timestamp_token(url: str, settings: NetworkSettings, data: bytes,
                          md_algorithm: str = "sha256") -> bytes:
    """A time-stamp token (DER ContentInfo) over ``data``, for formats built without
    pyHanko's CMS machinery (XAdES)."""
    import hashlib

    async with settings.session() as session:
        stamper = GuardedTimeStamper(url, settings, session)
        token = await stamper.async_timestamp(hashlib.new(md_algorithm, data).digest(),
                                              md_algorithm)
    der: bytes = token.dump()
    return der
