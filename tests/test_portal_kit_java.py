"""The portal kit's Java verifier (portal-kit/java, JDK only): compiled with plain ``javac``,
its runner on the committed login vectors (every ``expect`` matched), its own checks
(``SelfTest``: JSON strictness, challenge store, API), and revocation through the JDK's
PKIXRevocationChecker: CRLs from, and online OCSP against, the loopback services of
tests/pki_services.py."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pki_services import Issued, PkiServices, start_services
from testbed import TestPKI

REPO = Path(__file__).resolve().parent.parent
KIT = REPO / "portal-kit" / "java"
VECTORS = REPO / "portal-kit" / "vectors" / "login-tokens.json"
ORIGIN = "https://portal.example.az"
RESULT_KEYS = ["name", "valid", "error", "certificateSha256"]
VECTOR_FILE: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))

# What SelfTest.java checks; a check that silently stops running fails here.
SELF_TEST_CHECKS = {
    "json-accepts-rfc8259", "json-refuses-what-rfc8259-does-not-allow",
    "json-refuses-duplicate-members", "json-bounds-depth-and-size",
    "challenge-is-32-random-bytes-base64url", "challenge-single-use",
    "challenge-bound-to-its-session", "challenge-expires-after-its-lifetime-and-is-consumed",
    "challenge-one-winner-among-threads", "verify-json-text-gives-the-certificate",
    "verify-a-mappers-hashmap", "verify-json-text-that-is-not-a-token",
    "verify-consumes-the-challenge-whatever-the-outcome", "verify-the-token-of-another-origin",
    "verify-at-a-time-the-certificate-is-expired", "verify-trusts-the-configured-anchors-only",
    "verify-threads-share-one-verifier", "builder-refuses-what-cannot-work",
    "error-codes-are-the-schemas",
}


def _jdk_tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, (
        f"{name} is missing: install the JDK (Debian: default-jdk-headless, listed in "
        "scripts/system-packages.txt)")
    return path


@pytest.fixture(scope="module")
def classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kit and its SelfTest compiled exactly as the README says: plain javac, no build
    tool, no library."""
    out = tmp_path_factory.mktemp("java-classes")
    sources = sorted(str(p) for p in (KIT / "src").rglob("*.java"))
    assert any(s.endswith("LoginVerifier.java") for s in sources)
    done = subprocess.run([_jdk_tool("javac"), "-Xlint:all", "-Werror", "-d", str(out),
                           *sources], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return out


def _java(classes: Path, main: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_jdk_tool("java"), "-cp", str(classes), f"az.imza.portal.{main}",
                           *args], capture_output=True, text=True, timeout=300)


def _run_vectors(classes: Path, file: Path, *options: str) -> list[dict[str, Any]]:
    done = _java(classes, "RunVectors", *options, str(file))
    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout)
    assert list(output) == ["results"]
    results: list[dict[str, Any]] = output["results"]
    for result in results:
        assert list(result) == RESULT_KEYS  # the SCHEMA's runner output, in its order
    return results


# --- the committed vectors ---------------------------------------------------------------

@pytest.fixture(scope="module")
def committed_results(classes: Path) -> dict[str, dict[str, Any]]:
    results = _run_vectors(classes, VECTORS)
    assert [r["name"] for r in results] == [v["name"] for v in VECTOR_FILE["vectors"]]
    return {r["name"]: r for r in results}


@pytest.mark.parametrize("vector", VECTOR_FILE["vectors"], ids=lambda v: v["name"])
def test_committed_vector(committed_results: dict[str, dict[str, Any]],
                          vector: dict[str, Any]) -> None:
    result = committed_results[vector["name"]]
    expect = vector["expect"]
    if expect["valid"]:
        assert result == {"name": vector["name"], "valid": True, "error": None,
                          "certificateSha256": expect["certificateSha256"]}
    else:
        assert result == {"name": vector["name"], "valid": False, "error": expect["error"],
                          "certificateSha256": None}


