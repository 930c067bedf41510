"""What the Chromium end-to-end tests share (tests/e2e/test_*.py, tests/test_demo_portal_page.py):
the tools they drive, the demo portal's certificate pin for Chromium, and a HOME whose NSS
database trusts an agent's CA, put there by the agent's own `imza-agent trust install`."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from daemon import REPO, Daemon

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
