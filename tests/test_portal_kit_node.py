"""The Node.js login-token verifier (portal-kit/node, npm package imza-portal-verify).

Runs its node:test unit tests, its runner on the committed login vectors, TypeScript on its
hand-written declarations, `npm pack` and an install of the tarball into a fresh project
(zero dependencies, nothing native), and online OCSP against the real loopback responder
of tests/pki_services.py. Node is required: a machine without it fails here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from pki_services import PkiServices, start_services
from testbed.pki import TestPKI

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "portal-kit" / "node"
VECTORS = ROOT / "portal-kit" / "vectors" / "login-tokens.json"
E2E_MODULES = ROOT / "tests" / "e2e" / "node_modules"
TSC = E2E_MODULES / ".bin" / "tsc"
NAME = "imza-portal-verify"


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is required: apt-get install nodejs npm"
    return path


def _run(args: list[str], cwd: Path = ROOT, timeout: float = 90,
         home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``home``: where npm keeps its cache and logs (never the checkout)."""
    env = {"PATH": "/usr/bin:/bin", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1",
           "HOME": str(home or cwd)}
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False, env=env)


def _mismatches(vectors: dict[str, Any], output: str) -> list[str]:
    results = json.loads(output)["results"]
    assert [r["name"] for r in results] == [v["name"] for v in vectors["vectors"]]
    wrong = []
    for vector, result in zip(vectors["vectors"], results, strict=True):
        expect = vector["expect"]
        if expect["valid"]:
            ok = (result["valid"] is True and result["error"] is None
                  and result["certificateSha256"] == expect["certificateSha256"])
        else:
            ok = (result["valid"] is False and result["error"] == expect["error"]
                  and result["certificateSha256"] is None)
        if not ok:
            wrong.append(f"{vector['name']}: expected {expect}, got {result}")
    return wrong


@pytest.mark.linux
def test_unit_tests_pass() -> None:
    files = sorted(str(p.relative_to(PACKAGE)) for p in (PACKAGE / "test").glob("*.test.mjs"))
    assert len(files) >= 3, files
    done = _run([_tool("node"), "--test", *files], cwd=PACKAGE, timeout=110)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    passed = re.search(r"^# pass (\d+)$", done.stdout, re.M)
    failed = re.search(r"^# fail (\d+)$", done.stdout, re.M)
    assert passed and failed, done.stdout[-2000:]
    assert int(passed.group(1)) >= 15 and failed.group(1) == "0"


@pytest.mark.linux
def test_runner_matches_every_committed_vector() -> None:
    assert VECTORS.is_file(), "portal-kit/vectors/login-tokens.json is missing (generate.py)"
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    done = _run([_tool("node"), str(PACKAGE / "bin" / "run-vectors.mjs"), str(VECTORS)])
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no INTERNAL_ERROR traces
    assert _mismatches(vectors, done.stdout) == []
    outcomes = {v["expect"].get("error") for v in vectors["vectors"]}
    assert {None, "MALFORMED", "SIGNATURE_INVALID", "CERT_REVOKED"} <= outcomes


@pytest.mark.linux
def test_runner_notices_a_vector_it_disagrees_with(tmp_path: Path) -> None:
    """The comparison above can fail: flip one expectation and the runner's answer differs."""
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    valid = next(v for v in vectors["vectors"] if v["expect"]["valid"])
    valid["token"]["signature"] = base64.b64encode(
        bytes(b ^ 1 for b in base64.b64decode(valid["token"]["signature"]))).decode()
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(vectors), encoding="utf-8")
    done = _run([_tool("node"), str(PACKAGE / "bin" / "run-vectors.mjs"), str(changed)])
    assert done.returncode == 0, done.stderr
    assert _mismatches(vectors, done.stdout) == [
        f"{valid['name']}: expected {valid['expect']}, got "
        f"{{'name': '{valid['name']}', 'valid': False, 'error': 'SIGNATURE_INVALID', "
        f"'certificateSha256': None}}"]
    unreadable = _run([_tool("node"), str(PACKAGE / "bin" / "run-vectors.mjs"),
                       str(tmp_path / "absent.json")])
    assert unreadable.returncode == 2 and unreadable.stdout == ""


