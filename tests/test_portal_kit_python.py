"""The portal kit's Python verifier (portal-kit/python, imported as ``imza_portal``):
the committed login vectors, the challenge store, online OCSP against the loopback
responder of tests/pki_services.py, and the kit as a distribution of its own (its wheel
needs ``cryptography`` only and nothing of the agent)."""

from __future__ import annotations

import ast
import base64
import datetime as dt
import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from pki_services import Issued, PkiServices, start_services
from testbed import TestPKI

from imza_portal.challenges import ChallengeStore
from imza_portal.errors import ErrorCode, LoginError
from imza_portal.login import LoginVerifier, signed_message
from imza_portal.vectors import run_file, run_vector

REPO = Path(__file__).resolve().parent.parent
KIT = REPO / "portal-kit" / "python"
VECTORS = REPO / "portal-kit" / "vectors" / "login-tokens.json"
GENERATOR = REPO / "portal-kit" / "vectors" / "generate.py"
ORIGIN = "https://portal.example.az"
T0 = dt.datetime(2031, 5, 4, 10, 0, tzinfo=dt.UTC)


def _load_vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))
    return data


VECTOR_FILE = _load_vectors()


class Clock:
    def __init__(self, at: dt.datetime = T0) -> None:
        self.at = at

    def __call__(self) -> dt.datetime:
        return self.at


# --- the committed vectors ---------------------------------------------------------------

@pytest.mark.parametrize("vector", VECTOR_FILE["vectors"], ids=lambda v: v["name"])
def test_vector(vector: dict[str, Any]) -> None:
    anchors = [x509.load_der_x509_certificate(base64.b64decode(a))
               for a in VECTOR_FILE["anchors"]]
    crls = [x509.load_der_x509_crl(base64.b64decode(c)) for c in VECTOR_FILE["crls"]]
    result = run_vector(vector, anchors, crls, VECTOR_FILE["challengeLifetimeSeconds"])
    expect = vector["expect"]
    assert result["valid"] is expect["valid"], result
    assert result["error"] == expect.get("error")
    assert result["certificateSha256"] == expect.get("certificateSha256")


def test_the_vectors_cover_every_algorithm_and_every_error() -> None:
    """The file is the contract: it must exercise everything SCHEMA.md names."""
    names = [v["name"] for v in VECTOR_FILE["vectors"]]
    assert len(names) == len(set(names))
    valid_algorithms = {v["token"]["algorithm"] for v in VECTOR_FILE["vectors"]
                        if v["expect"]["valid"]}
    assert valid_algorithms == {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                "ES256", "ES384", "ES512"}
    errors = {v["expect"].get("error") for v in VECTOR_FILE["vectors"]}
    assert errors - {None} == {c.value for c in ErrorCode}
    curves = {x509.load_der_x509_certificate(base64.b64decode(v["token"]["certificate"]))
              .public_key().curve.name  # type: ignore[union-attr]
              for v in VECTOR_FILE["vectors"]
              if v["expect"]["valid"] and v["token"]["algorithm"].startswith("ES")}
    assert curves == {"secp256r1", "secp384r1", "secp521r1"}


