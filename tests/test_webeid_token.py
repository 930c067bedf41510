"""``auth.login`` with ``format: "web-eid:1.0"`` against a real daemon: RSA and EC (P-256,
P-384, P-521) authentication keys on SoftHSM tokens, and the demo identity.  Every token
is checked by tests/webeid_verify.py, a verifier written from Web eID's public token
specification that imports nothing from the agent; a token made for one origin fails for
every other, and a malformed request is INVALID_PARAMS before any dialog."""

from __future__ import annotations

import ast
import base64
import datetime as dt
import json
import os
import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from authverify import verify_login_token
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from daemon import Daemon, copy_softhsm
from testbed import SoftHsmBed, TestPKI
from webeid_verify import TokenRejected, verify_web_eid_token

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon]

GOV = "https://www.e-gov.az"  # granted by the shipped defaults: no consent dialog
OTHER = "https://turkiye.gov.tr"  # granted too: a second, independent relying party
SPEC_FIELDS = {"unverifiedCertificate", "algorithm", "signature", "format", "appVersion"}


def web_eid_nonce() -> str:
    """As Web eID's own generator makes them: 32 random bytes in standard base64 (44
    characters, '=' padded), here always with a '+' or '/', which base64url lacks."""
    while True:
        nonce = base64.b64encode(secrets.token_bytes(32)).decode()
        if "+" in nonce or "/" in nonce:
            return nonce


@dataclass(frozen=True)
class EcIdentity:
    holder: str
    algorithm: str
    cert: x509.Certificate


TOKEN_W = "Token W"  # a third SoftHSM token: the session bed has P-256 keys only
TOKEN_W_PIN = "735190"


def _issue_auth(pki: TestPKI, holder: str, key: ec.EllipticCurvePrivateKey
                ) -> x509.Certificate:
    """An EC authentication certificate from the test PKI's intermediate."""
    now = dt.datetime.now(dt.UTC)
    issuer = pki.intermediate
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "AZ"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, holder)]))
            .issuer_name(issuer.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=True, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(issuer.key, hashes.SHA256()))


def _run(*argv: str, conf: Path) -> None:
    subprocess.run(argv, env={**os.environ, "SOFTHSM2_CONF": str(conf)}, check=True,
                   capture_output=True, timeout=60)


def add_token_w(softhsm: SoftHsmBed, pki: TestPKI, conf: Path, work: Path
                ) -> dict[str, EcIdentity]:
    """Initialise token W in the private SoftHSM copy ``conf`` and put a P-384 and a
    P-521 authentication key on it (softhsm2-util), each with its certificate under the
    same CKA_ID (pkcs11-tool)."""
    _run("softhsm2-util", "--init-token", "--free", "--label", TOKEN_W, "--pin", TOKEN_W_PIN,
         "--so-pin", "97531864", conf=conf)
    identities = {}
    for key_id, holder, curve, algorithm in (
            ("0384", "Məmmədova Leyla", ec.SECP384R1(), "ES384"),
            ("0521", "Qasımov Elçin", ec.SECP521R1(), "ES512")):
        key = ec.generate_private_key(curve)
        cert = _issue_auth(pki, holder, key)
        key_file, cert_file = work / f"{algorithm}.key.pem", work / f"{algorithm}.der"
        key_file.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8,
                                               NoEncryption()))
        cert_file.write_bytes(cert.public_bytes(Encoding.DER))
        _run("softhsm2-util", "--import", str(key_file), "--token", TOKEN_W, "--label",
             algorithm, "--id", key_id, "--pin", TOKEN_W_PIN, conf=conf)
        _run("pkcs11-tool", "--module", str(softhsm.module), "--token-label", TOKEN_W,
             "--login", "--pin", TOKEN_W_PIN, "--write-object", str(cert_file),
             "--type", "cert", "--id", key_id, "--label", algorithm, conf=conf)
        key_file.unlink()
        identities[algorithm] = EcIdentity(holder, algorithm, cert)
    return identities


