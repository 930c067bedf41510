"""The wheel alone is enough: built from a clean copy of the tree, installed into a fresh
venv (no system site-packages, nothing of this checkout on the path), its `imza-agent`
answers `--version`, `doctor`, `run --headless` and `demo --no-browser`.

The venv first gets the bare wheel (the `formats` extra stays optional: `run` and
`doctor` work without pyHanko, `demo` says what to install), then `wheel[formats]`, with
which the demo serves its portal. Each command runs with its own HOME and XDG dirs, a
config with free ports, no vendor modules and no PC/SC, and cwd outside the checkout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect
from websockets.typing import Origin

import agent

# Module-scoped: the build and the two installs are most of the time, and a cold pip cache
# compiles pyscard; a hang still fails here, not the run.
pytestmark = [pytest.mark.wheel, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parent.parent
SDK = REPO / "extension" / "sdk" / "imza.js"
# What a fresh clone has and a build may read: the tracked tree without local state.
LOCAL_STATE = shutil.ignore_patterns(".git", ".venv", "node_modules", "build", "dist",
                                     "*.egg-info", "__pycache__", ".*_cache")
START_TIMEOUT = 30.0


def _wait_for(what: str, probe: Any, process: subprocess.Popen[bytes] | None = None,
              log: Path | None = None) -> Any:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            output = log.read_text(errors="replace") if log else ""
            raise AssertionError(f"exited with {process.returncode} before {what}:\n{output}")
        found = probe()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {START_TIMEOUT} s")


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state == "Z"  # exited; its parent (not us) has yet to reap it


@dataclass
class Venv:
    root: Path
    wheel: Path
    tmp: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def command(self) -> Path:
        return self.root / "bin" / "imza-agent"

    def pip_install(self, requirement: str) -> None:
        subprocess.run([str(self.python), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", requirement],
                       check=True, cwd=self.tmp, timeout=240)

    def has_module(self, name: str) -> bool:
        probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({name!r}) is None)"
        return subprocess.run([str(self.python), "-c", probe], cwd=self.tmp,
                              timeout=30).returncode == 0

    def user(self, name: str) -> User:
        """A user of their own: HOME, XDG dirs, a config with free ports."""
        home = self.tmp / name
        config = home / "imza-agent.toml"
        (home / ".config").mkdir(parents=True)
        config.write_text(
            '[server]\nwss_port = 0\nws_port = 0\n'
            '[tokens]\nknown_modules = false\n'
            '[ui]\nbackend = "none"\ntray = false\n'
            '[pcsc]\nenabled = false\n', encoding="utf-8")
        env = {
            "PATH": f"{self.root / 'bin'}:/usr/bin:/bin", "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / ".data"),
            "XDG_CACHE_HOME": str(home / ".cache"), "XDG_STATE_HOME": str(home / ".state"),
            "LANG": "C.UTF-8",
            # A policy file of ours (none), not /etc's; no system pcscd.
            "IMZA_AGENT_SYSTEM_POLICY": str(home / "no-policy.toml"),
            "PCSCLITE_CSOCK_NAME": str(home / "no-pcscd.sock"),
        }
        return User(self, home, config, env)


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class User:
    venv: Venv
    home: Path
    config: Path
    env: dict[str, str]

    @property
    def data_dir(self) -> Path:
        return self.home / ".data" / "imza-agent"

    def argv(self, *args: str) -> list[str]:
        return [str(self.venv.command), "--config", str(self.config), *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), cwd=self.home, env=self.env,
                              capture_output=True, text=True, timeout=60, check=False)

    def start(self, *args: str, log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            # As from a terminal: Ctrl-C's SIGINT is not ignored, even when the suite
            # itself was started in the background (which ignores it for every child).
            return subprocess.Popen(self.argv(*args), cwd=self.home, env=self.env,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    preexec_fn=_interruptible)

    def runtime(self) -> dict[str, Any] | None:
        try:
            info = json.loads((self.data_dir / "runtime.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        return info if isinstance(info, dict) and info.get("ports") else None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    # Built from a copy: the build writes build/ and *.egg-info next to its sources.
    source = tmp / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=LOCAL_STATE)
    out = tmp / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                    "--disable-pip-version-check", "--wheel-dir", str(out), str(source)],
                   check=True, cwd=tmp, timeout=240)
    (built,) = out.glob("imza_agent-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    tmp = tmp_path_factory.mktemp("venv")
    root = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=120)
    installed = Venv(root, wheel, tmp)
    installed.pip_install(str(wheel))
    return installed


@pytest.fixture(scope="module")
def venv_with_formats(venv: Venv) -> Venv:
    venv.pip_install(f"{venv.wheel}[formats]")
    return venv


# --- the wheel file ------------------------------------------------------------------------

def test_the_wheel_holds_the_package_its_licence_and_nothing_else(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = f"imza_agent-{agent.__version__}.dist-info"
        metadata = archive.read(f"{info}/METADATA").decode()
        licence = archive.read(f"{info}/licenses/LICENSE")
        sdk = archive.read("agent/demo_portal/static/sdk/imza.js")
    # imza_portal: the portal kit (portal-kit/python), which the demo portal uses.
    assert {name.split("/", 1)[0] for name in names} == {"agent", "imza_portal", info}
    assert "imza_portal/login.py" in names and "imza_portal/documents/signer.py" in names
    assert not [n for n in names if re.match(r"(tests|examples|bench|docs|extension)/", n)]
    assert "License-Expression: Apache-2.0" in metadata
    assert "License-File: LICENSE" in metadata
    assert licence == (REPO / "LICENSE").read_bytes()
    # The portal the demo serves, and the page SDK as the build copied it through the
    # symlink: the very bytes of extension/sdk/imza.js, not a copy kept by hand.
    for page in ("index.html", "app.js", "style.css"):
        assert f"agent/demo_portal/static/{page}" in names
    assert sdk == SDK.read_bytes()
    # The browser extension's sources, copied through agent/browser_extension's symlinks,
    # from which `imza-agent extension` makes its packages (no node at build or run time).
    with zipfile.ZipFile(wheel) as archive:
        carried = {name.removeprefix("agent/browser_extension/"): archive.read(name)
                   for name in names if name.startswith("agent/browser_extension/")
                   and not name.endswith(".py")}
    extension = REPO / "extension"
    assert carried == {"manifest.base.json": (extension / "manifest.base.json").read_bytes(),
                       **{f"src/{p.name}": p.read_bytes() for p in (extension / "src").iterdir()}}
    # formats is an extra, not a dependency.
    assert re.search(r"^Requires-Dist: pyhanko\b.*extra == \"formats\"", metadata, re.M)
    assert not re.search(r"^Requires-Dist: pyhanko\b(?!.*extra ==)", metadata, re.M)


# --- the bare wheel: no formats extra --------------------------------------------------------

def test_the_package_comes_from_the_venv_without_pyhanko(venv: Venv) -> None:
    where = subprocess.run([str(venv.python), "-c", "import agent; print(agent.__file__)"],
                           cwd=venv.tmp, capture_output=True, text=True, check=True,
                           timeout=30).stdout.strip()
    assert Path(where).is_relative_to(venv.root) and not Path(where).is_relative_to(REPO)
    assert not venv.has_module("pyhanko"), "run this module in file order: formats come last"


def test_version(venv: Venv) -> None:
    result = venv.user("version").run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"imza-agent {agent.__version__} (protocol ")


def test_doctor(venv: Venv) -> None:
    user = venv.user("doctor")
    result = user.run("doctor", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["agent"]["version"] == agent.__version__
    assert report["agent"]["dataDir"] == str(user.data_dir)  # XDG_DATA_HOME, not ~ of ours
    assert report["demo"]["available"] is True  # no key store: the demo identity is offered
    assert report["modules"] == [] and report["problems"] == []
    text = user.run("doctor")
    assert text.returncode == 0, text.stderr
    assert str(user.data_dir) in text.stdout


def test_run_headless_answers_and_stops_on_sigterm(venv: Venv) -> None:
    user = venv.user("run")
    log = user.home / "run.log"
    process = user.start("run", "--headless", log=log)
    try:
        info = _wait_for("runtime.json with ports", user.runtime, process, log)
        _wait_for("the ready line", lambda: "ready: " in log.read_text(errors="replace"),
                  process, log)
        # wss only: plain ws is a development setting, off by default
        assert info["pid"] == process.pid and set(info["ports"]) == {"wss"}
        context = ssl.create_default_context(cafile=str(user.data_dir / "tls" / "ca.pem"))
        with connect(f"wss://127.0.0.1:{info['ports']['wss']}/v1", ssl=context,
                     origin=Origin("https://portal.example"), open_timeout=10) as ws:
            ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "agent.info"}))
            answer = json.loads(ws.recv(timeout=10))
        assert answer["id"] == 1 and answer["result"]["version"] == agent.__version__
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0, log.read_text(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text(errors="replace")
    assert "Traceback" not in output, output
    assert not (user.data_dir / "runtime.json").exists()  # removed on a clean stop


def test_the_installed_agent_writes_the_extension_packages(venv: Venv) -> None:
    user = venv.user("extension")
    out = user.home / "packages"
    done = subprocess.run([str(venv.python), "-m", "agent.browser_extension", "--json",
                           "--out", str(out)], cwd=user.home, env=user.env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    written = json.loads(done.stdout)
    # the same bytes as the checkout's one command makes (the archives are reproducible)
    ours = subprocess.run([sys.executable, str(REPO / "installer" / "extension" / "package.py"),
                           "--json", "--out", str(venv.tmp / "checkout-packages")],
                          capture_output=True, text=True, timeout=60, check=True)
    for browser, path in json.loads(ours.stdout).items():
        assert Path(written[browser]).read_bytes() == Path(path).read_bytes(), browser
        assert Path(written[browser]).parent == out


def test_demo_without_the_formats_extra_says_what_to_install(venv: Venv) -> None:
    assert not venv.has_module("pyhanko"), "run this module in file order: formats come last"
    user = venv.user("demo-bare")
    result = user.run("demo", "--no-browser", "--port", "0")
    assert result.returncode == 2
    assert "pip install 'imza-agent[formats]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert user.runtime() is None  # it started no agent


# --- with the formats extra ------------------------------------------------------------------

@pytest.fixture
def demo(venv_with_formats: Venv) -> Iterator[tuple[User, str, subprocess.Popen[bytes]]]:
    user = venv_with_formats.user("demo")
    log = user.home / "demo.log"
    process = user.start("demo", "--no-browser", "--port", "0", log=log)
    try:
        line = _wait_for("the portal's address", lambda: re.search(
            r"portal (https://localhost:\d+/\S*)", log.read_text(errors="replace")),
            process, log)
        yield user, line.group(1), process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        # The agent the demo started outlives it by design; stop it.
        info = user.runtime()
        if info is not None:
            os.kill(int(info["pid"]), signal.SIGTERM)
            _wait_for("the demo's agent to stop", lambda: _gone(int(info["pid"])))


def test_demo_serves_the_portal_over_https(
        demo: tuple[User, str, subprocess.Popen[bytes]]) -> None:
    user, url, process = demo
    assert "wss=wss%3A%2F%2F127.0.0.1%3A" in url  # the page is told where the agent is
    assert "ws=ws%3A" not in url  # and never offered plain ws unless it is served
    # The portal uses the agent's certificate: trust the agent's CA only.
    context = ssl.create_default_context(cafile=str(user.data_dir / "tls" / "ca.pem"))
    port = int(url.split(":")[2].split("/")[0])
    base = f"https://127.0.0.1:{port}"
    with urllib.request.urlopen(f"{base}/", context=context, timeout=10) as reply:
        page = reply.read().decode()
    assert reply.status == 200 and "<title>e-Xidmət — DEMO portal</title>" in page
    with urllib.request.urlopen(f"{base}/sdk/imza.js", context=context, timeout=10) as reply:
        assert reply.read() == SDK.read_bytes()
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    assert process.wait(timeout=15) == 0
