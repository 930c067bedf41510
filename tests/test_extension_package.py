"""The browser extension as a user gets it: one command (installer/extension/package.py,
the same code as `python -m agent.browser_extension`) builds the Chromium zip with the fixed
key and the signed-ready Firefox .xpi; both are reproducible, agree with the development
build (extension/build.mjs), and carry exactly the extension's sources.

Firefox loading the .xpi is tests/e2e/test_firefox.py; Chromium loading the same manifest,
tests/e2e/test_browser.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from agent import browser_extension
from agent.platform.native_messaging import CHROMIUM_EXTENSION_ID, FIREFOX_EXTENSION_ID

REPO = Path(__file__).resolve().parent.parent
EXTENSION = REPO / "extension"
PACKAGE = REPO / "installer" / "extension" / "package.py"
DOC = REPO / "docs" / "extension.md"


def _build(out: Path, *extra: str, env: dict[str, str] | None = None) -> dict[str, Path]:
    # -I -S: no site-packages at all, so the packager needs nothing but the standard
    # library and the checkout (no venv, no node).
    done = subprocess.run([sys.executable, "-I", "-S", str(PACKAGE), "--out", str(out),
                           "--json", *extra], cwd=out.parent, capture_output=True, text=True,
                          timeout=60, check=False, env=env)
    assert done.returncode == 0, done.stderr
    return {browser: Path(path) for browser, path in json.loads(done.stdout).items()}


def _entries(package: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(package) as archive:
        assert archive.testzip() is None
        return {name: archive.read(name) for name in archive.namelist()}


def _manifest(package: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(_entries(package)["manifest.json"])
    return manifest


def _chromium_id(key_b64: str) -> str:
    """What Chromium derives from a manifest key: SHA-256 of the SPKI, first 32 hex
    digits mapped 0-f → a-p."""
    digest = hashlib.sha256(base64.b64decode(key_b64)).hexdigest()[:32]
    return "".join(chr(ord("a") + int(c, 16)) for c in digest)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _build(tmp_path_factory.mktemp("packages") / "out")


def test_one_command_builds_a_zip_for_chromium_and_an_xpi_for_firefox(
        built: dict[str, Path]) -> None:
    version = json.loads((EXTENSION / "manifest.base.json").read_text())["common"]["version"]
    assert built["chromium"].name == f"imza-agent-chromium-{version}.zip"
    assert built["firefox"].name == f"imza-agent-firefox-{version}.xpi"
    sources = {p.name: p.read_bytes() for p in (EXTENSION / "src").iterdir()}
    for package in built.values():
        entries = _entries(package)
        # the manifest at the root, first (where AMO and Chromium look), then the sources
        # byte for byte: nothing else (no dist/, no SDK, no stray files)
        with zipfile.ZipFile(package) as archive:
            assert archive.namelist()[0] == "manifest.json"
            assert all(i.external_attr >> 16 == 0o100644 for i in archive.infolist())
        assert {n: b for n, b in entries.items() if n != "manifest.json"} == sources


def test_the_chromium_package_has_the_fixed_key_of_the_allowed_extension_id(
        built: dict[str, Path]) -> None:
    manifest = _manifest(built["chromium"])
    assert _chromium_id(manifest["key"]) == CHROMIUM_EXTENSION_ID
    assert manifest["background"] == {"service_worker": "background.js"}
    assert "browser_specific_settings" not in manifest
    assert manifest["manifest_version"] == 3 and "nativeMessaging" in manifest["permissions"]


def test_the_firefox_package_is_signed_ready_with_the_allowed_add_on_id(
        built: dict[str, Path]) -> None:
    manifest = _manifest(built["firefox"])
    assert manifest["browser_specific_settings"]["gecko"]["id"] == FIREFOX_EXTENSION_ID
    assert manifest["background"] == {"scripts": ["background.js"]}
    assert "key" not in manifest  # Chromium's key means nothing to AMO
    # AMO's rules for a version string: dot-separated numbers
    assert re.fullmatch(r"\d+(\.\d+){0,3}", manifest["version"])
    with zipfile.ZipFile(built["firefox"]) as archive:
        assert all("/" not in name for name in archive.namelist())  # flat, manifest at root


def test_the_packages_are_reproducible(built: dict[str, Path], tmp_path: Path) -> None:
    again = _build(tmp_path / "again")
    for browser, path in built.items():
        assert again[browser].read_bytes() == path.read_bytes(), browser
    # SOURCE_DATE_EPOCH stamps its time, and only that changes
    stamped = _build(tmp_path / "stamped",
                     env={**os.environ, "SOURCE_DATE_EPOCH": "1767225600"})  # 2026-01-01
    with zipfile.ZipFile(stamped["firefox"]) as archive:
        assert {i.date_time for i in archive.infolist()} == {(2026, 1, 1, 0, 0, 0)}
    assert _entries(stamped["firefox"]) == _entries(built["firefox"])


@pytest.mark.browser  # needs node, as the browser tests do
def test_the_packages_agree_with_the_development_build(built: dict[str, Path],
                                                       tmp_path: Path) -> None:
    assert shutil.which("node"), "node is required: apt-get install nodejs"
    subprocess.run(["node", str(EXTENSION / "build.mjs"), str(tmp_path)], check=True,
                   capture_output=True, timeout=60)
    for browser, package in built.items():
        unpacked = {p.name: p.read_bytes() for p in (tmp_path / browser).iterdir()}
        assert _entries(package) == unpacked, browser


def test_the_agent_package_carries_the_extension_sources_without_a_copy() -> None:
    # The wheel build copies what these symlinks point at (tests/test_wheel.py checks it).
    here = Path(browser_extension.__file__).parent
    assert (here / "manifest.base.json").resolve() == EXTENSION / "manifest.base.json"
    assert (here / "src").resolve() == EXTENSION / "src"


def test_the_installed_agent_writes_the_packages_into_its_data_dir(
        built: dict[str, Path], tmp_path: Path) -> None:
    env = {**os.environ, "IMZA_AGENT_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-m", "agent.browser_extension"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    assert set(lines) == {"chromium", "firefox"}
    for browser, path in lines.items():
        assert Path(path).parent == tmp_path / "home" / "extension"
        assert Path(path).read_bytes() == built[browser].read_bytes()


def test_the_docs_say_how_to_load_and_force_install_with_the_right_ids() -> None:
    text = DOC.read_text(encoding="utf-8")
    for needed in ("Load unpacked", "Load Temporary Add-on", "ExtensionInstallForcelist",
                   "installation_mode", "force_installed", "install_url", "update_url",
                   "unlisted", "browser_specific_settings.gecko.id",
                   "installer/extension/package.py"):
        assert needed in text, needed
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", text, re.S)]
    chromium = [b for b in blocks if "ExtensionSettings" in b]
    firefox = [b["policies"] for b in blocks if "policies" in b]
    assert len(chromium) == 1 and len(firefox) == 1
    for policy, extension_id, url_key, storage in (
            (chromium[0], CHROMIUM_EXTENSION_ID, "update_url", "extensions"),
            (firefox[0], FIREFOX_EXTENSION_ID, "install_url", "Extensions")):
        assert list(policy["ExtensionSettings"]) == [extension_id]
        setting = policy["ExtensionSettings"][extension_id]
        assert setting["installation_mode"] == "force_installed"
        assert setting[url_key].startswith("https://")
        # managed storage: only keys the extension's schema declares
        schema = json.loads((EXTENSION / "src" / "managed_schema.json").read_text())
        assert set(policy["3rdparty"][storage][extension_id]) <= set(schema["properties"])
    # every extension ID written in the docs is one of ours
    ids = set(re.findall(r"\b[a-p]{32}\b", text))
    assert ids == {CHROMIUM_EXTENSION_ID}


def test_the_docs_list_the_native_host_directories_the_deb_installs() -> None:
    text = DOC.read_text(encoding="utf-8")
    manifests = (REPO / "installer" / "linux" / "manifests.py").read_text(encoding="utf-8")
    system_dirs = re.findall(r'"\w+": "([a-z/_-]+native-messaging-hosts)"', manifests)
    assert system_dirs
    for directory in system_dirs:
        assert f"`/{directory}/`" in text, directory


@pytest.mark.linux
def test_imza_agent_extension_writes_and_prints_the_packages(
        built: dict[str, Path], tmp_path: Path) -> None:
    env = {**os.environ, "IMZA_AGENT_HOME": str(tmp_path / "home"),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    done = subprocess.run([sys.executable, "-m", "agent.cli", "extension", "--json",
                           "--out", str(tmp_path / "out")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    for browser, path in json.loads(done.stdout).items():
        assert Path(path).parent == tmp_path / "out"
        assert Path(path).read_bytes() == built[browser].read_bytes(), browser