def test_the_java_codes_are_the_vectors_codes() -> None:
    source = (KIT / "src/main/java/az/imza/portal/LoginError.java").read_text()
    codes = {c.strip() for c in source.split("enum Code {", 1)[1].split("}", 1)[0].split(",")}
    used = {v["expect"].get("error") for v in VECTOR_FILE["vectors"]} - {None}
    # REVOCATION_UNKNOWN needs a verifier that requires revocation: the OCSP tests below.
    assert codes == used | {"REVOCATION_UNKNOWN"}


def test_a_file_that_cannot_be_read_is_exit_status_2(classes: Path, tmp_path: Path) -> None:
    missing = _java(classes, "RunVectors", str(tmp_path / "missing.json"))
    assert missing.returncode == 2 and missing.stdout == ""
    for text in ["{", json.dumps({**VECTOR_FILE, "format": "other:1"}),
                 json.dumps({**VECTOR_FILE, "anchors": ["not base64!"]})]:
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        done = _java(classes, "RunVectors", str(bad))
        assert done.returncode == 2 and done.stdout == "", text[:40]
        assert "cannot read" in done.stderr


# --- the copy-paste examples ----------------------------------------------------------

# The least of Jakarta Servlet and Spring a controller needs to compile: the examples are
# checked against the kit's real classes, so a renamed method or a changed signature fails
# here, not in a portal developer's build. (The frameworks are not installed here; only
# their names and the signatures the examples call are.)
FRAMEWORK_STUBS = {
    "jakarta/servlet/http/HttpSession.java":
        "package jakarta.servlet.http;\n"
        "public interface HttpSession { String getId(); void setAttribute(String n, Object v); }",
    "jakarta/servlet/http/HttpServletRequest.java":
        "package jakarta.servlet.http;\n"
        "public interface HttpServletRequest { HttpSession getSession(); "
        "String changeSessionId(); }",
    "org/springframework/http/ResponseEntity.java":
        "package org.springframework.http;\n"
        "public class ResponseEntity<T> {\n"
        "  public interface BodyBuilder { <B> ResponseEntity<B> body(B body); }\n"
        "  public static <B> ResponseEntity<B> ok(B body) { return new ResponseEntity<>(); }\n"
        "  public static BodyBuilder status(int status) { return null; }\n}",
    "org/springframework/web/bind/annotation/RestController.java":
        "package org.springframework.web.bind.annotation;\npublic @interface RestController {}",
    "org/springframework/web/bind/annotation/RequestBody.java":
        "package org.springframework.web.bind.annotation;\npublic @interface RequestBody {}",
    "org/springframework/web/bind/annotation/PostMapping.java":
        "package org.springframework.web.bind.annotation;\n"
        "public @interface PostMapping { String[] value() default {}; }",
}
JAVA_EXAMPLES = {"README": KIT / "README.md",
                 "integration": REPO / "docs" / "integration.md"}


