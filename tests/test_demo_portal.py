"""The demo portal's server (agent/demo_portal/) against tokens and signatures from real
agents (the demo identity; SoftHSM token A, whose CA the portal does not trust): it accepts
what is right and refuses replays, tokens made for another origin, cross-origin requests,
and declaration signatures (CAdES, verified with pyHanko) over another document, by an
authentication key, by an untrusted signer or without the time-stamp it asked for."""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import ssl
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    pkcs12,
)
from daemon import REPO, Daemon, b64
from pki_services import start_services
from pyhanko.sign import signers
from pyhanko_certvalidator.registry import SimpleCertificateStore
from testbed.softhsm import ALIYEV, SoftHsmBed

import agent.demo_portal as demo_command
from agent.config import Config
from agent.demo_portal import server as portal_module
from agent.demo_portal.server import PortalServer, sample_pdf

GOV = "https://www.e-gov.az"  # allow-listed by the shipped defaults: no consent dialog
DEMO_ANSWERS = {"certificate": {"holder": "DEMO"}, "pin": "0000"}


@pytest.fixture(scope="module")
def agent() -> Iterator[Daemon]:
    with tempfile.TemporaryDirectory(prefix="imza-portal-") as tmp:
        # The portal's TSA runs on loopback and is named by the page: allowed here only.
        daemon = Daemon(home=Path(tmp) / "home", modules=[], env={},
                        config={"formats": {"allow_page_tsa": True,
                                            "page_tsa_private_addresses": True}},
                        answers=DEMO_ANSWERS).start()
        try:
            yield daemon
        finally:
            daemon.stop()


@pytest.fixture(scope="module")
def hsm_agent(softhsm: SoftHsmBed) -> Iterator[Daemon]:
    """An agent with SoftHSM token A (test PKI, which the portal does not trust)."""
    with tempfile.TemporaryDirectory(prefix="imza-portal-hsm-") as tmp:
        daemon = Daemon(home=Path(tmp) / "home", modules=[softhsm.module], env=softhsm.env,
                        answers={"certificate": {"holder": ALIYEV[0]}, "pin": "1234"}).start()
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

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.base + path, context=self.context,
                                        timeout=30) as reply:
                return reply.status, reply.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

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


@pytest.mark.daemon
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
    elsewhere = await _token(agent, "https://giris.turkiye.gov.tr", issued["challenge"])
    status, answer = browser.post("/api/login", {"challenge": issued["challenge"],
                                                 "token": elsewhere})
    assert status == 400 and "does not verify" in answer["error"]


async def _logged_in(agent: Daemon, portal: PortalServer) -> Browser:
    browser = Browser(portal)
    _, issued = browser.post("/api/login/challenge")
    token = await _token(agent, GOV, issued["challenge"])
    status, answer = browser.post("/api/login", {"challenge": issued["challenge"],
                                                 "token": token})
    assert status == 200, answer
    return browser


async def _sign_cms(agent: Daemon, doc: dict[str, Any], **override: Any) -> str:
    """What the page does: sign.cms over the server's digest, at the level it asked for."""
    params = {"hash": doc["hash"], "hashAlgorithm": doc["hashAlgorithm"],
              "level": doc["level"], "display": {"text": doc["text"]}, **override}
    if "tsaUrl" in doc:
        params["tsaUrl"] = doc["tsaUrl"]
    async with agent.client(GOV) as page:
        chosen = await page.call("certificates.select", {"purpose": "sign"})
        return (await page.call("sign.cms", {"handle": chosen["handle"], **params}))["cms"]


def _submit(browser: Browser, doc: dict[str, Any], cms: str) -> tuple[int, dict[str, Any]]:
    return browser.post("/api/declaration/submit", {"documentId": doc["documentId"],
                                                    "cms": cms})


