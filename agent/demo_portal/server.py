"""A small relying party that looks like an e-government service, for trying imza-agent
end to end: "log in with e-signature", "sign the declaration", "sign a PDF" (in the
browser with sign.pdf, or on the server with sign.hash, the document never leaving it).

    python -m agent.demo_portal.server --port 8443 \
        --trust-anchor ~/.local/share/imza-agent/demo/demo-root-ca.pem

(`imza-agent demo` starts the agent, this portal and a browser in one go.)

Standard library, `cryptography`, pyHanko (the `formats` extra) and the portal kit
(`imza_portal`); serves https only (its own certificate, or a self-signed one made at
start). Everything the server believes it checks itself: the login token against its OWN
configured origin and a challenge it issued once (`imza_portal.login`); the declaration's
CAdES signature against the document it composed itself, once, with pyHanko's validator
(verify_cms.py); every signed PDF with pyHanko's validator against its anchors
(pdf_desk.py, `imza_portal.documents`).

The page (static/) and the page SDK it imports (static/sdk/imza.js, the file
extension/sdk/imza.js that portals serve) are package data: they are in the wheel.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import hashlib
import http.server
import ipaddress
import json
import secrets
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from imza_portal.documents import DocumentSigner
from imza_portal.login import ChallengeStore, LoginError, LoginVerifier

from . import pdf_desk
from .verify import Rejected, describe
from .verify_cms import verify_declaration_cms

STATIC_DIR = files(__package__) / "static"
CHALLENGE_TTL = 300.0  # seconds a login challenge stays usable
COOKIE = "portal_session"
STATIC = {"/": "index.html", "/app.js": "app.js", "/style.css": "style.css",
          "/sdk/imza.js": "sdk/imza.js"}
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".pdf": "application/pdf"}


@dataclass
class Session:
    sid: str
    user: dict[str, str] | None = None
    documents: dict[str, bytes] = field(default_factory=dict)  # id -> what is to be signed
    pdfs: pdf_desk.PdfDesk = field(default_factory=pdf_desk.PdfDesk)


class Portal:
    """The portal's state: sessions, trust anchors, its own origin."""

    def __init__(self, origin: str, anchors: list[Path], tsa_url: str | None = None,
                 pdf_level: str | None = None) -> None:
        self.origin = origin
        self.anchor_paths = anchors
        # With a TSA the portal asks for CAdES-B-T and refuses signatures without a valid
        # time-stamp (whose TSA must chain to one of the anchors too).
        self.tsa_url = tsa_url
        # The level of PDFs signed on the server: B-T with a TSA, else B-B; B-LT also needs
        # the signer's CA to publish OCSP or CRLs (the demo CA does not).
        self.pdf_level = pdf_level or ("B-T" if tsa_url else "B-B")
        self.sessions: dict[str, Session] = {}
        self.lock = threading.Lock()
        self.challenges = ChallengeStore(lifetime=CHALLENGE_TTL)
        self.signed: list[dict[str, Any]] = []  # what was accepted, for tests and the log
        self.pdfs: list[dict[str, Any]] = []  # every signed PDF the server checked

    def anchors(self) -> list[x509.Certificate]:
        # Re-read each time: the demo CA may be created after the portal started.
        found = []
        for path in self.anchor_paths:
            if path.is_file():
                found.extend(x509.load_pem_x509_certificates(path.read_bytes()))
        return found

    def session(self, sid: str | None) -> tuple[str, Session]:
        with self.lock:
            if sid is None or sid not in self.sessions:
                sid = secrets.token_urlsafe(24)
                self.sessions[sid] = Session(sid)
            return sid, self.sessions[sid]

    def document_signer(self) -> DocumentSigner:
        return DocumentSigner(trust_roots=self.anchors(), tsa_url=self.tsa_url)

    def _record_pdf(self, record: dict[str, Any]) -> None:
        with self.lock:
            self.pdfs.append(record)

    # --- the API -----------------------------------------------------------------------

    def api(self, path: str, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        if path == "/api/login/challenge":
            return {"challenge": self.challenges.issue(session.sid)}
        if path == "/api/login":
            return self._login(session, body)
        if path == "/api/me":
            return {"user": session.user}
        if path == "/api/logout":
            session.user = None
            return {"user": None}
        if path == "/api/declaration/prepare":
            return self._prepare(session, body)
        if path == "/api/declaration/submit":
            return self._submit(session, body)
        if path == "/api/pdf/verify":
            return pdf_desk.verify_uploaded(body, anchors=self.anchors(), original=sample_pdf(),
                                            record=self._record_pdf)
        if path == "/api/pdf/prepare":
            return pdf_desk.prepare(session.pdfs, body, document=sample_pdf(),
                                    level=self.pdf_level, signer=self.document_signer())
        if path == "/api/pdf/finish":
            return pdf_desk.finish(session.pdfs, body, signer=self.document_signer(),
                                   anchors=self.anchors(), original=sample_pdf(),
                                   record=self._record_pdf)
        raise LookupError(path)

    def _login(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        challenge = body.get("challenge")
        if not isinstance(challenge, str):
            raise Rejected("unknown, used or expired challenge", "CHALLENGE_UNKNOWN")
        anchors = self.anchors()
        if not anchors:
            raise Rejected("this portal trusts no CA yet")
        try:
            # The kit consumes the challenge (this session's, single use) before any other
            # check, and verifies for OUR origin, never one the request names.
            login = LoginVerifier(self.origin, anchors).verify(
                body.get("token"), challenge=challenge, store=self.challenges,
                session=session.sid)
        except LoginError as exc:
            raise Rejected(exc.message, exc.code.value) from None
        session.user = describe(login.certificate)
        return {"user": session.user}

    def _prepare(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        if session.user is None:
            raise Rejected("log in first")
        given = body.get("form")
        form = given if isinstance(given, dict) else {}
        fields = {k: str(form.get(k, ""))[:200] for k in ("year", "income", "tax", "note")}
        # The server composes the document itself: the browser never decides what is signed.
        # The random id in it is the server's nonce: each issued document is unique, so a
        # signature over an earlier one can never match a later one.
        doc_id = secrets.token_urlsafe(16)
        text = (f"Gəlir vergisi bəyannaməsi / Income tax declaration\n"
                f"Vergi ödəyicisi: {session.user['name']} ({session.user['serialNumber']})\n"
                f"İl: {fields['year']}\nGəlir: {fields['income']} AZN\n"
                f"Vergi: {fields['tax']} AZN\nQeyd: {fields['note']}\n"
                f"Portal: {self.origin}\nSənəd / Document: {doc_id}\n")
        document = text.encode("utf-8")
        with self.lock:
            session.documents[doc_id] = document
        # Only the digest goes to the agent (sign.cms with `hash`): the text is for the
        # page and the dialog, the bytes stay here.
        answer = {"documentId": doc_id, "text": text,
                  "hash": base64.b64encode(hashlib.sha256(document).digest()).decode(),
                  "hashAlgorithm": "SHA-256", "level": "T" if self.tsa_url else "B"}
        if self.tsa_url:
            answer["tsaUrl"] = self.tsa_url
        return answer

    def _submit(self, session: Session, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:  # single use: taken out before anything is checked
            document = session.documents.pop(str(body.get("documentId")), None)
        if document is None or session.user is None:
            raise Rejected("unknown or already used document")
        signed = verify_declaration_cms(body.get("cms"), document=document,
                                        anchors=self.anchors(),
                                        require_timestamp=self.tsa_url is not None)
        signer = describe(signed.signer)
        if (signer["name"], signer["serialNumber"]) != (session.user["name"],
                                                        session.user["serialNumber"]):
            raise Rejected("signed by someone other than the logged-in user")
        record = {"signer": signer, "sha256": hashlib.sha256(document).hexdigest(),
                  "format": "CAdES-B-T" if signed.timestamp else "CAdES-B-B",
                  "signingTime": _iso(signed.signing_time),
                  "timestamp": _iso(signed.timestamp)}
        with self.lock:
            self.signed.append(record)
        return {"accepted": True, **record}


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


class _HttpServer(http.server.ThreadingHTTPServer):
    """The standard server, carrying the portal its handlers serve."""

    def __init__(self, address: tuple[str, int], portal: Portal, verbose: bool) -> None:
        super().__init__(address, _Handler)
        self.portal = portal
        self.verbose = verbose


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "demo-portal"
    sys_version = ""
    server: _HttpServer

    @property
    def portal(self) -> Portal:
        return self.server.portal

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _sid(self) -> str | None:
        for part in self.headers.get("Cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                return value
        return None

    def _send(self, status: int, body: bytes, content_type: str,
              sid: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", "default-src 'self'; "
                         "connect-src 'self' blob: wss://127.0.0.1:* ws://127.0.0.1:*")
        if sid is not None:
            self.send_header("Set-Cookie",
                             f"{COOKIE}={sid}; Path=/; Secure; HttpOnly; SameSite=Strict")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/sample.pdf":
            self._send(200, sample_pdf(), TYPES[".pdf"])
            return
        if path.startswith("/signed/") and path.endswith(".pdf"):
            # A file signed on the server, for the session that signed it only.
            sid = self._sid()
            with self.portal.lock:
                session = self.portal.sessions.get(sid) if sid else None
            signed = session.pdfs.download(path[len("/signed/"):-4]) if session else None
            if signed is None:
                self._send(404, b"not found\n", "text/plain")
            else:
                self._send(200, signed, TYPES[".pdf"])
            return
        if path not in STATIC:
            self._send(404, b"not found\n", "text/plain")
            return
        name = STATIC[path]
        sid, _ = self.portal.session(self._sid())
        file = STATIC_DIR.joinpath(*name.split("/"))
        self._send(200, file.read_bytes(), TYPES[Path(name).suffix], sid)

    def do_POST(self) -> None:
        # Same-origin requests only: a page elsewhere cannot drive this session.
        if self.headers.get("Origin") != self.portal.origin:
            self._send(403, b'{"error":"cross-origin request"}', "application/json")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > 16 * 1024 * 1024:
            self._send(413, b'{"error":"too large"}', "application/json")
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            self._send(400, b'{"error":"not JSON"}', "application/json")
            return
        sid, session = self.portal.session(self._sid())
        try:
            status, answer = 200, self.portal.api(self.path, session, body)
        except Rejected as exc:
            status, answer = 400, {"error": str(exc), "code": exc.code}
        except LookupError:
            status, answer = 404, {"error": "no such API"}
        self._send(status, json.dumps(answer, ensure_ascii=False).encode(),
                   "application/json; charset=utf-8", sid)


def sample_pdf() -> bytes:
    """A one-page PDF with a correct cross-reference table, to try sign.pdf on."""
    content = b"BT /F1 18 Tf 72 720 Td (Arayis / Certificate of residence - DEMO) Tj ET"
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
               b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
               b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)


def self_signed(hosts: list[str], directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for the portal's host names (the browser will warn)."""
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "portal-cert.pem", directory / "portal-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


class PortalServer:
    """The portal on ``host:port`` over https; ``origin`` is what it verifies logins for
    (default ``https://<public_host>:<port>``)."""

    def __init__(self, *, anchors: list[Path], host: str = "127.0.0.1", port: int = 0,
                 public_host: str = "localhost", origin: str | None = None,
                 cert: Path | None = None, key: Path | None = None,
                 tsa_url: str | None = None, pdf_level: str | None = None,
                 verbose: bool = False) -> None:
        self.httpd = _HttpServer((host, port), Portal("", anchors, tsa_url, pdf_level),
                                 verbose)
        self.port = self.httpd.server_address[1]
        default = f"https://{public_host}" + ("" if self.port == 443 else f":{self.port}")
        self.portal = self.httpd.portal
        # Known once the port is: port 0 asks the system for a free one.
        self.portal.origin = origin or default
        if cert is None or key is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="demo-portal-")
            cert, key = self_signed([public_host, "localhost", "127.0.0.1"], Path(self._tmp.name))
        self.cert_path = cert
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self._thread: threading.Thread | None = None

    @property
    def origin(self) -> str:
        return self.portal.origin

    def start(self) -> PortalServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--public-host", default="localhost",
                        help="host name in the portal's origin")
    parser.add_argument("--origin", help="the portal's origin (default from host and port)")
    parser.add_argument("--trust-anchor", type=Path, action="append", default=[],
                        help="PEM file of a CA whose certificates may log in and sign")
    parser.add_argument("--cert", type=Path, help="TLS certificate (PEM)")
    parser.add_argument("--key", type=Path, help="TLS private key (PEM)")
    parser.add_argument("--tsa-url", help="RFC 3161 service: ask for CAdES-B-T signatures "
                        "(the TSA's CA must be a --trust-anchor; the agent must allow it: "
                        "[formats] tsa_by_origin for the portal's origin, or "
                        "allow_page_tsa = true, and page_tsa_private_addresses = true for "
                        "a TSA on this machine)")
    parser.add_argument("--pdf-level", choices=["B-B", "B-T", "B-LT"],
                        help="level of PDFs signed on the server (default B-T with "
                        "--tsa-url, else B-B; B-LT needs OCSP or CRLs for the signer)")
    args = parser.parse_args(argv)
    server = PortalServer(anchors=args.trust_anchor, host=args.host, port=args.port,
                          public_host=args.public_host, origin=args.origin, cert=args.cert,
                          key=args.key, tsa_url=args.tsa_url,
                          pdf_level=args.pdf_level, verbose=True)
    print(f"demo portal: {server.origin}/", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
