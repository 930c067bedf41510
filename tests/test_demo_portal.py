"""The demo portal's server (examples/portal/) against tokens and signatures from a real
agent with the demo identity: it accepts what is right and refuses replays, tokens made
for another origin, cross-origin requests and signatures over something else."""

from __future__ import annotations

import hashlib
import json
import ssl
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon import REPO, Daemon, b64

sys.path.insert(0, str(REPO / "examples" / "portal"))
from server import PortalServer, sample_pdf

GOV = "https://www.e-gov.az"  # allow-listed by the shipped defaults: no consent dialog


@pytest.fixture(scope="module")
def agent() -> Iterator[Daemon]:
    with tempfile.TemporaryDirectory(prefix="imza-portal-") as tmp:
        daemon = Daemon(home=Path(tmp) / "home", modules=[], env={},
                        answers={"certificate": "first", "pin": "0000"}).start()
        try:
            yield daemon
        finally:
            daemon.stop()


@pytest.fixture
def portal(agent: Daemon) -> Iterator[PortalServer]:
    server = PortalServer(anchors=[agent.home / "demo" / "demo-root-ca.pem"],
                          origin=GOV).start()
    try:
        yield server
    finally:
        server.stop()


class Browser:
    """A cookie-keeping client of the portal, sending the Origin a browser would."""

    def __init__(self, portal: PortalServer, origin: str = GOV) -> None:
        self.base = f"https://127.0.0.1:{portal.port}"
        self.origin = origin
        self.cookie = ""
        self.context = ssl.create_default_context()
        self.context.check_hostname = False
        self.context.verify_mode = ssl.CERT_NONE  # the portal's throwaway certificate

    def post(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            self.base + path, data=json.dumps(body or {}).encode(), method="POST",
            headers={"Origin": self.origin, "Content-Type": "application/json",
                     "Cookie": self.cookie})
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=30) as reply:
                status, text, headers = reply.status, reply.read(), reply.headers
        except urllib.error.HTTPError as exc:
            status, text, headers = exc.code, exc.read(), exc.headers
        cookie = headers.get("Set-Cookie")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]
        return status, json.loads(text)


async def _token(agent: Daemon, origin: str, challenge: str) -> dict[str, Any]:
    async with agent.client(origin) as page:
        return (await page.call("auth.login", {"challenge": challenge}))["token"]


async def test_login_once_and_only_for_its_own_origin(agent: Daemon,
                                                      portal: PortalServer) -> None:
    browser = Browser(portal)
    _, issued = browser.post("/api/login/challenge")
    challenge = issued["challenge"]
    token = await _token(agent, GOV, challenge)
    status, answer = browser.post("/api/login", {"challenge": challenge, "token": token})
    assert status == 200 and "DEMO" in answer["user"]["name"]
    # the same challenge again: refused (single use)
    status, answer = browser.post("/api/login", {"challenge": challenge, "token": token})
    assert status == 400 and "challenge" in answer["error"]
    # a token the agent made for another site (with this portal's challenge) is useless here
    _, issued = browser.post("/api/login/challenge")
    elsewhere = await _token(agent, "https://login.e-gov.az", issued["challenge"])
    status, answer = browser.post("/api/login", {"challenge": issued["challenge"],
                                                 "token": elsewhere})
    assert status == 400 and "does not verify" in answer["error"]


async def test_declaration_signature_is_checked_against_the_servers_document(
        agent: Daemon, portal: PortalServer) -> None:
    browser = Browser(portal)
    _, issued = browser.post("/api/login/challenge")
    token = await _token(agent, GOV, issued["challenge"])
    assert browser.post("/api/login", {"challenge": issued["challenge"], "token": token})[0] \
        == 200
    async with agent.client(GOV) as page:
        chosen = await page.call("certificates.select", {"purpose": "sign"})
        results = []
        for income in ("100", "200"):
            _, doc = browser.post("/api/declaration/prepare", {"form": {"income": income}})
            other = hashlib.sha256(b"something else").digest()
            signed = await page.call("sign.hash", {
                "handle": chosen["handle"], "hashAlgorithm": "SHA-256",
                "hash": doc["hash"] if income == "100" else b64(other)})
            results.append(browser.post("/api/declaration/submit", {
                "documentId": doc["documentId"], "signature": {**signed,
                                                               "chain": chosen["chain"]}}))
    (ok_status, ok), (bad_status, bad) = results
    assert ok_status == 200 and ok["accepted"] is True
    assert bad_status == 400 and "does not verify" in bad["error"]
    assert len(portal.portal.signed) == 1


def test_cross_origin_requests_are_refused(portal: PortalServer) -> None:
    status, answer = Browser(portal, origin="https://evil.example").post(
        "/api/login/challenge")
    assert status == 403 and answer["error"] == "cross-origin request"


def test_sample_pdf_is_well_formed() -> None:
    pdf = sample_pdf()
    assert pdf.startswith(b"%PDF-1.7") and pdf.rstrip().endswith(b"%%EOF")
    xref = int(pdf.rsplit(b"startxref\n", 1)[1].split(b"\n", 1)[0])
    assert pdf[xref:xref + 4] == b"xref"
