"""Real PKI services on loopback for the signature-format tests, and a SoftHSM token whose
certificates point at them.

One ``ThreadingHTTPServer`` serves, over real HTTP:

* ``POST /tsa`` — an RFC 3161 time-stamping service (pyHanko's TSA engine, our TSA
  certificate with the critical timeStamping EKU);
* ``POST /tsa-garbage`` — answers 200 ``application/timestamp-reply`` with junk;
* ``POST /tsa-slow`` — answers only after ``SLOW_SECONDS``;
* ``POST /ocsp`` — an OCSP responder for the intermediate CA (responses signed by the CA);
* ``GET /crl`` — the intermediate's CRL; ``GET /ca.cer`` — the intermediate (caIssuers);
* ``POST /tsa-unverifiable`` — a working TSA whose certificate's status nobody can give;
* ``POST /tsa-rotating`` — one URL answered in turn by two TSA certificates;
  ``POST /tsa-flip`` — the first answer from ``/tsa``'s certificate, then
  ``/tsa-unverifiable``'s;
* ``POST /tsa-alt``, ``POST /ocsp-alt`` — the same TSA and responder under other names,
  so a test can tell which configured address was asked; ``POST /ocsp-down`` — 503.

``HostileServer`` (``start_hostile``) misbehaves on purpose — redirects, gzip bombs, huge
bodies, a slow drip — and counts what reached it (tests/test_ssrf.py,
tests/test_capped_reader.py).

``ForwardingProxy`` is a plain HTTP proxy (absolute-URI requests) on loopback that
forwards to these services and records what it forwarded.

Certificates issued here carry AIA (OCSP + caIssuers) and CRL distribution points naming
this server; ``revoked`` serials are reported revoked by both OCSP and the CRL.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gzip
import http.client
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from asn1crypto import keys as asn1_keys
from asn1crypto import tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID
from daemon import Daemon
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore
from testbed.pki import SIGN_POLICY_OID, TestPKI, now
from testbed.softhsm import MODULE

SLOW_SECONDS = 6.0


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@dataclass
class Issued:
    name: str
    cert: x509.Certificate
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    serial_number: str  # the subject's serialNumber attribute, for certificate filters

    @property
    def der(self) -> bytes:
        return _der(self.cert)


@dataclass
class PkiServices:
    pki: TestPKI
    server: ThreadingHTTPServer
    revoked: set[int] = field(default_factory=set)
    tsa: Issued | None = None
    # A TSA whose own certificate's status cannot be had (OCSP answers 503, no CRL):
    # its time-stamps are fine, B-LT validation data for them is not.
    tsa_unverifiable: Issued | None = None
    # ``/tsa-rotating`` alternates between ``tsa`` and this one.
    tsa_second: Issued | None = None
    rotations: int = 0
    flips: int = 0  # ``/tsa-flip``'s answers since a test reset it
    requests: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    # --- certificates ------------------------------------------------------------------

    def issue(self, name: str, key_type: str = "RSA", *, ocsp_url: bool = True,
              crl_url: bool = True, eku_tsa: bool = False,
              ocsp_path: str = "/ocsp", crl_path: str = "/crl", ca_path: str = "/ca.cer",
              base: str | None = None) -> Issued:
        """``base``: another server for the AIA and CRL addresses (a hostile one)."""
        url = (lambda path: f"{base}{path}") if base is not None else self.url
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
            rsa.generate_private_key(65537, 2048) if key_type == "RSA"
            else ec.generate_private_key(ec.SECP384R1() if key_type == "EC384"
                                         else ec.SECP256R1()))
        ca = self.pki.intermediate
        serial_attr = "FMT-" + name.replace("_", "-")
        t = now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([
                x509.NameAttribute(NameOID.COUNTRY_NAME, "AZ"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"Formatlar {name}"),
                x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_attr)]))
            .issuer_name(ca.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(t - dt.timedelta(days=1))
            .not_valid_after(t + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca.key.public_key()), critical=False)  # type: ignore[arg-type]
        )
        if eku_tsa:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]),
                            critical=True)
        else:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=True, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True
            ).add_extension(x509.CertificatePolicies([x509.PolicyInformation(
                SIGN_POLICY_OID, None)]), critical=False)
        access = [x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                         x509.UniformResourceIdentifier(url(ca_path)))]
        if ocsp_url:
            access.insert(0, x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(
                    url(ocsp_path))))
        builder = builder.add_extension(x509.AuthorityInformationAccess(access),
                                        critical=False)
        if crl_url:
            builder = builder.add_extension(x509.CRLDistributionPoints([
                x509.DistributionPoint([x509.UniformResourceIdentifier(url(crl_path))],
                                       None, None, None)]), critical=False)
        cert = builder.sign(ca.key, hashes.SHA256())
        return Issued(name, cert, key, serial_attr)

    def write_anchors(self, directory: Path) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        root = directory / "root.pem"
        root.write_bytes(self.pki.root.cert.public_bytes(serialization.Encoding.PEM))
        inter = directory / "intermediate.pem"
        inter.write_bytes(self.pki.intermediate.cert.public_bytes(serialization.Encoding.PEM))
        return [root, inter]

    # --- responses ---------------------------------------------------------------------

    def crl(self) -> bytes:
        ca = self.pki.intermediate
        t = now()
        builder = (x509.CertificateRevocationListBuilder()
                   .issuer_name(ca.cert.subject)
                   .last_update(t - dt.timedelta(minutes=5))
                   .next_update(t + dt.timedelta(days=1))
                   .add_extension(x509.CRLNumber(int(time.time())), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       ca.key.public_key()), critical=False))  # type: ignore[arg-type]
        for serial in sorted(self.revoked):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial)
                .revocation_date(t - dt.timedelta(hours=1)).build())
        return builder.sign(ca.key, hashes.SHA256()).public_bytes(
            serialization.Encoding.DER)

    def ocsp_response(self, body: bytes) -> bytes:
        ca = self.pki.intermediate
        request = ocsp.load_der_ocsp_request(body)
        t = now()
        serial = request.serial_number
        builder = ocsp.OCSPResponseBuilder()
        if serial in self.revoked:
            status, rev_time = ocsp.OCSPCertStatus.REVOKED, t - dt.timedelta(hours=1)
        else:
            status, rev_time = ocsp.OCSPCertStatus.GOOD, None
        builder = builder.add_response_by_hash(
            issuer_name_hash=request.issuer_name_hash, issuer_key_hash=request.issuer_key_hash,
            serial_number=serial, algorithm=request.hash_algorithm, cert_status=status,
            this_update=t - dt.timedelta(minutes=5), next_update=t + dt.timedelta(hours=12),
            revocation_time=rev_time, revocation_reason=None,
        ).responder_id(ocsp.OCSPResponderEncoding.HASH, ca.cert)
        for ext in request.extensions:
            if isinstance(ext.value, x509.OCSPNonce):
                builder = builder.add_extension(ext.value, critical=False)
        return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def timestamp(self, body: bytes, tsa: Issued | None = None) -> bytes:
        tsa = tsa or self.tsa
        assert tsa is not None
        key_info = asn1_keys.PrivateKeyInfo.load(tsa.key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        tsa_cert = asn1_x509.Certificate.load(tsa.der)
        store = SimpleCertificateStore.from_certs([
            tsa_cert, asn1_x509.Certificate.load(_der(self.pki.intermediate.cert))])
        stamper = DummyTimeStamper(tsa_cert=tsa_cert, tsa_key=key_info, certs_to_embed=store)
        return stamper.request_tsa_response(tsp.TimeStampReq.load(body)).dump()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(services: PkiServices) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            services.requests.append(f"GET {self.path}")
            if self.path == "/crl":
                self._reply(200, services.crl(), "application/pkix-crl")
            elif self.path == "/ca.cer":
                self._reply(200, _der(services.pki.intermediate.cert),
                            "application/pkix-cert")
            else:
                self._reply(404, b"", "text/plain")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            services.requests.append(f"POST {self.path}")
            if self.path in ("/tsa", "/tsa-alt"):
                self._reply(200, services.timestamp(body), "application/timestamp-reply")
            elif self.path == "/tsa-rotating":
                # One URL, two TSA certificates taking turns (a load-balanced TSA): the
                # next answer is not signed by the certificate of the previous one.
                services.rotations += 1
                tsa = services.tsa if services.rotations % 2 else services.tsa_second
                self._reply(200, services.timestamp(body, tsa), "application/timestamp-reply")
            elif self.path == "/tsa-flip":
                # The first answer (after ``flips`` is reset) from a TSA whose status can
                # be had, the next ones from one whose status cannot.
                services.flips += 1
                tsa = services.tsa if services.flips == 1 else services.tsa_unverifiable
                self._reply(200, services.timestamp(body, tsa), "application/timestamp-reply")
            elif self.path == "/tsa-unverifiable":
                self._reply(200, services.timestamp(body, services.tsa_unverifiable),
                            "application/timestamp-reply")
            elif self.path == "/tsa-garbage":
                self._reply(200, b"\x30\x03\x02\x01\x07 not a time-stamp",
                            "application/timestamp-reply")
            elif self.path == "/tsa-slow":
                time.sleep(SLOW_SECONDS)
                self._reply(200, b"late", "application/timestamp-reply")
            elif self.path in ("/ocsp", "/ocsp-alt"):
                self._reply(200, services.ocsp_response(body), "application/ocsp-response")
            elif self.path == "/ocsp-down":
                self._reply(503, b"", "text/plain")
            else:
                self._reply(404, b"", "text/plain")

    return Handler


def start_services(pki: TestPKI) -> PkiServices:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    services = PkiServices(pki, server)
    server.RequestHandlerClass = _handler(services)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    services.tsa = services.issue("tsa", eku_tsa=True)
    services.tsa_unverifiable = services.issue("tsa-unverifiable", eku_tsa=True,
                                               crl_url=False, ocsp_path="/ocsp-down")
    services.tsa_second = services.issue("tsa-second", eku_tsa=True)
    return services


# --- a forwarding HTTP proxy ----------------------------------------------------------------

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te",
               "trailer", "transfer-encoding", "upgrade", "host", "content-length"}


@dataclass
class ForwardingProxy:
    """An HTTP proxy as corporate networks have: takes ``METHOD http://host/path``
    requests, forwards them, and keeps ``METHOD URL`` of each in ``requests``."""

    server: ThreadingHTTPServer
    requests: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def paths(self, since: int = 0) -> list[str]:
        """``METHOD /path`` of what was forwarded, as the services record it."""
        out = []
        for line in self.requests[since:]:
            method, _, url = line.partition(" ")
            out.append(f"{method} {urlsplit(url).path}")
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _proxy_handler(proxy: ForwardingProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _forward(self) -> None:
            target = urlsplit(self.path)
            if target.scheme != "http" or not target.hostname:
                self.send_error(400, "absolute http URI expected")
                return
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            proxy.requests.append(f"{self.command} {self.path}")
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            conn = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=30)
            try:
                path = target.path + (f"?{target.query}" if target.query else "")
                conn.request(self.command, path or "/", body=body or None, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
            except OSError:
                self.send_error(502)
                return
            finally:
                conn.close()
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.getheader("Content-Type", "text/plain"))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = _forward
        do_POST = _forward

    return Handler


def start_proxy() -> ForwardingProxy:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    proxy = ForwardingProxy(server)
    server.RequestHandlerClass = _proxy_handler(proxy)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return proxy


# --- a hostile service: redirects, bombs, huge bodies, a slow drip ------------------------

GIB = 1 << 30
CONTENT_TYPES = {"tsa": "application/timestamp-reply", "ocsp": "application/ocsp-response",
                 "crl": "application/pkix-crl", "cert": "application/pkix-cert"}


def gzip_bomb() -> bytes:
    """About 1 MiB of gzip that inflates to 1 GiB of zeros.  Built from one deflate
    segment repeated (a full flush resets the compressor, so every 1 MiB of zeros
    compresses to the same bytes): milliseconds instead of compressing 1 GiB."""
    zeros = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    again = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(GIB // len(zeros)):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return (header + first + again * (GIB // len(zeros) - 1) + deflate.flush()
            + struct.pack("<II", crc, GIB & 0xFFFFFFFF))


@dataclass
class HostileServer:
    """A service on loopback that misbehaves on purpose; ``hits`` counts requests per path
    (query left off), so a test can prove a request was never made.

    * ``/tsa``, ``/tsa-hostile`` — a working TSA (the second's certificate names this
      server's ``/ocsp-bomb``, ``/crl-bomb``, ``/ca-bomb`` as its OCSP, CRL, caIssuers);
    * ``/tsa-garbage`` — 200 with junk;
    * ``/redirect-302?to=/path``, ``/redirect-307?to=/path`` — to this server's path;
    * ``/gzip-bomb?type=K`` (and ``/ocsp-bomb``, ``/crl-bomb``, ``/ca-bomb``) — 1 MiB of
      ``Content-Encoding: gzip`` inflating to 1 GiB; ``/gzip-small?type=tsa`` — a valid
      TSA answer, gzip-encoded;
    * ``/huge?type=K`` — declares 1 GiB and streams it; ``/huge-undeclared?type=K`` —
      no length, streams up to 1 GiB until the client hangs up;
    * ``/drip?type=K`` — one byte every 0.2 s.

    ``K`` (tsa, ocsp, crl, cert) picks the content type."""

    server: ThreadingHTTPServer
    services: PkiServices
    hits: Counter[str] = field(default_factory=Counter)
    tsa_hostile: Issued | None = None
    sent: Counter[str] = field(default_factory=Counter)  # body bytes written per path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


_BOMB: list[bytes] = []


def _hostile_handler(hostile: HostileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _head(self, status: int, content_type: str, length: int | None,
                  extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if length is not None:
                self.send_header("Content-Length", str(length))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()

        def _stream(self, path: str, total: int, chunk: bytes, pause: float = 0.0) -> None:
            written = 0
            try:
                while written < total:
                    piece = chunk[:total - written]
                    self.wfile.write(piece)
                    written += len(piece)
                    hostile.sent[path] += len(piece)
                    if pause:
                        self.wfile.flush()
                        time.sleep(pause)
            except OSError:
                pass  # the client hung up: what a capped reader does

        def _serve(self, body: bytes) -> None:
            parts = urlsplit(self.path)
            path = parts.path
            query = dict(p.partition("=")[::2] for p in parts.query.split("&") if p)
            hostile.hits[path] += 1
            kind = query.get("type", {"/ocsp-bomb": "ocsp", "/crl-bomb": "crl",
                                      "/ca-bomb": "cert"}.get(path, "tsa"))
            content_type = CONTENT_TYPES.get(kind, "application/octet-stream")
            if path == "/tsa":
                answer = hostile.services.timestamp(body)
                self._head(200, content_type, len(answer))
                self.wfile.write(answer)
            elif path == "/tsa-hostile":
                answer = hostile.services.timestamp(body, hostile.tsa_hostile)
                self._head(200, content_type, len(answer))
                self.wfile.write(answer)
            elif path == "/tsa-garbage":
                self._head(200, content_type, 9)
                self.wfile.write(b"not a tsr")
            elif path in ("/redirect-302", "/redirect-307"):
                self._head(int(path[-3:]), "text/plain", 0,
                           {"Location": hostile.url(query.get("to", "/tsa"))})
            elif path in ("/gzip-bomb", "/ocsp-bomb", "/crl-bomb", "/ca-bomb"):
                if not _BOMB:
                    _BOMB.append(gzip_bomb())
                self._head(200, content_type, len(_BOMB[0]), {"Content-Encoding": "gzip"})
                self._stream(path, len(_BOMB[0]), _BOMB[0])
            elif path == "/gzip-small":
                answer = gzip.compress(hostile.services.timestamp(body))
                self._head(200, content_type, len(answer), {"Content-Encoding": "gzip"})
                self.wfile.write(answer)
            elif path == "/huge":
                self._head(200, content_type, GIB)
                self._stream(path, GIB, bytes(1 << 16))
            elif path == "/huge-undeclared":
                self._head(200, content_type, None)  # HTTP/1.0: the body ends at close
                self._stream(path, GIB, bytes(1 << 16))
            elif path == "/drip":
                self._head(200, content_type, 1000)
                self._stream(path, 1000, b"\x30", pause=0.2)
            else:
                self._head(404, "text/plain", 0)

        def do_GET(self) -> None:
            self._serve(b"")

        def do_POST(self) -> None:
            self._serve(self.rfile.read(int(self.headers.get("Content-Length", "0"))))

    return Handler


def start_hostile(services: PkiServices) -> HostileServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    hostile = HostileServer(server, services)
    server.RequestHandlerClass = _hostile_handler(hostile)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hostile.tsa_hostile = services.issue("tsa-hostile", eku_tsa=True, base=hostile.base,
                                         ocsp_path="/ocsp-bomb", crl_path="/crl-bomb",
                                         ca_path="/ca-bomb")
    return hostile


def unused_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- a SoftHSM token holding the identities issued here -----------------------------------

@dataclass(frozen=True)
class FormatsToken:
    conf: Path
    label: str
    pin: str

    @property
    def env(self) -> dict[str, str]:
        return {"SOFTHSM2_CONF": str(self.conf)}

    def __repr__(self) -> str:  # no PIN in assertion output
        return f"FormatsToken(label={self.label!r})"


def _run(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True,
                          check=False, timeout=60)
    if done.returncode != 0:  # argv carries PINs: name the tool only
        raise RuntimeError(f"{Path(argv[0]).name} failed: {done.stderr.strip()[-500:]}")


def build_formats_token(directory: Path, identities: list[Issued],
                        label: str = "Formatlar", pin: str = "2468") -> FormatsToken:
    """A SoftHSM store of our own (not the session's bed): keys imported, certificates
    written with the same CKA_ID, so the agent pairs them."""
    tokendir = directory / "tokens"
    tokendir.mkdir(parents=True, exist_ok=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokendir}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n", encoding="utf-8")
    token = FormatsToken(conf, label, pin)
    _run(["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", "13572468",
          "--pin", pin], token.env)
    for index, issued in enumerate(identities, start=1):
        key_id = f"{index:02x}"
        key_file = directory / f"{issued.name}.p8"
        key_file.write_bytes(issued.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        cert_file = directory / f"{issued.name}.der"
        cert_file.write_bytes(issued.der)
        _run(["softhsm2-util", "--import", str(key_file), "--token", label,
              "--label", issued.name, "--id", key_id, "--pin", pin], token.env)
        key_file.unlink()
        _run(["pkcs11-tool", "--module", str(MODULE), "--token-label", label, "--login",
              "--pin", pin, "--write-object", str(cert_file), "--type", "cert",
              "--id", key_id, "--label", issued.name], token.env)
    return token


# --- fixtures the format tests share ------------------------------------------------------



ORIGIN = "https://portal.example"
NETWORK_TIMEOUT = 2.0

# pyhanko-certvalidator accepts a certificate up to 1 s past notAfter; waiting only
# that long left a few milliseconds, and one CI run judged an "expired" certificate
# valid.  Tests wait the tolerance plus this margin.
EXPIRY_MARGIN = 3.0


def wait_until_expired(expires: dt.datetime) -> None:
    """Sleep until a certificate with this notAfter is expired for every checker we use
    (pyhanko's tolerance included)."""
    wait = (expires - dt.datetime.now(dt.UTC)).total_seconds() + 1 + EXPIRY_MARGIN
    if wait > 0:
        time.sleep(wait)


@dataclass
class FormatsBed:
    services: PkiServices
    identities: dict[str, Issued]
    token: FormatsToken
    anchors: list[Path]
    directory: Path

    def serial(self, name: str) -> str:
        return self.identities[name].serial_number


@pytest.fixture(scope="session")
def formats_bed(pki: TestPKI) -> Iterator[FormatsBed]:
    for tool in ("softhsm2-util", "pkcs11-tool", "openssl"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (scripts/system-packages.txt)", pytrace=False)
    services = start_services(pki)
    directory = Path(tempfile.mkdtemp(prefix="imza-formats-"))
    try:
        identities = {
            "rsa": services.issue("rsa"),
            "ec": services.issue("ec", "EC"),
            "revoked": services.issue("revoked"),
            "crl_only": services.issue("crl_only", ocsp_url=False),
        }
        services.revoked.add(identities["revoked"].cert.serial_number)
        token = build_formats_token(directory / "softhsm", list(identities.values()))
        anchors = services.write_anchors(directory / "anchors")
        yield FormatsBed(services, identities, token, anchors, directory)
    finally:
        services.close()
        shutil.rmtree(directory, ignore_errors=True)


# The loopback services are reached directly unless a test says otherwise, whatever
# proxy the machine running the tests has in its environment.
DIRECT_ENV = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


# The format tests' TSAs are the page's tsaUrl on loopback: that needs page TSAs allowed
# and the development setting for private addresses (tests/test_ssrf.py checks both are
# refused by default).
LOOPBACK_PAGE_TSA = {"allow_page_tsa": True, "page_tsa_private_addresses": True}


def start_formats_daemon(bed: FormatsBed, home: Path, env: dict[str, str] | None = None,
                         *, page_tsa: bool = True, **formats: object) -> Daemon:
    """``page_tsa=False``: the [formats] defaults for the page's tsaUrl."""
    config = {"trust_anchors": [str(p) for p in bed.anchors], "revocation": "enforce",
              "network_timeout": NETWORK_TIMEOUT,
              **(LOOPBACK_PAGE_TSA if page_tsa else {}), **formats}
    daemon = Daemon(home=home, modules=[MODULE],
                    env={**DIRECT_ENV, **bed.token.env, **(env or {})},
                    # the format tests select by filter far more than a site may
                    config={"formats": config,  # type: ignore[dict-item]
                            "ui": {"max_filtered_selects_per_site": 10000}},
                    answers={"consent": "always", "certificate": "first",
                             "pin": bed.token.pin})
    return daemon.start()


@contextlib.contextmanager
def daemon_in_temp_home(prefix: str, start: Callable[[Path], Daemon]) -> Iterator[Daemon]:
    """``start(home)``'s daemon, its home a new temporary directory removed after; the
    daemon must stop cleanly."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        daemon = start(home / "agent")
        try:
            yield daemon
        finally:
            code = daemon.stop()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert code == 0, "the daemon did not stop cleanly"


@pytest.fixture(scope="module")
def formats_daemon(formats_bed: FormatsBed) -> Iterator[Daemon]:
    with daemon_in_temp_home("imza-formats-home-",
                             lambda home: start_formats_daemon(formats_bed, home)) as daemon:
        yield daemon


@contextlib.contextmanager
def bed_daemon(bed: FormatsBed, prefix: str, *, revocation: str,
               config: dict[str, dict[str, object]] | None = None,
               answers: dict[str, object] | None = None) -> Iterator[Daemon]:
    """A daemon on the formats bed's token and anchors, in a home of its own (removed
    after), with ``config``'s other sections and the scripted UI's ``answers`` besides
    consenting, choosing the first certificate and typing the token's PIN; it must stop
    cleanly."""
    def start(home: Path) -> Daemon:
        return Daemon(
            home=home, modules=[MODULE], env={**DIRECT_ENV, **bed.token.env},
            config={"formats": {"trust_anchors": [str(p) for p in bed.anchors],
                                "revocation": revocation, "network_timeout": NETWORK_TIMEOUT},
                    **(config or {})},  # type: ignore[dict-item]
            answers={"consent": "always", "certificate": "first", "pin": bed.token.pin,
                     **(answers or {})}).start()

    with daemon_in_temp_home(prefix, start) as daemon:
        yield daemon


@contextlib.contextmanager
def large_documents_daemon(bed: FormatsBed, prefix: str, *,
                           revocation: str = "enforce") -> Iterator[Daemon]:
    """A formats daemon with the ``[server]`` limits at their defaults but the byte rate:
    the large-document tests send several large documents from one site in a row."""
    with bed_daemon(bed, prefix, revocation=revocation,
                    config={"server": {"bytes_per_second": 512 * 1024 * 1024,
                                       "bytes_burst": 512 * 1024 * 1024}}) as daemon:
        yield daemon


async def select_handle(client: object, serial: str) -> str:
    result = await client.call("certificates.select",  # type: ignore[attr-defined]
                               {"purpose": "sign", "filter": {"subjectSerialNumber": serial}})
    return result["handle"]


def pin_dialogs(daemon: Daemon, since: int) -> list[dict]:
    return [d for d in daemon.transcript(since) if d.get("dialog") == "pin"]


async def sign_with_held_pin_dialog(daemon: Daemon, bed: FormatsBed, identity: str,
                                    method: str, params: dict[str, object],
                                    hold_seconds: float) -> tuple[dict[str, Any], dt.datetime]:
    """Call ``method`` with ``identity``'s certificate while the scripted user holds the PIN
    dialog open for ``hold_seconds``; returns the call's result and the moment (UTC) the
    PIN dialog was seen on screen, which is before the user answered it (D3, issue 14)."""
    async with daemon.client(ORIGIN) as client:
        handle = await select_handle(client, bed.serial(identity))
        daemon.set_answers({"consent": "always", "certificate": "first",
                            "pin": bed.token.pin, "delay": hold_seconds})
        try:
            mark = daemon.transcript_mark()
            call = client.start(method, {"handle": handle, **params})
            shown: dt.datetime | None = None
            while shown is None and not call.done():
                if pin_dialogs(daemon, mark):
                    shown = dt.datetime.now(dt.UTC)
                else:
                    await asyncio.sleep(0.02)
            reply = await asyncio.wait_for(call, 60)
        finally:
            daemon.set_answers({"consent": "always", "certificate": "first",
                                "pin": bed.token.pin})
    assert "result" in reply, reply
    assert shown is not None, "the PIN dialog was never seen"
    return reply["result"], shown


def run_tool(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60,
                          cwd=cwd)


def trust_context(bed: FormatsBed, **kwargs: object) -> ValidationContext:
    """A pyHanko validation context trusting the test root (the intermediate as a helper
    for path building): how a relying party would check what the agent signed."""
    root, inter = (x509.load_pem_x509_certificate(p.read_bytes()) for p in bed.anchors)
    return ValidationContext(
        trust_roots=[asn1_x509.Certificate.load(_der(root))],
        other_certs=[asn1_x509.Certificate.load(_der(inter))],
        **kwargs)  # type: ignore[arg-type]
