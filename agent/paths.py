"""Where the agent keeps its user data: the platform's user data dir, never the cwd.

``IMZA_AGENT_HOME`` overrides it (tests, portable installs)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "imza-agent"


def data_dir() -> Path:
    override = os.environ.get("IMZA_AGENT_HOME")
    base = Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME, False))
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    return base


def sub_dir(name: str) -> Path:
    path = data_dir() / name
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
