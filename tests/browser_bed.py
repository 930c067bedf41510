"""What the Chromium end-to-end tests share (tests/e2e/test_*.py, tests/test_demo_portal_page.py):
the tools they drive, the demo portal's certificate pin for Chromium, and a HOME whose NSS
database trusts an agent's CA, put there by the agent's own `imza-agent trust install`."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from daemon import REPO, Daemon

from agent.demo_portal.server import PortalServer

E2E = REPO / "tests" / "e2e"
CHROMIUM = "/usr/bin/chromium"
PERMISSIONS = ["select", "sign", "auth", "tokens"]  # what the portal's policy grants


def require_chromium_tools() -> None:
    # The session-start check (tests/components.py) says the same; a test installs nothing.
    assert shutil.which("node"), "node is required: apt-get install nodejs npm"
    assert Path(CHROMIUM).is_file(), "Debian's chromium is required: apt-get install chromium"
    assert (E2E / "node_modules" / "playwright-core").is_dir(), \
        "playwright-core is required: (cd tests/e2e && npm ci), or bash scripts/test.sh"


def spki_hash(cert_path: Path) -> str:
    """Chromium's `--ignore-certificate-errors-spki-list` entry for this certificate."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def policy_file(agent: Daemon) -> Path:
    """The system policy file Daemon.start wrote for this agent."""
    return agent.home.parent / f"{agent.home.name}-policy.toml"


def agent_env(agent: Daemon, **extra: str) -> dict[str, str]:
    """The environment of a CLI command meant for this agent."""
    return {**os.environ, "IMZA_AGENT_HOME": str(agent.home),
            "IMZA_AGENT_SYSTEM_POLICY": str(policy_file(agent)), **extra}


def trusting_home(agent: Daemon, home: Path) -> Path:
    """``home`` (made here) with an NSS database that trusts ``agent``'s CA."""
    home.mkdir()
    done = subprocess.run([sys.executable, "-m", "agent.cli", "trust", "install"], cwd=REPO,
                          env=agent_env(agent, HOME=str(home)), capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return home


@contextlib.contextmanager
def portal_with_demo_agent(tmp: Path, pin: str) -> Iterator[tuple[PortalServer, Daemon]]:
    """The demo portal as https://portal.test, trusting the demo identity's CA, and a
    running agent (home ``tmp/agent``, its demo identity) whose locked policy grants the
    portal PERMISSIONS; its scripted user picks the first certificate and types ``pin``."""
    portal = PortalServer(anchors=[tmp / "agent" / "demo" / "demo-root-ca.pem"],
                          public_host="portal.test").start()
    agent = Daemon(home=tmp / "agent", modules=[], env={},
                   policy={"locked": True,
                           "allow": [{"origin": portal.origin, "permissions": PERMISSIONS}]},
                   answers={"certificate": "first", "pin": pin})
    try:
        agent.start()
        yield portal, agent
    finally:
        agent.stop()
        portal.stop()


def valid_pdfsig(pdf: bytes, path: Path) -> str:
    """poppler's ``pdfsig`` on ``pdf`` (written to ``path``): its report, which must say the
    first signature is valid."""
    path.write_bytes(pdf)
    assert shutil.which("pdfsig"), "pdfsig is required: apt-get install poppler-utils"
    done = subprocess.run(["pdfsig", str(path)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert "Signature #1" in done.stdout, done.stdout + done.stderr
    assert "Signature is Valid" in done.stdout, done.stdout
    return done.stdout
