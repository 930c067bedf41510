"""The session-start component check (tests/components.py), run on tiny test modules in a
pytest subprocess whose PATH holds none of the components' programs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from components import COMPONENTS, missing_report

TESTS = Path(__file__).resolve().parent
PYPROJECT = TESTS.parent / "pyproject.toml"

MARKED = '''
import pytest
from components import require_marker

@pytest.mark.verifiers
def test_needs_openssl() -> None:
    pass

def test_needs_nothing() -> None:
    pass

def test_starting_the_daemon_unmarked_fails() -> None:
    with pytest.raises(pytest.fail.Exception, match="not marked @pytest.mark.daemon"):
        require_marker("daemon")
'''

UNMARKED_FIXTURE = '''
import pytest

@pytest.fixture
def softhsm() -> int:
    return 1

def test_uses_the_bed_unmarked(softhsm: int) -> None:
    pass
'''


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest with the project's configuration and only the component plugin, PATH empty."""
    (tmp_path / "test_marked.py").write_text(MARKED, encoding="utf-8")
    (tmp_path / "test_unmarked_fixture.py").write_text(UNMARKED_FIXTURE, encoding="utf-8")
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    env = {**os.environ, "PATH": str(empty), "PYTHONPATH": str(TESTS)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "components",
         "-c", str(PYPROJECT), "--rootdir", str(tmp_path), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_a_missing_component_stops_the_run_before_any_test(tmp_path: Path) -> None:
    done = _pytest(tmp_path, "test_marked.py", "test_unmarked_fixture.py")
    out = done.stdout + done.stderr
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, out
    assert "verifiers: missing openssl, pdfsig, pdftoppm, xmlsec1, certutil" in out
    assert "apt-get install -y openssl poppler-utils xmlsec1 libnss3-tools" in out
    assert "test_uses_the_bed_unmarked: add @pytest.mark.softhsm" in out
    assert "passed" not in out and "skipped" not in out


def test_deselected_components_are_not_needed(tmp_path: Path) -> None:
    done = _pytest(tmp_path, "test_marked.py", "-m", "not verifiers")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed, 1 deselected" in done.stdout


def test_report_names_what_to_install(tmp_path: Path) -> None:
    report = missing_report({"softhsm", "daemon", "not-a-component"}, path=str(tmp_path))
    assert "softhsm: missing softhsm2-util, pkcs11-tool, gcc" in report
    assert "apt-get install -y softhsm2 opensc gcc libp11-kit-dev" in report
    assert '-m "not (softhsm)"' in report
    assert "daemon" not in report.split("install:")[0]  # needs nothing beyond the venv
    assert missing_report({"daemon"}, path=str(tmp_path)) == ""


def test_every_marker_in_the_configuration_has_a_component(
        pytestconfig: pytest.Config) -> None:
    declared = {line.split(":", 1)[0] for line in pytestconfig.getini("markers")}
    assert set(COMPONENTS) <= declared
