"""Session-wide test bed fixtures; all state lives in temp dirs removed after the session."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Importable as ``testbed`` whatever pytest's rootdir/import mode is.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

# Safety net, set before any test module imports agent code: nothing in the session may
# write to the real user data dir, even a test that forgets the ``agent_home`` fixture.
_SESSION_HOME = tempfile.mkdtemp(prefix="imza-agent-home-")
os.environ["IMZA_AGENT_HOME"] = _SESSION_HOME
atexit.register(shutil.rmtree, _SESSION_HOME, ignore_errors=True)

# Component markers: a missing component stops the run at its start (tests/components.py).
from components import (  # noqa: E402
    pytest_collection_finish,  # noqa: F401
    pytest_runtest_setup,  # noqa: F401
    require_marker,
)
from daemon import Daemon  # noqa: E402
from testbed import (  # noqa: E402
    Pkcs12Bed,
    SoftHsmBed,
    TestPKI,
    build_pkcs12,
    build_pki,
    build_softhsm,
)

from agent.keystores.pkcs11 import Pkcs11Store  # noqa: E402

# Hypothesis (tests/test_properties_*.py): the same examples on every run, so CI failures
# reproduce; no example database. Its caches (Unicode tables, constants) would still go to
# ./.hypothesis/: they go to a session temp dir instead, so nothing lands in the checkout.
# A longer local search: HYPOTHESIS_PROFILE=deep (docs/testing.md, "Fuzzing").
_HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="imza-hypothesis-")
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", _HYPOTHESIS_HOME)
atexit.register(shutil.rmtree, _HYPOTHESIS_HOME, ignore_errors=True)
settings.register_profile(
    "ci", database=None, derandomize=True, deadline=None, max_examples=200,
    print_blob=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "deep", parent=settings.get_profile("ci"), derandomize=False, max_examples=20_000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session", autouse=True)
def _daemon_needs_its_marker() -> Iterator[None]:
    """Every ``Daemon.start()`` (tests/daemon.py) checks that its test is marked daemon."""
    start = Daemon.start

    def checked_start(self: Daemon) -> Daemon:
        require_marker("daemon")
        return start(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Daemon, "start", checked_start)
        yield


@pytest.fixture(scope="session")
def bed_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="imza-testbed-") as tmp:
        yield Path(tmp)


@pytest.fixture(scope="session")
def pki() -> TestPKI:
    return build_pki()


@pytest.fixture(scope="session")
def softhsm(pki: TestPKI, bed_dir: Path) -> Iterator[SoftHsmBed]:
    previous = os.environ.get("SOFTHSM2_CONF")
    try:
        yield build_softhsm(bed_dir / "softhsm", pki)
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous


@pytest.fixture
async def softhsm_store(softhsm: SoftHsmBed) -> AsyncIterator[Pkcs11Store]:
    """A PKCS#11 store on the session's SoftHSM module (tokens A and B), closed after the test."""
    store = Pkcs11Store(softhsm.module, env=softhsm.env, call_timeout=15)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(scope="session")
def pkcs12_file(pki: TestPKI, bed_dir: Path) -> Pkcs12Bed:
    return build_pkcs12(bed_dir / "pkcs12", pki)


@pytest.fixture
def agent_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh, empty agent data dir for one test (``IMZA_AGENT_HOME``)."""
    with tempfile.TemporaryDirectory(prefix="imza-agent-home-") as tmp:
        monkeypatch.setenv("IMZA_AGENT_HOME", tmp)
        yield Path(tmp)


@pytest.fixture(scope="module")
def mode_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The file the fault-injecting PKCS#11 module reads its mode from on every call
    (``FAULTY_PKCS11_MODE_FILE``; see tests/native/faulty_pkcs11.c). Starts empty: no fault."""
    path = tmp_path_factory.mktemp("faulty-mode") / "mode"
    path.write_text("", encoding="utf-8")
    return path