NAMES_SCRIPT = """
import { certInfo } from './src/cert-info.mjs';
import { rfc4514 } from './src/names.mjs';
const info = certInfo(Buffer.from(process.argv[1], 'base64'));
console.log(JSON.stringify([rfc4514(info.subject), rfc4514(info.issuer)]));
"""


@pytest.mark.linux
def test_names_are_written_as_the_python_kit_writes_them(pki: TestPKI) -> None:
    """RFC 4514 text of the same certificate from node and from cryptography: escapes,
    a multi-valued RDN, BMPString, an attribute without a short name, non-ASCII letters."""
    def attr(oid: x509.ObjectIdentifier, value: str,
             kind: _ASN1Type | None = None) -> x509.RelativeDistinguishedName:
        made = x509.NameAttribute(oid, value, kind) if kind else x509.NameAttribute(oid, value)
        return x509.RelativeDistinguishedName([made])

    name = x509.Name([
        attr(NameOID.COUNTRY_NAME, "AZ"),
        attr(NameOID.ORGANIZATION_NAME, 'Rəqəmsal, "MMC"'),
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "#Əliyev+Test "),
                                        x509.NameAttribute(NameOID.SERIAL_NUMBER, "AZE-1")]),
        attr(NameOID.LOCALITY_NAME, "Şəki", _ASN1Type.BMPString),
        attr(NameOID.GIVEN_NAME, " lead;<x>\\"),
    ])
    key = ec.generate_private_key(ec.SECP256R1())
    start = pki.root.cert.not_valid_before_utc
    tricky = (x509.CertificateBuilder().subject_name(name).issuer_name(pki.root.cert.subject)
              .public_key(key.public_key()).serial_number(7).not_valid_before(start)
              .not_valid_after(start + (pki.root.cert.not_valid_after_utc - start) / 2)
              .sign(key, hashes.SHA256()))
    for cert in (tricky, pki.intermediate.cert):
        der = cert.public_bytes(serialization.Encoding.DER)
        done = _run([_tool("node"), "--input-type=module", "-e", NAMES_SCRIPT,
                     base64.b64encode(der).decode()], cwd=PACKAGE)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == [cert.subject.rfc4514_string(),
                                           cert.issuer.rfc4514_string()]


