"""What each component marker needs on the machine, checked once when the session starts.

A test that needs a real component carries its marker (the list is in pyproject.toml and
docs/testing.md). When any selected test needs a component that is not installed, the run
stops before the first test with one message naming the Debian packages to install: a
missing component fails the run, it never turns into skipped tests.

Loaded by tests/conftest.py (which re-exports the hooks); tests/test_component_check.py
loads it on its own with ``-p components``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# The same paths the test bed uses (testbed/softhsm.py, testbed/native.py, vcard.py,
# e2e/test_browser.py): checking anything else would pass here and fail there.
SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
PKCS11_HEADER = Path("/usr/include/p11-kit-1/p11-kit/pkcs11.h")
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
PLAYWRIGHT = TESTS / "e2e" / "node_modules" / "playwright-core"
PUPPETEER = TESTS / "e2e" / "node_modules" / "puppeteer-core"

VENV_HINT = "bash scripts/venv.sh test,formats"


@dataclass(frozen=True)
class Component:
    """``programs``: a bare name is looked up on PATH, a path must be that executable."""

    packages: str  # Debian packages, as in scripts/system-packages.txt
    programs: tuple[str, ...] = ()
    files: tuple[Path, ...] = ()
    modules: tuple[str, ...] = ()  # Python modules the venv must import
    extra_hint: str = ""  # an install step that is not an apt package

    def missing(self, path: str | None) -> list[str]:
        """What is absent, each as the name a person would look for."""
        absent = [p for p in self.programs if not _found(p, path)]
        absent += [str(f) for f in self.files if not f.exists()]
        absent += [f"Python module {m}" for m in self.modules if not _importable(m)]
        return absent

    def install_hint(self) -> str:
        steps = [f"apt-get install -y {self.packages}"] if self.packages else []
        if self.modules:
            steps.append(VENV_HINT)
        if self.extra_hint:
            steps.append(self.extra_hint)
        return "; ".join(steps)


COMPONENTS: Mapping[str, Component] = {
    # The PKCS#11 bed: SoftHSM tokens made with softhsm2-util and OpenSC's pkcs11-tool, and
    # the fault-injecting module (tests/native) compiled with gcc against p11-kit's header.
    "softhsm": Component(
        "softhsm2 opensc gcc libp11-kit-dev",
        programs=("softhsm2-util", "pkcs11-tool", "gcc"),
        files=(SOFTHSM_MODULE, PKCS11_HEADER)),
    "pcscd": Component(
        "pcscd vsmartcard-vpcd libpcsclite-dev opensc cackey ykcs11",
        programs=("/usr/sbin/pcscd",),
        files=(VPCD_DRIVER, Path("/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"),
               Path("/usr/lib/pkcs11/libcackey.so")), modules=("smartcard",)),
    "desktop": Component(
        "xvfb xdotool x11-utils trayer imagemagick dbus at-spi2-core libatspi2.0-0",
        programs=("Xvfb", "xdotool", "xwininfo", "trayer", "/usr/bin/import", "dbus-daemon",
                  "/usr/libexec/at-spi-bus-launcher", "/usr/libexec/at-spi2-registryd"),
        files=(Path("/usr/lib/x86_64-linux-gnu/libatspi.so.0"),),
        modules=("PySide6.QtWidgets", "pypdfium2", "PIL", "jeepney")),
    "browser": Component(
        "chromium nodejs npm",
        programs=("/usr/bin/chromium", "node"), files=(PLAYWRIGHT,),
        extra_hint="(cd tests/e2e && npm ci)"),
    # Firefox over WebDriver BiDi (e2e/test_firefox.py): Debian's ESR, puppeteer-core.
    "firefox": Component(
        "firefox-esr nodejs npm",
        programs=("/usr/bin/firefox-esr", "node"), files=(PUPPETEER,),
        extra_hint="(cd tests/e2e && npm ci)"),
    # The agent runs from this checkout with the venv's Python: nothing else to install.
    "daemon": Component(""),
    # Tools we did not write, run on what the agent produced: OpenSSL (cms, ts), poppler
    # (pdfsig, pdftoppm), xmlsec1 and NSS's certutil (trust stores, pdfsig's database).
    "verifiers": Component(
        "openssl poppler-utils xmlsec1 libnss3-tools",
        programs=("openssl", "pdfsig", "pdftoppm", "xmlsec1", "certutil")),
    "wheel": Component("python3-venv", modules=("venv", "ensurepip")),
    # The .deb: built with Debian's python3 (installer/linux/build-packages.txt), tried in a
    # fresh root that debootstrap makes from the Debian mirror apt uses.
    "package": Component(
        "debootstrap python3-venv python3-dev dpkg-dev gcc libpcsclite-dev",
        programs=("debootstrap", "chroot", "dpkg-deb", "/usr/bin/python3"),
        files=(Path("/usr/include/python3.11/Python.h"),)),
    # The OS keyring of the journal's HMAC key: gnome-keyring's Secret Service on a private
    # D-Bus bus (tests/keyring_bus.py), reached through keyring → secretstorage → jeepney.
    "keyring": Component(
        "gnome-keyring dbus",
        programs=("gnome-keyring-daemon", "dbus-daemon"),
        modules=("keyring", "secretstorage", "jeepney")),
    # The Windows installers, built on Linux: wixl compiles the MSIs, msiinfo reads them back,
    # lxml parses the Group Policy template (tests/test_msi.py).
    "msi": Component("wixl msitools", programs=("wixl", "msiinfo"), modules=("lxml",)),
}

# Shared fixtures that need a component: a test using one (even through another fixture)
# must carry the marker, or it would slip into the in-process layer.
FIXTURE_COMPONENTS: Mapping[str, tuple[str, ...]] = {
    "softhsm": ("softhsm",),
    "softhsm_store": ("softhsm",),
    "formats_bed": ("softhsm", "verifiers"),
    "formats_daemon": ("daemon",),  # and, through formats_bed, softhsm and verifiers
    "keyring_bus": ("keyring",),
    "keyring_env": ("keyring",),
}


def _found(program: str, path: str | None) -> bool:
    if os.sep in program:
        return os.access(program, os.X_OK)
    return shutil.which(program, path=path) is not None


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_report(markers: Iterable[str], path: str | None = None) -> str:
    """Empty when every component named is present, else the message to stop the run with."""
    lines, lacking = [], []
    for name in sorted(set(markers) & set(COMPONENTS)):
        component = COMPONENTS[name]
        absent = component.missing(path)
        if absent:
            lacking.append(name)
            lines.append(f"  {name}: missing {', '.join(absent)}\n"
                         f"    install: {component.install_hint()}")
    if not lines:
        return ""
    return ("Components the selected tests need are not installed (a test never skips for "
            "want of one):\n" + "\n".join(lines) + "\n"
            "Install everything with `bash scripts/test.sh`, or leave those tests out with "
            f"-m \"not ({' or '.join(lacking)})\" (docs/testing.md).")


def unmarked_report(items: Sequence[pytest.Item]) -> str:
    """Tests that use a component's fixture without its marker."""
    lines = []
    for item in items:
        used = getattr(item, "fixturenames", ())
        needed = {c for f in used for c in FIXTURE_COMPONENTS.get(f, ())}
        lacking = sorted(c for c in needed if item.get_closest_marker(c) is None)
        if lacking:
            lines.append(f"  {item.nodeid}: add @pytest.mark.{', @pytest.mark.'.join(lacking)}")
    if not lines:
        return ""
    return ("Tests use a component's fixture but do not carry its marker "
            "(docs/testing.md):\n" + "\n".join(lines))


_running: list[pytest.Item] = []  # the test being set up or run


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _running[:] = [item]


def require_marker(component: str) -> None:
    """Fail the running test if it starts ``component`` without carrying its marker: the
    fixture may be the module's own, where the collection check cannot see it."""
    if _running and _running[0].get_closest_marker(component) is None:
        pytest.fail(f"{_running[0].nodeid} starts {component} but is not marked "
                    f"@pytest.mark.{component} (docs/testing.md)", pytrace=False)


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    markers = {m.name for item in session.items for m in item.iter_markers()}
    problems = [p for p in (unmarked_report(session.items), missing_report(markers)) if p]
    if problems:
        pytest.exit("\n".join(problems), returncode=pytest.ExitCode.USAGE_ERROR)
