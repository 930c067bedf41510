"""The three login-token verifiers of the portal kit — Python (portal-kit/python), Node.js
(portal-kit/node) and Java (portal-kit/java, built with plain javac) — run the committed
vectors (portal-kit/vectors/login-tokens.json) and a vectors file made here from fresh
``auth.login`` tokens of a real agent (the demo identity, SoftHSM's RSA and P-256
authentication keys, and P-384 and P-521 keys on a third token: every algorithm the agent
emits, RS256 and ES256/ES384/ES512). Every runner must give each vector's expected
answer, and the three must agree (portal-kit/vectors/SCHEMA.md)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from daemon import REPO, Daemon, copy_softhsm
from test_webeid_token import TOKEN_W_PIN, EcIdentity, add_token_w
from testbed.softhsm import ALIYEV, IVANOV, SoftHsmBed

VECTORS = REPO / "portal-kit" / "vectors" / "login-tokens.json"
NODE_RUNNER = REPO / "portal-kit" / "node" / "bin" / "run-vectors.mjs"
JAVA_SOURCES = REPO / "portal-kit" / "java" / "src" / "main" / "java"
RUNNERS = ["python", "node", "java"]
GOV = "https://www.e-gov.az"  # allow-listed by the shipped defaults: no consent dialog
ELSEWHERE = "https://giris.turkiye.gov.tr"  # allow-listed too: a token made for another site
DEMO_ANSWERS = {"certificate": {"holder": "DEMO"}, "pin": "0000"}


def _program(name: str) -> str:
    found = shutil.which(name)
    if found is None:  # a real component: missing fails, never skips
        pytest.fail(f"{name} is not installed (apt-get install -y "
                    f"{'nodejs' if name == 'node' else 'default-jdk-headless'})", pytrace=False)
    return found


@pytest.fixture(scope="module")
def java_classes() -> Iterator[Path]:
    sources = sorted(str(p) for p in JAVA_SOURCES.rglob("*.java"))
    assert sources, f"no Java sources under {JAVA_SOURCES}"
    with tempfile.TemporaryDirectory(prefix="imza-portal-java-") as tmp:
        compiled = subprocess.run([_program("javac"), "-d", tmp, *sources],
                                  capture_output=True, text=True, timeout=300)
        assert compiled.returncode == 0, compiled.stderr[-4000:]
        yield Path(tmp)


def _command(runner: str, file: Path, request: pytest.FixtureRequest) -> list[str]:
    if runner == "python":
        return [sys.executable, "-m", "imza_portal.vectors", str(file)]
    if runner == "node":
        assert NODE_RUNNER.is_file(), f"{NODE_RUNNER} is missing"
        return [_program("node"), str(NODE_RUNNER), str(file)]
    classes: Path = request.getfixturevalue("java_classes")
    return [_program("java"), "-cp", str(classes), "az.imza.portal.RunVectors", str(file)]


def run(runner: str, file: Path, request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    result = subprocess.run(_command(runner, file, request), cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, f"{runner}: {result.stderr[-4000:]}"
    results: list[dict[str, Any]] = json.loads(result.stdout)["results"]
    return results


def assert_matches(runner: str, data: dict[str, Any], results: list[dict[str, Any]]) -> None:
    vectors = data["vectors"]
    assert [r["name"] for r in results] == [v["name"] for v in vectors], runner
    wrong = []
    for vector, result in zip(vectors, results, strict=True):
        expect = vector["expect"]
        wanted = {"valid": expect["valid"], "error": expect.get("error"),
                  "certificateSha256": expect.get("certificateSha256")}
        got = {k: result.get(k) for k in wanted}
        if got != wanted:
            wrong.append(f"{vector['name']}: expected {wanted}, got {got}")
    assert not wrong, f"{runner} disagrees with the vectors:\n" + "\n".join(wrong)


# --- the committed vectors ---------------------------------------------------------------

@pytest.mark.parametrize("runner", RUNNERS)
def test_committed_vectors(runner: str, request: pytest.FixtureRequest) -> None:
    data = json.loads(VECTORS.read_text(encoding="utf-8"))
    assert len(data["vectors"]) >= 40
    assert_matches(runner, data, run(runner, VECTORS, request))


def test_the_three_runners_agree_on_the_committed_vectors(
        request: pytest.FixtureRequest) -> None:
    outputs = {runner: run(runner, VECTORS, request) for runner in RUNNERS}
    assert outputs["node"] == outputs["python"]
    assert outputs["java"] == outputs["python"]


# --- fresh tokens from a real agent ------------------------------------------------------

@pytest.fixture(scope="module")
def agents(softhsm: SoftHsmBed) -> Iterator[tuple[Daemon, Daemon, dict[str, EcIdentity]]]:
    """The demo identity's agent (it exists only where no key store does) and an agent
    with SoftHSM tokens A (RSA authentication key), B (P-256) and W (P-384, P-521)."""
    with tempfile.TemporaryDirectory(prefix="imza-login-vectors-") as tmp:
        conf = copy_softhsm(softhsm.conf, Path(tmp) / "softhsm")
        added = add_token_w(softhsm, softhsm.pki, conf, Path(tmp))
        assert sorted(added) == ["ES384", "ES512"]
        demo = Daemon(home=Path(tmp) / "demo", modules=[], env={},
                      answers=DEMO_ANSWERS).start()
        try:
            hsm = Daemon(home=Path(tmp) / "hsm", modules=[softhsm.module],
                         env={"SOFTHSM2_CONF": str(conf)}).start()
            try:
                yield demo, hsm, added
            finally:
                hsm.stop()
        finally:
            demo.stop()


def _rfc3339(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _der_b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


async def _login(agent: Daemon, origin: str, challenge: str) -> dict[str, Any]:
    async with agent.client(origin) as page:
        token: dict[str, Any] = (await page.call("auth.login", {"challenge": challenge}))["token"]
        return token


def _flip(token: dict[str, Any]) -> dict[str, Any]:
    signature = bytearray(base64.b64decode(token["signature"]))
    signature[-1] ^= 0x01
    return {**token, "signature": base64.b64encode(bytes(signature)).decode()}


@pytest.fixture(scope="module")
def fresh_file(agents: tuple[Daemon, Daemon, dict[str, EcIdentity]], softhsm: SoftHsmBed,
               tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fresh") / "agent-tokens.json"
    path.write_text(json.dumps(asyncio.run(_fresh_vectors(*agents, softhsm)), indent=1),
                    encoding="utf-8")
    return path


async def _fresh_vectors(demo: Daemon, hsm: Daemon, token_w: dict[str, EcIdentity],
                         softhsm: SoftHsmBed) -> dict[str, Any]:
    demo_root = x509.load_pem_x509_certificate(
        (demo.home / "demo" / "demo-root-ca.pem").read_bytes())
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    issued = _rfc3339(now - dt.timedelta(seconds=5))
    vectors: list[dict[str, Any]] = []

    def vector(name: str, challenge: str, token: Any, expect: dict[str, Any], *,
               used: bool = False) -> None:
        vectors.append({"name": name, "description": f"{name} (agent-made)",
                        "now": _rfc3339(now), "origin": GOV, "challenge": challenge,
                        "challengeIssuedAt": issued, "challengeUsed": used, "token": token,
                        "expect": expect})

    identities = [("demo", demo, DEMO_ANSWERS, "ES256"),
                  ("softhsm-rsa", hsm, {"certificate": {"holder": ALIYEV[0]},
                                   "pin": softhsm.tokens["A"].pin}, "RS256"),
                  ("softhsm-ec", hsm, {"certificate": {"holder": IVANOV[0]},
                                  "pin": softhsm.tokens["B"].pin}, "ES256"),
                  # token W (test_webeid_token.add_token_w): the larger curves
                  *((f"softhsm-{algorithm.lower()}", hsm,
                     {"certificate": {"holder": identity.holder}, "pin": TOKEN_W_PIN},
                     algorithm) for algorithm, identity in sorted(token_w.items()))]
    for label, agent, answers, algorithm in identities:
        agent.set_answers(answers)
        challenge = secrets.token_urlsafe(32)
        token = await _login(agent, GOV, challenge)
        assert token["format"] == "imza-auth:1" and token["algorithm"] == algorithm, token
        sha256 = hashlib.sha256(base64.b64decode(token["certificate"])).hexdigest()
        vector(f"{label}-valid", challenge, token, {"valid": True, "certificateSha256": sha256})
        vector(f"{label}-replayed", challenge, token,
               {"valid": False, "error": "CHALLENGE_USED"}, used=True)
        vector(f"{label}-other-challenge", secrets.token_urlsafe(32), token,
               {"valid": False, "error": "SIGNATURE_INVALID"})
        vector(f"{label}-tampered", challenge, _flip(token),
               {"valid": False, "error": "SIGNATURE_INVALID"})
        elsewhere_challenge = secrets.token_urlsafe(32)
        elsewhere = await _login(agent, ELSEWHERE, elsewhere_challenge)
        vector(f"{label}-made-for-another-origin", elsewhere_challenge, elsewhere,
               {"valid": False, "error": "SIGNATURE_INVALID"})
    return {
        "format": "imza-login-vectors:1", "generator": "tests/test_login_vectors.py",
        "origin": GOV, "challengeLifetimeSeconds": 300,
        # The portal trusts both roots; the test PKI's intermediate is configured as an
        # anchor too, for tokens whose chain the token itself does not hold.
        "anchors": [_der_b64(demo_root), _der_b64(softhsm.pki.root.cert),
                    _der_b64(softhsm.pki.intermediate.cert)],
        "crls": [], "vectors": vectors}


@pytest.mark.daemon
@pytest.mark.softhsm
@pytest.mark.parametrize("runner", RUNNERS)
def test_fresh_agent_tokens(runner: str, fresh_file: Path,
                            request: pytest.FixtureRequest) -> None:
    data = json.loads(fresh_file.read_text(encoding="utf-8"))
    algorithms = {v["token"]["algorithm"] for v in data["vectors"] if v["expect"]["valid"]}
    assert algorithms == {"RS256", "ES256", "ES384", "ES512"}  # all the agent emits
    assert_matches(runner, data, run(runner, fresh_file, request))


@pytest.mark.daemon
@pytest.mark.softhsm
def test_the_three_runners_agree_on_fresh_tokens(fresh_file: Path,
                                                 request: pytest.FixtureRequest) -> None:
    outputs = {runner: run(runner, fresh_file, request) for runner in RUNNERS}
    assert outputs["node"] == outputs["python"]
    assert outputs["java"] == outputs["python"]