@pytest.mark.daemon
async def test_declaration_cms_is_accepted_once_and_only_for_its_document(
        agent: Daemon, portal: PortalServer) -> None:
    browser = await _logged_in(agent, portal)
    _, doc = browser.post("/api/declaration/prepare", {"form": {"income": "100"}})
    # what the page shows (and the agent's dialog) is exactly what is signed
    assert doc["hash"] == b64(hashlib.sha256(doc["text"].encode("utf-8")).digest())
    assert doc["level"] == "B" and "tsaUrl" not in doc and "data" not in doc
    cms = await _sign_cms(agent, doc)
    status, answer = _submit(browser, doc, cms)
    assert status == 200 and answer["accepted"] is True, answer
    assert "DEMO" in answer["signer"]["name"] and answer["format"] == "CAdES-B-B"
    assert answer["sha256"] == hashlib.sha256(doc["text"].encode("utf-8")).hexdigest()
    assert answer["timestamp"] is None and answer["signingTime"] is not None
    assert len(portal.portal.signed) == 1
    # replayed for the same document: the document was single use
    status, answer = _submit(browser, doc, cms)
    assert status == 400 and "already used" in answer["error"]
    # replayed for a new declaration with the same form: the server's nonce differs
    _, again = browser.post("/api/declaration/prepare", {"form": {"income": "100"}})
    assert again["hash"] != doc["hash"]
    status, answer = _submit(browser, again, cms)
    assert status == 400 and "not over the declaration" in answer["error"]
    assert len(portal.portal.signed) == 1


@pytest.mark.daemon
async def test_cms_over_another_document_is_refused(agent: Daemon,
                                                    portal: PortalServer) -> None:
    browser = await _logged_in(agent, portal)
    _, doc = browser.post("/api/declaration/prepare", {"form": {"income": "200"}})
    cms = await _sign_cms(agent, doc, hash=b64(hashlib.sha256(b"Income: 1 AZN").digest()))
    status, answer = _submit(browser, doc, cms)
    assert status == 400 and "not over the declaration" in answer["error"]
    assert portal.portal.signed == []


@pytest.mark.daemon
async def test_cms_by_the_authentication_key_is_refused(agent: Daemon,
                                                        portal: PortalServer) -> None:
    """The logged-in user's own demo authentication key, chaining to the trusted demo CA,
    signs the right document: still refused, a login key makes no declarations.  (The
    agent never lets a page do this; a forged submission could.)"""
    browser = await _logged_in(agent, portal)
    _, doc = browser.post("/api/declaration/prepare", {"form": {"income": "300"}})
    key, cert, _ = pkcs12.load_key_and_certificates(
        (agent.home / "demo" / "demo-auth.p12").read_bytes(), b"0000")
    assert key is not None and cert is not None
    root = (agent.home / "demo" / "demo-root-ca.pem").read_bytes()
    signer = signers.SimpleSigner(
        signing_cert=asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER)),
        signing_key=asn1_keys.PrivateKeyInfo.load(key.private_bytes(
            Encoding.DER, PrivateFormat.PKCS8, NoEncryption())),
        cert_registry=SimpleCertificateStore.from_certs(
            [asn1_x509.Certificate.load(_pem_to_der(root))]))
    signed = await signer.async_sign_general_data(doc["text"].encode("utf-8"), "sha256",
                                                  detached=True)
    status, answer = _submit(browser, doc, base64.b64encode(signed.dump()).decode())
    assert status == 400 and "nonRepudiation" in answer["error"], answer
    assert portal.portal.signed == []


def _pem_to_der(pem: bytes) -> bytes:
    body = b"".join(line for line in pem.splitlines() if line and not line.startswith(b"-"))
    return base64.b64decode(body)


@pytest.mark.softhsm
@pytest.mark.daemon
async def test_cms_by_an_untrusted_signer_is_refused(agent: Daemon, hsm_agent: Daemon,
                                                     portal: PortalServer) -> None:
    """A real CAdES from token A (test PKI): valid, over the right document, by a signing
    key, but its CA is not one of the portal's anchors."""
    browser = await _logged_in(agent, portal)
    _, doc = browser.post("/api/declaration/prepare", {"form": {"income": "400"}})
    status, answer = _submit(browser, doc, await _sign_cms(hsm_agent, doc))
    assert status == 400 and "not issued by a CA this portal trusts" in answer["error"]
    assert portal.portal.signed == []


