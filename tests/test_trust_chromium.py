"""Real Chromium, no --ignore-certificate-errors: after ``trust install`` into a fresh
HOME's ~/.pki/nssdb, an https page served with our leaf loads; without it, it does not."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.tls import trust
from agent.tls.material import TlsMaterial, ensure_tls_material, ssl_context

pytestmark = [pytest.mark.browser]

MARKER = "imza-agent-tls-marker-7f3a"
CHROMIUM = "/usr/bin/chromium"


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"<html><body><p id='m'>{MARKER}</p></body></html>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def material(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TlsMaterial:
    monkeypatch.setenv("IMZA_AGENT_HOME", str(tmp_path / "agent"))
    return ensure_tls_material(tmp_path / "agent" / "tls")


@pytest.fixture
def https_port(material: TlsMaterial) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    server.socket = ssl_context(material).wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _load_in_chromium(home: Path, url: str) -> tuple[str, str]:
    """(DOM, log) of one headless page load."""
    assert Path(CHROMIUM).is_file(), "Debian's chromium is required: apt-get install chromium"
    env = {**os.environ, "HOME": str(home)}
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={home / 'chromium-profile'}",
         "--dump-dom", url],
        env=env, capture_output=True, text=True, timeout=60)
    return done.stdout, done.stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
@pytest.mark.verifiers
def test_chromium_trusts_the_installed_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          material: TlsMaterial, https_port: int,
                                          host: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    assert shutil.which("certutil"), "certutil is required: apt-get install libnss3-tools"
    assert trust.main("install") == 0
    dom, _ = _load_in_chromium(home, f"https://{host}:{https_port}/")
    assert dom.count(MARKER) == 1


def test_chromium_refuses_without_the_ca(tmp_path: Path, https_port: int) -> None:
    home = tmp_path / "untrusting-home"
    home.mkdir()
    dom, log = _load_in_chromium(home, f"https://127.0.0.1:{https_port}/")
    assert MARKER not in dom
    assert "ERR_CERT_AUTHORITY_INVALID" in log
