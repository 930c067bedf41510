"""Configuration: no file works, typos are refused, the reference doc is current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent import __version__
from agent.config import Config, ConfigError, load_config
from agent.config_doc import render

ROOT = Path(__file__).resolve().parents[1]


def test_no_file_is_a_valid_configuration() -> None:
    config = load_config(None)
    assert config == Config()
    assert config.server.wss_port == 29170 and config.server.ws_port == 29171


def test_unknown_key_is_refused_with_its_location(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("[server]\nmax_frame_byte = 10\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"server\.max_frame_byte"):
        load_config(path)


def test_bad_value_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("[tokens]\ncall_timeout = -1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"tokens\.call_timeout"):
        load_config(path)


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "agent.toml"
    path.parent.mkdir()
    path.write_text('[tokens]\nmodules = ["lib/x.so"]\n[[tokens.pkcs12]]\npath = "a.p12"\n',
                    encoding="utf-8")
    config = load_config(path)
    assert config.tokens.modules == [tmp_path / "conf" / "lib" / "x.so"]
    assert config.tokens.pkcs12[0].path == tmp_path / "conf" / "a.p12"


def test_configuration_reference_is_current() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == render(), (
        "docs/configuration.md is stale: python -m agent.config_doc > docs/configuration.md")


def test_every_key_appears_in_the_reference() -> None:
    text = render()
    for section, info in Config.model_fields.items():
        assert f"## `[{section}]`" in text
        for key in info.annotation.model_fields:  # type: ignore[union-attr]
            assert f"| `{key}` |" in text


def test_cli_prints_version() -> None:
    out = subprocess.run([sys.executable, "-m", "agent.cli", "--version"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"imza-agent {__version__} (protocol 1)"


def test_cli_reports_a_broken_config_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("[server\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "--config", str(path), "doctor"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and str(path) in proc.stderr


def test_every_limit_the_protocol_names_is_a_setting() -> None:
    """docs/protocol.md once promised a per-format size limit that nothing enforced
    (issue 11, §12). Every limit it names now must be a configuration key, so a page
    author can look it up and an administrator can set it."""
    import re

    keys = {key for section in Config.model_fields.values()
            for key in section.annotation.model_fields}  # type: ignore[union-attr]
    text = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text(
        encoding="utf-8")
    named = set(re.findall(r"`((?:max|rate|bytes)_[a-z_]+|[a-z_]+_(?:per_site|burst|window))`",
                           text))
    assert named, "the protocol names its limits"
    assert sorted(named - keys) == []
    assert "format's own limit" not in text