@pytest.mark.softhsm
@pytest.mark.daemon
async def test_with_a_tsa_the_portal_asks_for_and_checks_cades_b_t(
        agent: Daemon, softhsm: SoftHsmBed, tmp_path: Path) -> None:
    services = start_services(softhsm.pki)
    anchors = services.write_anchors(tmp_path / "anchors")  # the TSA's CA
    server = PortalServer(anchors=[agent.home / "demo" / "demo-root-ca.pem", anchors[0]],
                          origin=GOV, tsa_url=services.url("/tsa")).start()
    try:
        browser = await _logged_in(agent, server)
        _, doc = browser.post("/api/declaration/prepare", {"form": {"income": "500"}})
        assert doc["level"] == "T" and doc["tsaUrl"] == services.url("/tsa")
        status, answer = _submit(browser, doc, await _sign_cms(agent, doc))
        assert status == 200 and answer["format"] == "CAdES-B-T", answer
        assert answer["timestamp"] is not None
        # a B-B signature is not enough where the portal asked for a time-stamp
        _, doc = browser.post("/api/declaration/prepare", {"form": {"income": "600"}})
        status, answer = _submit(browser, doc, await _sign_cms(agent, doc, level="B"))
        assert status == 400 and "time-stamp" in answer["error"]
        assert len(server.portal.signed) == 1
    finally:
        server.stop()
        services.close()


@pytest.mark.daemon
def test_garbage_instead_of_a_cms_is_refused(portal: PortalServer) -> None:
    status, answer = Browser(portal).post("/api/declaration/submit",
                                          {"documentId": "x", "cms": "bm90IGEgY21z"})
    assert status == 400 and "already used" in answer["error"]  # no such document


@pytest.mark.daemon
def test_cross_origin_requests_are_refused(portal: PortalServer) -> None:
    status, answer = Browser(portal, origin="https://evil.example").post(
        "/api/login/challenge")
    assert status == 403 and answer["error"] == "cross-origin request"


def test_sample_pdf_is_well_formed() -> None:
    pdf = sample_pdf()
    assert pdf.startswith(b"%PDF-1.7") and pdf.rstrip().endswith(b"%%EOF")
    xref = int(pdf.rsplit(b"startxref\n", 1)[1].split(b"\n", 1)[0])
    assert pdf[xref:xref + 4] == b"xref"


@pytest.mark.daemon
def test_the_page_and_the_sdk_are_served(portal: PortalServer) -> None:
    browser = Browser(portal)
    status, page = browser.get("/")
    assert status == 200 and b'<script type="module" src="/app.js">' in page
    status, app = browser.get("/app.js")
    assert status == 200 and b'from "/sdk/imza.js"' in app
    # The page SDK is extension/sdk/imza.js itself, not a copy that could drift.
    status, sdk = browser.get("/sdk/imza.js")
    assert status == 200 and sdk == (REPO / "extension" / "sdk" / "imza.js").read_bytes()
    assert browser.get("/server.py")[0] == 404


# What a relying party copies must not need the agent: only the standard library, the
# crypto libraries and its sibling.
PORTABLE = {"verify.py": {"cryptography", "__future__"},
            "pdf_desk.py": {"asyncio", "base64", "binascii", "collections", "hashlib",
                            "secrets", "threading", "typing", "cryptography", "imza_portal",
                            "__future__", ".verify"},
            "verify_cms.py": {"asyncio", "base64", "binascii", "datetime", "collections",
                              "dataclasses", "asn1crypto", "cryptography", "pyhanko",
                              "pyhanko_certvalidator", "__future__", ".verify"}}


@pytest.mark.parametrize("name", sorted(PORTABLE))
def test_the_verifiers_import_nothing_from_the_agent(name: str) -> None:
    tree = ast.parse((Path(portal_module.__file__).parent / name).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            imported.add("." * node.level + module if node.level
                         else module.split(".")[0])
    assert imported == PORTABLE[name]


@pytest.mark.linux
def test_demo_without_the_formats_extra_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import agent.formats

    monkeypatch.setattr(agent.formats, "available_formats", lambda: {})
    code = demo_command.main(Config(), None, port=0, open_browser=False)
    assert code == 2
    assert "pip install 'imza-agent[formats]'" in capsys.readouterr().err