def test_the_committed_vectors_match_the_generator() -> None:
    result = subprocess.run([sys.executable, str(GENERATOR), "--check"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("change", ["expectation", "requirement"])
def test_the_check_mode_notices_a_changed_expectation(tmp_path: Path, change: str) -> None:
    changed = json.loads(VECTORS.read_text(encoding="utf-8"))
    if change == "expectation":
        changed["vectors"][0]["expect"] = {"valid": False, "error": "MALFORMED"}
    else:  # a vector that needs required revocation status, run without it, would pass
        required = [v for v in changed["vectors"] if v.get("requireRevocation")]
        assert required
        del required[0]["requireRevocation"]
    target = tmp_path / "login-tokens.json"
    target.write_text(json.dumps(changed), encoding="utf-8")
    result = subprocess.run([sys.executable, str(GENERATOR), "--check", "--output",
                             str(target)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "out of date" in result.stderr


def test_the_runner_prints_the_schema_output() -> None:
    result = subprocess.run([sys.executable, "-m", "imza_portal.vectors", str(VECTORS)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)["results"]
    assert [r["name"] for r in results] == [v["name"] for v in VECTOR_FILE["vectors"]]
    assert all(set(r) == {"name", "valid", "error", "certificateSha256"} for r in results)
    assert results == run_file(VECTOR_FILE)["results"]


def test_the_runner_fails_only_on_an_unreadable_file(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "imza_portal.vectors",
                             str(tmp_path / "absent.json")], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0 and result.stdout == ""


def _vector(name: str) -> dict[str, Any]:
    vector: dict[str, Any] = next(v for v in VECTOR_FILE["vectors"] if v["name"] == name)
    return vector


def _file_verifier(clock: Clock) -> LoginVerifier:
    anchors = [x509.load_der_x509_certificate(base64.b64decode(a))
               for a in VECTOR_FILE["anchors"]]
    crls = [x509.load_der_x509_crl(base64.b64decode(c)) for c in VECTOR_FILE["crls"]]
    return LoginVerifier(ORIGIN, anchors, crls, clock=clock)


def test_a_verified_login_names_the_certificate() -> None:
    vector = _vector("es256-p256-valid")
    clock = Clock()
    store = ChallengeStore(clock=clock)
    store.register(vector["challenge"], "s1", T0 - dt.timedelta(seconds=10))
    login = _file_verifier(clock).verify(vector["token"], challenge=vector["challenge"],
                                         store=store, session="s1")
    der = base64.b64decode(vector["token"]["certificate"])
    assert login.sha256 == hashlib.sha256(der).hexdigest() == vector["expect"][
        "certificateSha256"]
    assert login.certificate == x509.load_der_x509_certificate(der)
    assert "CN=Vektor P-256" in login.subject and "Imza Vectors EC CA" in login.issuer
    assert login.serial_number == login.certificate.serial_number
    assert login.subject_serial_number is not None
    assert login.subject_serial_number.startswith("VEC-")
    assert [c.subject.rfc4514_string() for c in login.chain] == [
        "CN=Imza Vectors EC CA,O=Imza Test Vectors,C=AZ",
        "CN=Imza Vectors Root CA,O=Imza Test Vectors,C=AZ"]
    # the same token again is a replay, and the challenge of another session is unknown
    with pytest.raises(LoginError) as replay:
        _file_verifier(clock).verify(vector["token"], challenge=vector["challenge"],
                                     store=store, session="s1")
    assert replay.value.code is ErrorCode.CHALLENGE_USED


def test_a_pinned_end_entity_certificate_is_its_own_anchor() -> None:
    vector = _vector("es256-p256-valid")
    clock = Clock()
    store = ChallengeStore(clock=clock)
    store.register(vector["challenge"], "", T0)
    pinned = x509.load_der_x509_certificate(base64.b64decode(vector["token"]["certificate"]))
    login = LoginVerifier(ORIGIN, [pinned], clock=clock).verify(
        {**vector["token"], "chain": []}, challenge=vector["challenge"], store=store)
    assert login.certificate == pinned and login.chain == ()
    store.register(vector["challenge"], "strict", T0)
    with pytest.raises(LoginError) as strict:
        LoginVerifier(ORIGIN, [pinned], clock=clock, require_revocation=True).verify(
            vector["token"], challenge=vector["challenge"], store=store, session="strict")
    assert strict.value.code is ErrorCode.REVOCATION_UNKNOWN


def test_a_refused_login_still_consumes_the_challenge() -> None:
    vector = _vector("certificate-revoked")
    clock = Clock()
    store = ChallengeStore(clock=clock)
    store.register(vector["challenge"], "", T0)
    verifier = _file_verifier(clock)
    for expected in (ErrorCode.CERT_REVOKED, ErrorCode.CHALLENGE_USED):
        with pytest.raises(LoginError) as refused:
            verifier.verify(vector["token"], challenge=vector["challenge"], store=store)
        assert refused.value.code is expected


def test_signed_message_is_the_protocols() -> None:
    challenge = base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("=")
    message = signed_message("https://portal.e-gov.az", challenge)
    assert message == (hashlib.sha256(b"https://portal.e-gov.az").digest()
                       + hashlib.sha256(bytes(range(32))).digest())
    assert signed_message("https://portal.e-gov.az", challenge + "=") == message


def test_a_verifier_needs_an_anchor() -> None:
    with pytest.raises(ValueError, match="anchor"):
        LoginVerifier(ORIGIN, [])


# --- the challenge store -----------------------------------------------------------------

def test_challenges_are_32_random_bytes_in_base64url() -> None:
    store = ChallengeStore()
    issued = {store.issue() for _ in range(50)}
    assert len(issued) == 50
    for challenge in issued:
        assert len(challenge) == 43 and "=" not in challenge
        assert set(challenge) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        assert len(base64.urlsafe_b64decode(challenge + "=")) == 32


def test_a_challenge_is_used_once_and_only_by_its_session() -> None:
    store = ChallengeStore()
    challenge = store.issue("alice")
    with pytest.raises(LoginError) as other:
        store.consume(challenge, "mallory")
    assert other.value.code is ErrorCode.CHALLENGE_UNKNOWN
    store.consume(challenge + "=", "alice")  # padding is optional (docs/protocol.md)
    with pytest.raises(LoginError) as again:
        store.consume(challenge, "alice")
    assert again.value.code is ErrorCode.CHALLENGE_USED
    with pytest.raises(LoginError) as never:
        store.consume(ChallengeStore().issue("alice"), "alice")
    assert never.value.code is ErrorCode.CHALLENGE_UNKNOWN


def test_a_challenge_expires_after_its_lifetime() -> None:
    clock = Clock()
    store = ChallengeStore(lifetime=300, clock=clock)
    fresh, stale = store.issue(), store.issue()
    clock.at = T0 + dt.timedelta(seconds=300)
    store.consume(fresh)  # exactly the lifetime: still fresh
    clock.at = T0 + dt.timedelta(seconds=301)
    with pytest.raises(LoginError) as late:
        store.consume(stale)
    assert late.value.code is ErrorCode.CHALLENGE_EXPIRED
    with pytest.raises(LoginError) as after:  # expired, and now consumed as well
        store.consume(stale)
    assert after.value.code is ErrorCode.CHALLENGE_USED


def test_old_challenges_are_forgotten() -> None:
    clock = Clock()
    store = ChallengeStore(lifetime=60, clock=clock)
    old = store.issue()
    clock.at = T0 + dt.timedelta(hours=1)
    store.issue()  # issuing purges what is long past its lifetime
    with pytest.raises(LoginError) as forgotten:
        store.consume(old)
    assert forgotten.value.code is ErrorCode.CHALLENGE_UNKNOWN


def test_login_error_codes_are_the_schema_names() -> None:
    schema = (REPO / "portal-kit" / "vectors" / "SCHEMA.md").read_text(encoding="utf-8")
    for code in ErrorCode:
        assert f"`{code.value}`" in schema
    error = LoginError("CERT_REVOKED", "revoked")
    assert error.code is ErrorCode.CERT_REVOKED and str(error) == "CERT_REVOKED: revoked"


# --- online OCSP against a real loopback responder ---------------------------------------

@pytest.fixture(scope="module")
def services(pki: TestPKI) -> Iterator[PkiServices]:
    running = start_services(pki)
    try:
        yield running
    finally:
        running.close()


def _login_token(person: Issued, chain: list[x509.Certificate], challenge: str,
                 origin: str = ORIGIN) -> dict[str, Any]:
    message = signed_message(origin, challenge)
    key = person.key
    if isinstance(key, rsa.RSAPrivateKey):
        algorithm, signature = "PS256", key.sign(
            message, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
            hashes.SHA256())
    else:
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
        algorithm, signature = "ES256", r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return {"format": "imza-auth:1", "certificate": base64.b64encode(person.der).decode(),
            "chain": [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
                      for c in chain],
            "algorithm": algorithm, "signature": base64.b64encode(signature).decode()}


def _login(services: PkiServices, person: Issued, **options: Any) -> str:
    """Verify a fresh token from ``person``; the verified subject or the error code."""
    store = ChallengeStore()
    challenge = store.issue()
    verifier = LoginVerifier(ORIGIN, [services.pki.root.cert], **options)
    token = _login_token(person, [services.pki.intermediate.cert], challenge)
    try:
        return verifier.verify(token, challenge=challenge, store=store).subject
    except LoginError as error:
        return error.code.value


@pytest.mark.parametrize("key_type", ["RSA", "EC"])
def test_ocsp_good_and_revoked(services: PkiServices, key_type: str) -> None:
    good = services.issue(f"login-good-{key_type}", key_type)
    revoked = services.issue(f"login-revoked-{key_type}", key_type)
    services.revoked.add(revoked.cert.serial_number)
    mark = len(services.requests)
    assert _login(services, good, ocsp=True) == good.cert.subject.rfc4514_string()
    assert services.requests[mark:] == ["POST /ocsp"]
    assert _login(services, revoked, ocsp=True) == "CERT_REVOKED"
    assert services.requests[mark:] == ["POST /ocsp", "POST /ocsp"]
    # without OCSP and without a CRL nothing says it is revoked
    assert _login(services, revoked) == revoked.cert.subject.rfc4514_string()
    assert services.requests[mark:] == ["POST /ocsp", "POST /ocsp"]


def test_the_servers_crl_revokes_offline(services: PkiServices) -> None:
    revoked = services.issue("login-crl-revoked", "EC")
    services.revoked.add(revoked.cert.serial_number)
    crl = x509.load_der_x509_crl(services.crl())
    assert _login(services, revoked, crls=[crl]) == "CERT_REVOKED"


def test_a_responder_that_is_down_is_no_status(services: PkiServices) -> None:
    person = services.issue("login-ocsp-down", "EC", crl_url=False, ocsp_path="/ocsp-down")
    mark = len(services.requests)
    assert _login(services, person, ocsp=True) == person.cert.subject.rfc4514_string()
    assert _login(services, person, ocsp=True, require_revocation=True) == (
        "REVOCATION_UNKNOWN")
    assert services.requests[mark:] == ["POST /ocsp-down", "POST /ocsp-down"]


def test_an_ocsp_answer_for_another_certificate_does_not_count(
        services: PkiServices) -> None:
    """A transport that replays the responder's answer about a good certificate (with
    its nonce) for a revoked one: refused, so the status stays unknown."""
    good = services.issue("login-replay-good", "EC")
    revoked = services.issue("login-replay-revoked", "EC")
    services.revoked.add(revoked.cert.serial_number)
    from cryptography.x509 import ocsp

    def replaying(url: str, request: bytes) -> bytes:
        asked = ocsp.load_der_ocsp_request(request)
        swapped = (ocsp.OCSPRequestBuilder()
                   .add_certificate(good.cert, services.pki.intermediate.cert, hashes.SHA256())
                   .add_extension(asked.extensions.get_extension_for_class(
                       x509.OCSPNonce).value, critical=False).build())
        return services.ocsp_response(swapped.public_bytes(serialization.Encoding.DER))

    assert _login(services, revoked, ocsp=replaying, require_revocation=True) == (
        "REVOCATION_UNKNOWN")


# --- the kit as its own distribution -----------------------------------------------------

def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_the_kit_never_imports_the_agent() -> None:
    sources = sorted((KIT / "imza_portal").rglob("*.py"))
    assert len(sources) >= 6
    for source in sources:
        assert "agent" not in _imports(source), source
    code = ("import sys, imza_portal, imza_portal.login, imza_portal.vectors, "
            "imza_portal.revocation, imza_portal.challenges; "
            "print(sorted(m for m in sys.modules if m == 'agent' or m.startswith('agent.')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=KIT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_agents_tree_carries_the_kit_through_its_symlink() -> None:
    link = REPO / "imza_portal"
    assert link.is_symlink() and link.resolve() == (KIT / "imza_portal").resolve()


@pytest.mark.wheel
@pytest.mark.timeout(300)
def test_the_kits_wheel_needs_cryptography_only(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(KIT, source, ignore=shutil.ignore_patterns(
        "__pycache__", "build", "dist", "*.egg-info"))
    out = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                    "--disable-pip-version-check", "--wheel-dir", str(out), str(source)],
                   check=True, timeout=280)
    [wheel] = out.glob("imza_portal-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [metadata_name] = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(metadata_name).decode()
    packages = {n.split("/")[0] for n in names if not n.endswith(".dist-info/") and
                ".dist-info/" not in n}
    assert packages == {"imza_portal"}
    for module in ("login.py", "challenges.py", "errors.py", "revocation.py",
                   "certpath.py", "vectors.py", "py.typed"):
        assert f"imza_portal/{module}" in names
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines()
                if line.startswith("Requires-Dist:")]
    plain = [r for r in requires if "extra ==" not in r]
    extra = [r for r in requires if "extra ==" in r]
    assert [r.split(">")[0].split("=")[0].strip() for r in plain] == ["cryptography"]
    assert extra and all('extra == "documents"' in r for r in extra)
    assert "Provides-Extra: documents" in metadata