@pytest.fixture(scope="module")
def bed(softhsm: SoftHsmBed, pki: TestPKI, tmp_path_factory: pytest.TempPathFactory
        ) -> tuple[Path, dict[str, EcIdentity]]:
    tmp = tmp_path_factory.mktemp("webeid")
    conf = copy_softhsm(softhsm.conf, tmp / "softhsm")
    return conf, add_token_w(softhsm, pki, conf, tmp)


@pytest.fixture(scope="module")
def ec_identities(bed: tuple[Path, dict[str, EcIdentity]]) -> dict[str, EcIdentity]:
    return bed[1]


@pytest.fixture(scope="module")
def agent(softhsm: SoftHsmBed, bed: tuple[Path, dict[str, EcIdentity]],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    home = tmp_path_factory.mktemp("webeid-home") / "home"
    daemon = Daemon(home=home, modules=[softhsm.module],
                    env={"SOFTHSM2_CONF": str(bed[0])}).start()
    yield daemon
    assert daemon.stop() == 0, daemon.log_text()[-3000:]


async def _login(agent: Daemon, origin: str, challenge: str, **extra: str) -> dict[str, str]:
    async with agent.client(origin, "wss") as page:
        result = await page.call("auth.login", {"challenge": challenge, **extra})
    token: dict[str, str] = result["token"]
    return token


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "ES384", "ES512"])
async def test_web_eid_token_verifies_as_the_specification_says(
        agent: Daemon, softhsm: SoftHsmBed, pki: TestPKI,
        ec_identities: dict[str, EcIdentity], algorithm: str) -> None:
    if algorithm in ec_identities:
        wanted = ec_identities[algorithm]
        holder, pin, expected = wanted.holder, TOKEN_W_PIN, wanted.cert
    else:
        identity = {"RS256": "rsa_auth", "ES256": "ec_auth"}[algorithm]
        token_name = {"RS256": "A", "ES256": "B"}[algorithm]
        holder = softhsm.identity(identity).cert.subject.get_attributes_for_oid(
            NameOID.COMMON_NAME)[0].value
        pin, expected = softhsm.tokens[token_name].pin, softhsm.identity(identity).cert
    agent.set_answers({"certificate": {"holder": holder}, "pin": pin})
    challenge = web_eid_nonce()
    mark = agent.transcript_mark()
    token = await _login(agent, GOV, challenge, format="web-eid:1.0")

    assert set(token) == SPEC_FIELDS
    assert token["format"] == "web-eid:1.0" and token["algorithm"] == algorithm
    assert token["appVersion"].startswith("https://")
    roots, intermediates = [pki.root.cert], [pki.intermediate.cert]
    # A portal receives the token as JSON text; the verifier takes it as such.
    cert = verify_web_eid_token(json.dumps(token), origin=GOV, challenge=challenge,
                                roots=roots, intermediates=intermediates)
    assert cert == expected
    for origin, other in ((GOV, web_eid_nonce()), ("https://e-gov.az", challenge),
                          ("https://www.e-gov.az:8443", challenge)):
        with pytest.raises(TokenRejected):
            verify_web_eid_token(token, origin=origin, challenge=other, roots=roots,
                                 intermediates=intermediates)
    # The nonce string itself is hashed, not its decoded bytes; a look-alike spelling of
    # the same bytes (base64url) is another challenge.
    same_bytes = challenge.replace("+", "-").replace("/", "_")
    with pytest.raises(TokenRejected, match="does not verify"):
        verify_web_eid_token(token, origin=GOV, challenge=same_bytes, roots=roots,
                             intermediates=intermediates)
    picker, pin_dialog = agent.transcript(mark)
    assert picker["purpose"] == "auth" and pin_dialog["origin"] == GOV


async def test_a_token_made_for_another_origin_fails(agent: Daemon, softhsm: SoftHsmBed,
                                                    pki: TestPKI) -> None:
    """A page on another site obtains a token with the portal's own challenge (relayed to
    it): the portal's verifier refuses it, since the agent signed that page's origin."""
    agent.set_answers({"certificate": {"holder": "Иванов"}, "pin": softhsm.tokens["B"].pin})
    challenge = web_eid_nonce()
    relayed = await _login(agent, OTHER, challenge, format="web-eid:1.0")
    roots, intermediates = [pki.root.cert], [pki.intermediate.cert]
    with pytest.raises(TokenRejected, match="does not verify"):
        verify_web_eid_token(relayed, origin=GOV, challenge=challenge, roots=roots,
                             intermediates=intermediates)
    assert verify_web_eid_token(relayed, origin=OTHER, challenge=challenge, roots=roots,
                                intermediates=intermediates) == softhsm.identity("ec_auth").cert


