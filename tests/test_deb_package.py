"""The Debian package on a fresh Debian 12 root: build, install with apt, use, purge.

The suite builds the .deb from this checkout (installer/linux/build-deb.sh), makes a fresh
minimal Debian 12 root with debootstrap from the Debian mirror this machine's apt uses,
installs the package there with ``apt-get install ./….deb`` (so a dependency that only this
development machine has fails here), and inside that root runs the command, the doctor and
the daemon until a WebSocket client gets ``agent.info``. It checks the native messaging
manifests and the autostart entry, then purges the package and checks that no file it
installed is left, while the user's data is.
"""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import json
import os
import re
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

# A build, a debootstrap and two apt runs: minutes, on a cold cache.
pytestmark = [pytest.mark.package, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parent.parent
SUITE = "bookworm"
HOST_NAME = "az.imza.agent"
MANIFESTS = {  # browser → system-wide manifest directory
    "chromium": "etc/chromium/native-messaging-hosts",
    "chrome": "etc/opt/chrome/native-messaging-hosts",
    "edge": "etc/opt/edge/native-messaging-hosts",
    "brave": "etc/opt/brave/native-messaging-hosts",
    "firefox": "usr/lib/mozilla/native-messaging-hosts",
}
# Paths whose content changes by running a system at all, not by our package.
VOLATILE = ("proc", "sys", "dev", "run", "tmp", "var/cache", "var/lib/apt", "var/lib/dpkg",
            "var/log", "var/tmp", "root")
USER_DATA = "root/.local/share/imza-agent"
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
       "DEBIAN_FRONTEND": "noninteractive"}