@pytest.mark.linux
def test_readme_examples_parse_and_its_table_lists_every_code(tmp_path: Path) -> None:
    readme = (PACKAGE / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```js\n(.*?)```", readme, re.S)
    assert len(blocks) >= 2 and "app.post('/login'" in blocks[0]
    for i, block in enumerate(blocks):
        example = tmp_path / f"example{i}.mjs"
        example.write_text(block, encoding="utf-8")
        done = _run([_tool("node"), "--check", str(example)], cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    table = set(re.findall(r"^\| `([A-Z_]+)` \|", readme, re.M))
    done = _run([_tool("node"), "--input-type=module", "-e",
                 "import { ErrorCodes } from './src/index.mjs';"
                 "console.log(JSON.stringify(Object.keys(ErrorCodes)))"], cwd=PACKAGE)
    assert done.returncode == 0, done.stderr
    codes = json.loads(done.stdout)
    assert table == set(codes) and len(codes) == 13
    schema = (ROOT / "portal-kit" / "vectors" / "SCHEMA.md").read_text(encoding="utf-8")
    assert set(codes) <= set(re.findall(r"`([A-Z_]{6,})`", schema))


def test_sources_use_node_modules_only() -> None:
    imports: set[str] = set()
    for source in [*(PACKAGE / "src").glob("*.mjs"), PACKAGE / "bin" / "run-vectors.mjs"]:
        imports |= set(re.findall(r"^\s*(?:import|export)\b[^'\"]*?from\s+'([^']+)'",
                                  source.read_text(encoding="utf-8"), re.M))
    external = {i for i in imports if not i.startswith(("node:", "./", "../"))}
    assert external == set() and "node:crypto" in imports, imports


# --- the packed package, installed as a portal would ----------------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh project with the `npm pack` tarball installed (offline: no registry)."""
    npm = _tool("npm")
    _tool("node")
    work = tmp_path_factory.mktemp("portal-kit-node")
    packed = _run([npm, "pack", "--json", "--pack-destination", str(work)], cwd=PACKAGE,
                  home=work)
    assert packed.returncode == 0, packed.stderr
    info = json.loads(packed.stdout)[0]
    files = {f["path"] for f in info["files"]}
    assert {"package.json", "README.md", "index.d.ts", "src/index.mjs",
            "bin/run-vectors.mjs"} <= files, files
    assert not any(f.startswith("test/") or f.endswith((".node", ".gyp")) for f in files), files
    project = work / "portal"
    project.mkdir()
    (project / "package.json").write_text(json.dumps(
        {"name": "portal", "private": True, "type": "module"}), encoding="utf-8")
    done = _run([npm, "install", "--offline", "--no-audit", "--no-fund", "--ignore-scripts",
                 str(work / info["filename"])], cwd=project, home=work)
    assert done.returncode == 0, done.stderr
    return project


@pytest.mark.linux
def test_package_has_zero_dependencies(installed: Path) -> None:
    manifest = json.loads((installed / "node_modules" / NAME / "package.json").read_text())
    for field in ("dependencies", "optionalDependencies", "peerDependencies",
                  "bundleDependencies", "bundledDependencies"):
        assert not manifest.get(field), field
    assert manifest["type"] == "module" and manifest["engines"]["node"] == ">=18"
    lock = json.loads((installed / "package-lock.json").read_text())
    assert sorted(lock["packages"]) == ["", f"node_modules/{NAME}"]
    assert not (installed / "node_modules" / NAME / "binding.gyp").exists()


@pytest.mark.linux
def test_installed_package_imports_and_runs_the_vectors(installed: Path) -> None:
    script = (f"import * as kit from '{NAME}';\n"
              "const store = new kit.ChallengeStore();\n"
              "console.log(JSON.stringify({names: Object.keys(kit).sort(),"
              " challenge: store.issue('s'), format: kit.TOKEN_FORMAT}));\n")
    done = _run([_tool("node"), "--input-type=module", "-e", script], cwd=installed)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["names"] == ["ChallengeStore", "ErrorCodes", "LoginError", "LoginVerifier",
                            "TOKEN_FORMAT"]
    assert len(base64.urlsafe_b64decode(out["challenge"] + "=")) == 32
    assert out["format"] == "imza-auth:1"
    runner = installed / "node_modules" / ".bin" / "imza-run-vectors"
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    ran = _run([str(runner), str(VECTORS)], cwd=installed)
    assert ran.returncode == 0, ran.stderr
    assert _mismatches(vectors, ran.stdout) == []


# The copy-paste Express examples, checked by tsc (checkJs) against the kit's declarations:
# Express itself is not installed here, so it is an untyped module; MESSAGES is the
# error table the integration guide leaves to the portal.
EXAMPLE_SHIMS = ("declare module 'express';\ndeclare module 'express-session';\n"
                 "declare const MESSAGES: Record<string, string>;\n")
EXPRESS_EXAMPLES = {"readme-example.mjs": PACKAGE / "README.md",
                    "integration-example.mjs": ROOT / "docs" / "integration.md"}


def _express_example(markdown: Path) -> str:
    (example,) = [b for b in re.findall(r"```js\n(.*?)```", markdown.read_text("utf-8"), re.S)
                  if f"from '{NAME}'" in b]
    assert "app.post('/login'" in example and "verifier.verify(" in example
    return "// @ts-check\n" + example


@pytest.mark.linux
def test_types_check_with_strict_typescript(installed: Path) -> None:
    """One tsc run (it is slow): the typed usage and the README's and the integration
    guide's Express examples compile clean, and the declarations are real types, not
    `any`: the misuse file's one error is reported, and nothing else."""
    assert TSC.is_file(), "typescript is required: (cd tests/e2e && npm ci)"
    assert (E2E_MODULES / "@types" / "node").is_dir(), "@types/node: (cd tests/e2e && npm ci)"
    shutil.copy(PACKAGE / "test" / "types" / "usage.ts", installed / "usage.ts")
    (installed / "shims.d.ts").write_text(EXAMPLE_SHIMS, encoding="utf-8")
    for name, markdown in EXPRESS_EXAMPLES.items():
        (installed / name).write_text(_express_example(markdown), encoding="utf-8")
    (installed / "misuse.ts").write_text(
        f"import {{ LoginError }} from '{NAME}';\n"
        "const e = new LoginError('MALFORMED');\n"
        "const n: number = e.code;\n"
        "export { n };\n", encoding="utf-8")
    done = _run([_tool("node"), str(TSC), "--noEmit", "--strict", "--pretty", "false",
                 "--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022",
                 "--types", "node", "--typeRoots", str(E2E_MODULES / "@types"),
                 "--allowJs", "--checkJs", "usage.ts", "misuse.ts", "shims.d.ts",
                 *EXPRESS_EXAMPLES], cwd=installed, timeout=110)
    # In the examples, untyped Express gives implicit-any parameters (TS7xxx): those are
    # Express's, not the kit's; anything else there is a call the kit does not take.
    errors = [line for line in done.stdout.splitlines() if ": error TS" in line
              and not (line.startswith(tuple(EXPRESS_EXAMPLES)) and ": error TS7" in line)]
    assert done.returncode != 0 and len(errors) == 1, done.stdout + done.stderr
    assert errors[0].startswith("misuse.ts(3,") and "TS2322" in errors[0], errors


# --- online OCSP against the loopback responder ---------------------------------------------


@pytest.fixture(scope="module")
def services(pki: TestPKI) -> Iterator[PkiServices]:
    running = start_services(pki)
    try:
        yield running
    finally:
        running.close()


@pytest.mark.linux
def test_ocsp_against_the_loopback_responder(services: PkiServices, tmp_path: Path) -> None:
    good = services.issue("node-login-good", "EC")
    revoked = services.issue("node-login-revoked")
    services.revoked.add(revoked.cert.serial_number)

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    def identity(issued: Any, algorithm: str) -> dict[str, str]:
        key = issued.key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()).decode()
        return {"certificate": b64(issued.der), "key": key, "algorithm": algorithm}

    der = serialization.Encoding.DER
    setup = {
        "anchors": [b64(services.pki.root.cert.public_bytes(der))],
        "chain": [b64(services.pki.intermediate.cert.public_bytes(der))],
        "identities": {"good": identity(good, "ES256"), "revoked": identity(revoked, "RS256")},
        "ocsp": services.url("/ocsp"),
        "ocspDown": services.url("/ocsp-down"),
    }
    setup_file = tmp_path / "setup.json"
    setup_file.write_text(json.dumps(setup), encoding="utf-8")
    before = len(services.requests)
    done = _run([_tool("node"), str(PACKAGE / "test" / "live-ocsp.mjs"), str(setup_file)],
                cwd=PACKAGE)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    good_sha = hashlib.sha256(good.der).hexdigest()
    assert out["good"] == {"valid": True, "sha256": good_sha}
    assert out["goodRequired"] == {"valid": True, "sha256": good_sha}
    assert out["revoked"] == {"valid": False, "error": "CERT_REVOKED"}
    assert out["revokedViaOverride"] == {"valid": False, "error": "CERT_REVOKED"}
    # without OCSP (and no CRL configured) nothing says it is revoked
    assert out["revokedOffline"]["valid"] is True
    assert out["downRequired"] == {"valid": False, "error": "REVOCATION_UNKNOWN"}
    assert out["downSoft"] == {"valid": True, "sha256": good_sha}
    assert out["rawGood"] == {"status": "good"}
    assert out["rawRevoked"] == {"status": "revoked"}
    assert "nonce" in out["otherNonce"]["refused"]
    assert "another certificate" in out["otherCertificate"]["refused"]
    assert "not signed" in out["otherIssuer"]["refused"]
    assert "out of date" in out["stale"]["refused"]
    asked = services.requests[before:]
    assert asked.count("POST /ocsp") == 10 and asked.count("POST /ocsp-down") == 2, asked
