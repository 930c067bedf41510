"""Issue 18 §2: the page SDK is an npm package a portal installs (extension/sdk/), packed
here by ``npm pack`` as it would be for publishing.

- the tarball holds the module, its types, its README and package.json, nothing else;
- package.json names the protocol version the SDK speaks, and it is the agent's and the
  module's; the package version is the module's SDK_VERSION;
- ESM only, ``exports`` and ``types`` resolve to files in the tarball, no side effects on
  import;
- the hand-written types describe the module: every export is declared, Reason and Kind
  have exactly the module's values, a page's code compiles under ``tsc --strict`` against
  the installed tarball, and misuse does not.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from daemon import REPO
from packed_sdk import SDK_DIR, PackedSdk, packed_sdk

from agent import PROTOCOL_VERSION

TSC = REPO / "tests" / "e2e" / "node_modules" / ".bin" / "tsc"
PACKAGE_FILES = {"package/package.json", "package/imza.js", "package/imza.d.ts",
                 "package/README.md"}

# The module's exports and constants as Node sees them after a plain import, with no
# `window` or WebSocket on the global object (a package with sideEffects: false must not
# need them at import).
EXPORTS_SCRIPT = """
const sdk = await import(process.argv[1]);
console.log(JSON.stringify({
  names: Object.keys(sdk).sort(),
  PROTOCOL: sdk.PROTOCOL, SDK_VERSION: sdk.SDK_VERSION,
  Reason: Object.values(sdk.Reason), Kind: Object.values(sdk.Kind),
  frozen: Object.isFrozen(sdk.Reason) && Object.isFrozen(sdk.Kind),
}));
"""


@pytest.fixture(scope="module")
def packed() -> PackedSdk:
    return packed_sdk()


def _node_exports(module: Path) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None, "node is required: apt-get install nodejs"
    done = subprocess.run([node, "--input-type=module", "-e", EXPORTS_SCRIPT, module.as_uri()],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _project(tmp: Path, packed: PackedSdk, files: dict[str, str]) -> Path:
    """A page project with the tarball installed as node_modules/@imza/agent-sdk."""
    name = packed.manifest["name"]
    shutil.copytree(packed.root, tmp / "node_modules" / name)
    for file_name, text in files.items():
        (tmp / file_name).write_text(text, encoding="utf-8")
    return tmp


def _tsc(project: Path, file_name: str) -> subprocess.CompletedProcess[str]:
    assert TSC.is_file(), "typescript is required: (cd tests/e2e && npm ci)"
    return subprocess.run(
        [str(TSC), "--noEmit", "--strict", "--pretty", "false", "--module", "nodenext",
         "--moduleResolution", "nodenext", "--target", "es2022", "--lib", "es2022,dom",
         file_name], cwd=project, capture_output=True, text=True, timeout=180, check=False)


def test_the_tarball_holds_the_module_its_types_and_readme_only(packed: PackedSdk) -> None:
    assert set(packed.members) == PACKAGE_FILES, packed.members
    assert packed.report["entryCount"] == len(PACKAGE_FILES)
    # what npm packed is the file the demo portal serves, byte for byte
    assert packed.module.read_bytes() == (SDK_DIR / "imza.js").read_bytes()
    assert (packed.root / "imza.d.ts").read_bytes() == (SDK_DIR / "imza.d.ts").read_bytes()
    # the test files next to the source stay out
    assert (SDK_DIR / "test").is_dir()


def test_the_protocol_version_is_the_agents_the_modules_and_the_manifests(
        packed: PackedSdk) -> None:
    manifest = packed.manifest
    module = _node_exports(packed.module)
    assert manifest["imzaAgent"]["protocol"] == PROTOCOL_VERSION == module["PROTOCOL"]
    assert manifest["version"] == module["SDK_VERSION"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", manifest["version"])
    # the types say the same protocol
    types = (packed.root / "imza.d.ts").read_text(encoding="utf-8")
    assert f"export declare const PROTOCOL: {PROTOCOL_VERSION};" in types


def test_the_manifest_is_esm_only_with_exports_types_and_no_side_effects(
        packed: PackedSdk) -> None:
    manifest = packed.manifest
    assert manifest["name"] == "@imza/agent-sdk"
    assert manifest["type"] == "module" and manifest["sideEffects"] is False
    assert manifest["license"] == "Apache-2.0"
    assert manifest["types"] == "./imza.d.ts"
    entry = manifest["exports"]["."]
    assert list(entry) == ["types", "default"]  # "types" must come first to be used
    assert "require" not in entry  # ESM only
    for target in (entry["types"], entry["default"], manifest["main"]):
        assert (packed.root / target).is_file(), target
    assert "private" not in manifest  # publishable
    # importing it touches no browser global (it ran in plain Node above) and its tables
    # are frozen: a page cannot change what a kind means for another script
    assert _node_exports(packed.module)["frozen"] is True


def test_every_export_is_declared_and_reason_and_kind_are_exactly_the_modules(
        packed: PackedSdk, tmp_path: Path) -> None:
    module = _node_exports(packed.module)
    assert {"connect", "Connection", "ImzaError", "Kind", "Reason", "PROTOCOL"} <= set(
        module["names"])

    def union(values: list[str]) -> str:
        return " | ".join(json.dumps(v) for v in values)

    # tsc compiles this only if each runtime export is declared and both constant tables
    # have exactly the runtime's values (an extra or a missing one fails one of the checks)
    check = "\n".join([
        f"import {{ {', '.join(module['names'])} }} from \"@imza/agent-sdk\";",
        f"void [{', '.join(module['names'])}];",
        "type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;",
        "type ReasonValue = (typeof Reason)[keyof typeof Reason];",
        "type KindValue = (typeof Kind)[keyof typeof Kind];",
        f"const reasons: Same<ReasonValue, {union(module['Reason'])}> = true;",
        f"const kinds: Same<KindValue, {union(module['Kind'])}> = true;",
        "void reasons; void kinds;",
    ]) + "\n"
    project = _project(tmp_path, packed, {"exports.mts": check})
    done = _tsc(project, "exports.mts")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_pages_code_compiles_under_strict_against_the_installed_package(
        packed: PackedSdk, tmp_path: Path) -> None:
    usage = (SDK_DIR / "test" / "usage.mts").read_text(encoding="utf-8")
    project = _project(tmp_path, packed, {"usage.mts": usage})
    done = _tsc(project, "usage.mts")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_types_refuse_misuse_on_every_marked_line_and_nowhere_else(
        packed: PackedSdk, tmp_path: Path) -> None:
    misuse = (SDK_DIR / "test" / "misuse.mts").read_text(encoding="utf-8")
    marked = {n for n, line in enumerate(misuse.splitlines(), 1)
              if line.endswith("// @expect-error-line")}
    assert len(marked) >= 10
    project = _project(tmp_path, packed, {"misuse.mts": misuse})
    done = _tsc(project, "misuse.mts")
    assert done.returncode != 0
    failed = {int(m.group(1)) for m in re.finditer(r"^misuse\.mts\((\d+),\d+\): error",
                                                   done.stdout, re.M)}
    assert failed == marked, done.stdout


def test_the_readmes_typescript_example_compiles(packed: PackedSdk, tmp_path: Path) -> None:
    readme = (packed.root / "README.md").read_text(encoding="utf-8")
    (example,) = re.findall(r"```ts\n(.*?)```", readme, re.S)
    assert "connect(" in example
    project = _project(tmp_path, packed, {"readme.mts": example})
    done = _tsc(project, "readme.mts")
    assert done.returncode == 0, done.stdout + done.stderr