def host_mirror() -> str:
    """The Debian mirror this machine's apt is configured with (deb822 or one-line)."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for stanza in text.split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1)
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                return parts[1]
    pytest.fail("this machine's apt names no Debian bookworm mirror to bootstrap from")


def run(*args: str, timeout: float = 900, check: bool = True,
        stdin: str = "") -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, input=stdin, capture_output=True, text=True,
                            timeout=timeout, env=ENV, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {result.returncode}:\n"
                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@dataclass
class Root:
    path: Path

    def run(self, *args: str, timeout: float = 900, check: bool = True,
            stdin: str = "") -> subprocess.CompletedProcess[str]:
        return run("chroot", str(self.path), *args, timeout=timeout, check=check, stdin=stdin)

    def files(self) -> set[str]:
        """Every file and link in the root, but for what running a system changes."""
        found: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(self.path):
            rel = os.path.relpath(dirpath, self.path)
            if rel != "." and (rel in VOLATILE or rel.startswith(tuple(v + "/" for v in VOLATILE))):
                dirnames.clear()
                continue
            for name in filenames:
                found.add(os.path.normpath(os.path.join(rel, name)))
            for name in dirnames:  # directory symlinks are files to dpkg
                if os.path.islink(os.path.join(dirpath, name)):
                    found.add(os.path.normpath(os.path.join(rel, name)))
        return found


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deb")
    result = run("bash", str(REPO / "installer/linux/build-deb.sh"), str(out), timeout=1500)
    deb = Path(result.stdout.strip().splitlines()[-1])
    assert deb.is_file() and deb.suffix == ".deb"
    return deb


@pytest.fixture(scope="module")
def fresh_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Root]:
    path = tmp_path_factory.mktemp("debian12") / "root"
    run("debootstrap", "--variant=minbase", SUITE, str(path), host_mirror(), timeout=1500)
    # No service may start inside the root (pcscd is recommended): the policy-rc.d
    # convention says so to invoke-rc.d.
    policy = path / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n", encoding="utf-8")
    policy.chmod(0o755)
    (path / "etc/resolv.conf").write_text(Path("/etc/resolv.conf").read_text(),
                                          encoding="utf-8")
    run("mount", "-t", "proc", "proc", str(path / "proc"))
    try:
        yield Root(path)
    finally:
        run("umount", "-l", str(path / "proc"), check=False)


def package_field(deb: Path, name: str) -> list[str]:
    value = run("dpkg-deb", "-f", str(deb), name).stdout.strip()
    # "python3 (>= 3.11), python3 (<< 3.12), python3-tk" → the package names, once each
    names = [re.split(r"[\s(]", part.strip())[0] for part in value.split(",") if part.strip()]
    return list(dict.fromkeys(names))


def agent_info(port: int, ca: Path) -> dict[str, object]:
    async def ask() -> dict[str, object]:
        context = ssl.create_default_context(cafile=str(ca))
        async with connect(f"wss://127.0.0.1:{port}/v1", ssl=context,
                           origin="https://portal.example") as ws:  # type: ignore[arg-type]
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "agent.info"}))
            return dict(json.loads(await asyncio.wait_for(ws.recv(), 30)))

    return asyncio.run(ask())


def test_package_installs_runs_and_purges_on_a_fresh_debian(deb: Path, fresh_root: Root) -> None:
    root = fresh_root
    # The package's dependencies first, so what the purge must take away is exactly ours.
    root.run("apt-get", "update", "-qq")
    deps = package_field(deb, "Depends") + package_field(deb, "Recommends")
    root.run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *deps)
    before = root.files()

    (root.path / "tmp" / deb.name).write_bytes(deb.read_bytes())
    root.run("apt-get", "install", "-y", "-qq", f"/tmp/{deb.name}")
    installed = set(root.run("dpkg-query", "-L", "imza-agent").stdout.split())

    # On PATH, and it says what it is.
    version = root.run("imza-agent", "--version").stdout
    assert version.startswith("imza-agent ") and "protocol" in version
    assert "COMMAND" in root.run("imza-agent", "--help").stdout
    assert root.run("sh", "-c", "command -v imza-agent").stdout.strip() == "/usr/bin/imza-agent"

    # doctor in JSON, parsed; what it says is the machine's business (no reader here).
    doctor = root.run("imza-agent", "doctor", "--json", check=False)
    assert doctor.returncode in (0, 1), doctor.stderr
    report = json.loads(doctor.stdout)
    assert isinstance(report, dict) and report

    # The daemon, until a WebSocket client over wss gets agent.info.
    config = root.path / "root" / "agent.toml"
    config.write_text('[server]\nwss_port = 0\n[pcsc]\nenabled = false\n', encoding="utf-8")
    daemon = subprocess.Popen(
        ["chroot", str(root.path), "imza-agent", "--config", "/root/agent.toml", "run",
         "--headless"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        runtime = root.path / USER_DATA / "runtime.json"
        deadline = time.monotonic() + 60
        ports: dict[str, int] = {}
        while time.monotonic() < deadline and daemon.poll() is None and "wss" not in ports:
            if runtime.exists():
                with contextlib.suppress(ValueError):
                    ports = json.loads(runtime.read_text(encoding="utf-8")).get("ports", {})
            time.sleep(0.2)
        assert "wss" in ports, f"the agent did not listen: {daemon.poll()}"
        info = agent_info(int(ports["wss"]), root.path / USER_DATA / "tls" / "ca.pem")
        assert info["id"] == 1 and isinstance(info.get("result"), dict), info
        assert info["result"]["version"] in version  # type: ignore[index]
    finally:
        daemon.send_signal(signal.SIGTERM)
        output = daemon.communicate(timeout=30)[0]
    assert daemon.returncode == 0, output
    assert "Traceback" not in output

    # The UI process's toolkit runs from the package's trimmed PySide6 on the packaged
    # dependencies alone: a window with a widget, and a PDF page rendered (offscreen).
    ui = root.run("env", "QT_QPA_PLATFORM=offscreen", "/usr/lib/imza-agent/bin/python3", "-c",
                  "import sys, pypdfium2\n"
                  "from PySide6.QtWidgets import QApplication, QLineEdit\n"
                  "app = QApplication(sys.argv); field = QLineEdit()\n"
                  "field.setEchoMode(QLineEdit.EchoMode.Password); field.show()\n"
                  "app.processEvents(); print('qt', app.platformName())")
    assert ui.stdout.strip() == "qt offscreen", ui.stdout + ui.stderr

    # Native messaging: one manifest per browser family, pointing at an executable host.
    for browser, directory in MANIFESTS.items():
        manifest_path = root.path / directory / f"{HOST_NAME}.json"
        assert manifest_path.is_file(), browser
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        assert manifest["name"] == HOST_NAME and manifest["type"] == "stdio"
        host = root.path / manifest["path"].lstrip("/")
        assert host.is_file() and os.access(host, os.X_OK), manifest["path"]
        allowed = manifest.get("allowed_extensions" if browser == "firefox"
                               else "allowed_origins")
        assert allowed and all(isinstance(a, str) for a in allowed), browser
    # The host starts as a browser starts it, on a pipe; the browser closing the pipe at
    # once ends it quietly.
    host_run = root.run("/usr/lib/imza-agent/native-host", "chrome-extension://x/",
                        check=False, timeout=60)
    assert host_run.returncode == 0 and "Traceback" not in host_run.stderr, host_run.stderr

    # Autostart: an XDG entry that runs the agent from PATH; the menu entry too.
    for entry in ("etc/xdg/autostart/imza-agent.desktop",
                  "usr/share/applications/imza-agent.desktop"):
        desktop = configparser.ConfigParser(interpolation=None)
        desktop.optionxform = str  # type: ignore[assignment,method-assign]
        desktop.read(root.path / entry, encoding="utf-8")
        section = desktop["Desktop Entry"]
        assert section["Type"] == "Application" and section["Exec"] == "imza-agent run"
        assert (root.path / "usr/share/icons/hicolor/256x256/apps/imza-agent.png").is_file()
    assert (root.path / "usr/share/man/man1/imza-agent.1.gz").is_file()
    man = root.run("sh", "-c", "zcat /usr/share/man/man1/imza-agent.1.gz").stdout
    for command in ("run", "doctor", "trust", "journal", "demo", "native-host"):
        assert f"\\fB{command.replace('-', chr(92) + '-')}\\fR" in man, command

    # Purge: nothing the package installed is left; the user's data is.
    root.run("apt-get", "purge", "-y", "-qq", "imza-agent")
    after = root.files()
    left = sorted(after - before)
    assert left == [], f"left after purge: {left[:20]}"
    assert not any((root.path / p.lstrip("/")).is_file() for p in installed)
    assert (root.path / USER_DATA).is_dir(), "the user's data must be left alone"