@pytest.mark.parametrize("where", sorted(JAVA_EXAMPLES))
def test_the_spring_example_compiles_against_the_kit(classes: Path, tmp_path: Path,
                                                     where: str) -> None:
    text = JAVA_EXAMPLES[where].read_text(encoding="utf-8")
    (example,) = re.findall(r"```java\n(.*?)```", text, re.S)
    assert "LoginVerifier.builder()" in example and "catch (LoginError" in example
    sources = []
    for name, stub in FRAMEWORK_STUBS.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(stub, encoding="utf-8")
        sources.append(str(tmp_path / name))
    controller = tmp_path / "ImzaLoginController.java"
    controller.write_text(example, encoding="utf-8")
    done = subprocess.run([_jdk_tool("javac"), "-cp", str(classes), "-d",
                           str(tmp_path / "out"), str(controller), *sources],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_self_test(classes: Path) -> None:
    done = _java(classes, "SelfTest", str(VECTORS))
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines[-1] == "ALL PASSED"
    assert {line.removeprefix("PASS ") for line in lines[:-1]} == SELF_TEST_CHECKS


# --- revocation against the loopback PKI services ------------------------------------------

@dataclass
class OcspFront:
    """Serves the loopback responder's answers (``PkiServices.ocsp_response``) by GET as well
    as POST (RFC 6960 A.1): the JDK asks by GET whenever the request fits in 255 bytes,
    which tests/pki_services.py answers 404. Keeps ``METHOD /path`` of each request."""

    services: PkiServices
    server: ThreadingHTTPServer
    requests: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def _front_handler(front: OcspFront) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, method: str, responder: str, request: bytes) -> None:
            front.requests.append(f"{method} /{responder}")
            if responder in ("ocsp", "ocsp-alt"):
                body, status = front.services.ocsp_response(request), 200
            else:  # "ocsp-down" and anything else
                body, status = b"", 503
            self.send_response(status)
            self.send_header("Content-Type", "application/ocsp-response")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            responder, _, encoded = self.path.lstrip("/").partition("/")
            self._answer("GET", responder, base64.b64decode(unquote(encoded)))

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self._answer("POST", self.path.lstrip("/"), body)

    return Handler


@pytest.fixture(scope="module")
def front(pki: TestPKI) -> Iterator[OcspFront]:
    services = start_services(pki)
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    running = OcspFront(services, server)
    server.RequestHandlerClass = _front_handler(running)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield running
    finally:
        server.shutdown()
        server.server_close()
        services.close()


def _b64(der: bytes) -> str:
    return base64.b64encode(der).decode()


def _token(person: Issued, chain: list[x509.Certificate], challenge: bytes) -> dict[str, Any]:
    message = hashlib.sha256(ORIGIN.encode()).digest() + hashlib.sha256(challenge).digest()
    key = person.key
    if isinstance(key, rsa.RSAPrivateKey):
        algorithm, signature = "PS256", key.sign(
            message, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
            hashes.SHA256())
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
        algorithm, signature = "ES256", r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return {"format": "imza-auth:1", "certificate": _b64(person.der),
            "chain": [_b64(c.public_bytes(serialization.Encoding.DER)) for c in chain],
            "algorithm": algorithm, "signature": _b64(signature)}


def _fresh_file(front: OcspFront, people: list[Issued], directory: Path,
                crls: tuple[bytes, ...] = ()) -> Path:
    """A vectors file (SCHEMA.md) of fresh tokens from the loopback PKI."""
    pki = front.services.pki
    return _vectors_file(directory, pki.root.cert, [pki.intermediate.cert], people, crls)