async def test_default_format_is_unchanged(agent: Daemon, softhsm: SoftHsmBed,
                                           pki: TestPKI) -> None:
    """Without ``format`` (or with ``imza-auth:1``) the agent's own token, which the Web
    eID verifier does not take for one of its own."""
    agent.set_answers({"certificate": {"holder": "Иванов"}, "pin": softhsm.tokens["B"].pin})
    challenge = secrets.token_urlsafe(32)
    roots, intermediates = [pki.root.cert], [pki.intermediate.cert]
    for extra in ({}, {"format": "imza-auth:1"}):
        token = await _login(agent, GOV, challenge, **extra)
        assert token["format"] == "imza-auth:1"
        verify_login_token(token, origin=GOV, challenge=challenge, root=pki.root.cert,
                           intermediates=intermediates)
        with pytest.raises(TokenRejected, match="format"):
            verify_web_eid_token(token, origin=GOV, challenge=challenge, roots=roots,
                                 intermediates=intermediates)


@pytest.mark.parametrize(("params", "field"), [
    ({"challenge": secrets.token_urlsafe(32), "format": "web-eid:2.0"}, "format"),
    ({"challenge": secrets.token_urlsafe(32), "format": "WEB-EID:1.0"}, "format"),
    ({"challenge": secrets.token_urlsafe(32), "format": 1}, "format"),
    # base64url is not the standard base64 a Web eID nonce is written in
    ({"challenge": "-_" + secrets.token_urlsafe(33)[:42], "format": "web-eid:1.0"},
     "challenge"),
    # 43 characters (unpadded): shorter than Web eID's 44
    ({"challenge": base64.b64encode(bytes(32)).decode()[:43], "format": "web-eid:1.0"},
     "challenge"),
    # 129 characters: longer than either format allows
    ({"challenge": base64.b64encode(bytes(97)).decode()[:129], "format": "web-eid:1.0"},
     "challenge"),
    # the agent's own format still takes base64url only
    ({"challenge": web_eid_nonce()}, "challenge"),
])
async def test_bad_format_or_challenge_is_invalid_params_without_a_dialog(
        agent: Daemon, params: dict[str, object], field: str) -> None:
    mark = agent.transcript_mark()
    async with agent.client(GOV, "wss") as page:
        refused = await page.error("auth.login", params)
    assert refused.code == -32602 and refused.reason == "INVALID_PARAMS"
    assert [f["field"] for f in refused.data["fields"]] == [field]
    assert agent.transcript(mark) == []


DEMO_ANSWERS = {"certificate": {"holder": "DEMO"}, "pin": "0000"}


async def test_the_demo_identity_gives_a_web_eid_token_too() -> None:
    """The built-in demo identity (modules=[]), verified against the demo root the agent
    wrote for portals."""
    with tempfile.TemporaryDirectory(prefix="imza-webeid-demo-") as tmp:
        daemon = Daemon(home=Path(tmp) / "home", modules=[], env={},
                        answers=DEMO_ANSWERS).start()
        try:
            challenge = web_eid_nonce()
            token = await _login(daemon, GOV, challenge, format="web-eid:1.0")
            root = x509.load_pem_x509_certificate(
                (daemon.home / "demo" / "demo-root-ca.pem").read_bytes())
            cert = verify_web_eid_token(token, origin=GOV, challenge=challenge, roots=[root])
            assert "DEMO" in cert.subject.rfc4514_string()
            with pytest.raises(TokenRejected):
                verify_web_eid_token(token, origin=OTHER, challenge=challenge, roots=[root])
        finally:
            assert daemon.stop() == 0, daemon.log_text()[-3000:]


def test_the_verifier_imports_nothing_from_the_agent() -> None:
    tree = ast.parse((Path(__file__).parent / "webeid_verify.py").read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert "cryptography" in imported
    assert not imported & {"agent", "imza_portal", "pydantic"}
