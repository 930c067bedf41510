"""Where the agent keeps its user data: the platform's user data dir, never the cwd.

``IMZA_AGENT_HOME`` overrides it (tests, portable installs). The configuration file the
agent reads when no ``--config`` is given lives in the platform's user config dir
(``$XDG_CONFIG_HOME/imza-agent/config.toml``, i.e. ``~/.config/imza-agent/config.toml``)."""

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


CONFIG_FILE_NAME = "config.toml"


def config_dir() -> Path:
    """The user's config dir for the agent; not created here (no file is a valid config)."""
    return Path(platformdirs.user_config_dir(APP_NAME, False))


def default_config_file() -> Path:
    return config_dir() / CONFIG_FILE_NAME