def _vectors_file(directory: Path, anchor: x509.Certificate, chain: list[x509.Certificate],
                  people: list[Issued], crls: tuple[bytes, ...] = ()) -> Path:
    """A vectors file of one fresh, well-signed token per person, verified at the real
    time with a challenge issued just now."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    vectors = []
    for person in people:
        challenge = hashlib.sha256(person.der).digest()
        vectors.append({
            "name": person.name, "description": "a fresh login", "now": now,
            "origin": ORIGIN,
            "challenge": base64.urlsafe_b64encode(challenge).decode().rstrip("="),
            "challengeIssuedAt": now, "challengeUsed": False,
            "token": _token(person, chain, challenge)})
    directory.mkdir(parents=True, exist_ok=True)
    file = directory / "fresh.json"
    file.write_text(json.dumps({
        "format": "imza-login-vectors:1", "generator": __name__, "origin": ORIGIN,
        "challengeLifetimeSeconds": 300,
        "anchors": [_b64(anchor.public_bytes(serialization.Encoding.DER))],
        "crls": [_b64(crl) for crl in crls], "vectors": vectors}))
    return file


def _outcomes(results: list[dict[str, Any]]) -> dict[str, str]:
    return {r["name"]: ("valid" if r["valid"] else r["error"]) for r in results}


@pytest.mark.parametrize("key_type", ["RSA", "EC"])
def test_ocsp_good_and_revoked(classes: Path, front: OcspFront, tmp_path: Path,
                               key_type: str) -> None:
    services = front.services
    good = services.issue(f"java-good-{key_type}", key_type, base=front.base)
    revoked = services.issue(f"java-revoked-{key_type}", key_type, base=front.base)
    services.revoked.add(revoked.cert.serial_number)
    file = _fresh_file(front, [good, revoked], tmp_path)
    mark = len(front.requests)
    results = _run_vectors(classes, file, "--ocsp")
    assert _outcomes(results) == {good.name: "valid", revoked.name: "CERT_REVOKED"}
    assert results[0]["certificateSha256"] == hashlib.sha256(good.der).hexdigest()
    assert front.requests[mark:] == ["GET /ocsp", "GET /ocsp"]  # one question each
    # the status really came from the responder: without OCSP (and no CRL) nothing says so
    assert _outcomes(_run_vectors(classes, file)) == {good.name: "valid",
                                                      revoked.name: "valid"}
    assert len(front.requests) == mark + 2


def test_ocsp_responder_configured_by_the_portal(classes: Path, front: OcspFront,
                                                 tmp_path: Path) -> None:
    revoked = front.services.issue("java-revoked-alt", "EC", base=front.base)
    front.services.revoked.add(revoked.cert.serial_number)
    file = _fresh_file(front, [revoked], tmp_path)
    mark = len(front.requests)
    results = _run_vectors(classes, file, "--ocsp-responder", f"{front.base}/ocsp-alt")
    assert _outcomes(results) == {revoked.name: "CERT_REVOKED"}
    assert front.requests[mark:] == ["GET /ocsp-alt"]


def test_a_responder_that_is_down_is_no_status(classes: Path, front: OcspFront,
                                               tmp_path: Path) -> None:
    services = front.services
    down = services.issue("java-ocsp-down", "EC", base=front.base, ocsp_path="/ocsp-down")
    no_aia = services.issue("java-no-ocsp", "RSA", base=front.base, ocsp_url=False)
    file = _fresh_file(front, [down, no_aia], tmp_path)
    mark = len(front.requests)
    assert _outcomes(_run_vectors(classes, file, "--ocsp")) == {
        down.name: "valid", no_aia.name: "valid"}  # soft fail: no status is not revoked
    assert _outcomes(_run_vectors(classes, file, "--ocsp", "--require-revocation")) == {
        down.name: "REVOCATION_UNKNOWN", no_aia.name: "REVOCATION_UNKNOWN"}
    assert front.requests[mark:] == ["GET /ocsp-down", "GET /ocsp-down"]


def test_the_servers_crl_revokes_offline(classes: Path, front: OcspFront,
                                         tmp_path: Path) -> None:
    services = front.services
    good = services.issue("java-crl-good", "RSA", base=front.base)
    revoked = services.issue("java-crl-revoked", "EC", base=front.base)
    services.revoked.add(revoked.cert.serial_number)
    file = _fresh_file(front, [good, revoked], tmp_path, crls=(services.crl(),))
    mark = len(front.requests)
    for options in [(), ("--require-revocation",)]:
        assert _outcomes(_run_vectors(classes, file, *options)) == {
            good.name: "valid", revoked.name: "CERT_REVOKED"}
    assert len(front.requests) == mark  # offline: nobody was asked


# --- PKIX rules beyond the path search ---------------------------------------------------

def _ca(name: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Certificate,
        ec.EllipticCurvePrivateKey] | None, path_length: int | None,
        cert_sign: bool = True) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    t = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(issuer[0].subject if issuer else subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(t - dt.timedelta(days=2)).not_valid_after(t + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(issuer[1] if issuer else key, hashes.SHA256()))


def _login_person(name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
                  ) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    t = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer[0].subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(t - dt.timedelta(days=1)).not_valid_after(t + dt.timedelta(days=9))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(issuer[1], hashes.SHA256()))
    return Issued(name, cert, key, name)


@pytest.mark.parametrize(("path_length", "cert_sign", "outcome"), [
    (None, True, "valid"),
    (0, True, "CERT_UNTRUSTED"),  # the upper CA allows no CA below it
    (None, False, "CERT_UNTRUSTED"),  # the issuing CA may not sign certificates
])
def test_the_jdks_pkix_rules_apply_to_the_path(classes: Path, tmp_path: Path,
                                               path_length: int | None, cert_sign: bool,
                                               outcome: str) -> None:
    """The path search only checks names, signatures and the CA flag; the JDK's
    CertPathValidator then applies RFC 5280's constraints to the path it found:
    root -> upper CA -> issuing CA -> person."""
    root_key, upper_key, ca_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _ca("Java Kit Root", root_key, None, None)
    upper = _ca("Java Kit Upper CA", upper_key, (root, root_key), path_length)
    issuing = _ca("Java Kit CA", ca_key, (upper, upper_key), None, cert_sign)
    person = _login_person("java-pkix", (issuing, ca_key))
    file = _vectors_file(tmp_path, root, [issuing, upper], [person])
    assert _outcomes(_run_vectors(classes, file)) == {person.name: outcome}


def test_crls_first_then_ocsp(classes: Path, front: OcspFront, tmp_path: Path) -> None:
    """A CRL's "revoked" settles it; a CRL's "good" is still put to the responder, which
    knows of revocations after the CRL was made (as the Python kit does)."""
    services = front.services
    early = services.issue("java-revoked-early", "EC", base=front.base)
    late = services.issue("java-revoked-late", "RSA", base=front.base)
    services.revoked.add(early.cert.serial_number)
    crl = services.crl()
    services.revoked.add(late.cert.serial_number)
    first = _fresh_file(front, [early], tmp_path / "early", crls=(crl,))
    second = _fresh_file(front, [late], tmp_path / "late", crls=(crl,))
    mark = len(front.requests)
    assert _outcomes(_run_vectors(classes, first, "--ocsp")) == {early.name: "CERT_REVOKED"}
    assert front.requests[mark:] == []  # the CRL answered
    assert _outcomes(_run_vectors(classes, second)) == {late.name: "valid"}
    assert _outcomes(_run_vectors(classes, second, "--ocsp")) == {late.name: "CERT_REVOKED"}
    assert front.requests[mark:] == ["GET /ocsp"]


def _outdated_crl(services: PkiServices, listed: list[Issued]) -> bytes:
    """The intermediate's CRL as a portal that forgot to refresh it has it: past nextUpdate."""
    ca = services.pki.intermediate
    t = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
               .last_update(t - dt.timedelta(days=2)).next_update(t - dt.timedelta(days=1)))
    for person in listed:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(person.cert.serial_number)
            .revocation_date(t - dt.timedelta(days=3)).build())
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(
        serialization.Encoding.DER)


def test_an_outdated_crl_still_revokes_and_nothing_is_fetched(
        classes: Path, front: OcspFront, tmp_path: Path) -> None:
    """The JDK answers nothing from a CRL past its nextUpdate and then fetches the CRL the
    certificate names; the kit keeps a configured CRL's revocations (they are final) and
    never goes online for CRLs."""
    services = front.services
    listed = services.issue("java-outdated-listed", "EC", base=front.base)
    unlisted = services.issue("java-outdated-unlisted", "RSA", base=front.base)
    file = _fresh_file(front, [listed, unlisted], tmp_path,
                       crls=(_outdated_crl(services, [listed]),))
    mark = len(front.requests)
    assert _outcomes(_run_vectors(classes, file)) == {
        listed.name: "CERT_REVOKED", unlisted.name: "valid"}
    assert _outcomes(_run_vectors(classes, file, "--require-revocation")) == {
        listed.name: "CERT_REVOKED", unlisted.name: "REVOCATION_UNKNOWN"}
    assert front.requests[mark:] == []  # its CRL distribution point was not asked
