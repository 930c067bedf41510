"""The vendor PKCS#11 module table per OS (agent/keystores/pkcs11/modules.py), which the
platform layer selects (``Platform.pkcs11_table``): each path is an absolute path of
its OS with that OS's library suffix, and the file names are the ones the vendors'
Windows installers put in System32 — a wrong name or a Linux path in the Windows
table fails here, where none of the files exist."""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest

from agent.keystores.pkcs11.modules import KNOWN_MODULES, known_modules
from agent.platform import build
from tests.test_platform_macos import FakeMac, mac
from tests.test_platform_windows import windows

ISSUE_VENDORS = ("ePass2003 / EnterSafe", "AKİS", "Rutoken", "SafeNet eToken", "JaCarta",
                 "Charismathics", "Bit4id", "Thales IDPrime", "OpenSC")

# The DLL each vendor's Windows middleware installs (lower-case: Windows does not care).
WINDOWS_DLLS = {
    "ePass2003 / EnterSafe": {"eps2003csp11.dll"},
    "AKİS": {"akisp11.dll"},
    "Rutoken": {"rtpkcs11ecp.dll"},
    "SafeNet eToken": {"etpkcs11.dll"},
    "JaCarta": {"jcpkcs11-2.dll"},
    "Charismathics": {"cmp1164.dll", "cmp11.dll"},
    "Bit4id": {"bit4xpki.dll"},
    "Thales IDPrime": {"idprimepkcs1164.dll", "idprimepkcs11.dll"},
    "OpenSC": {"opensc-pkcs11.dll"},
}


def test_each_platform_names_its_own_table(tmp_path: Path) -> None:
    tables = (build("linux").pkcs11_table, windows(tmp_path).pkcs11_table,
              mac(tmp_path, FakeMac()).pkcs11_table)
    assert tables == ("linux", "windows", "darwin")
    assert set(tables) == set(KNOWN_MODULES)


@pytest.mark.parametrize("vendor", ISSUE_VENDORS)
def test_every_vendor_of_the_issue_has_paths_on_each_os(vendor: str) -> None:
    for table in KNOWN_MODULES.values():
        assert table.get(vendor), vendor


def test_windows_paths_are_absolute_dlls_with_the_vendors_names() -> None:
    for vendor, path in known_modules("windows"):
        windows = PureWindowsPath(str(path))
        assert windows.is_absolute() and windows.drive == "C:", path
        assert windows.suffix.lower() == ".dll", path
        if vendor in WINDOWS_DLLS:
            assert windows.name.lower() in WINDOWS_DLLS[vendor], (vendor, path)


@pytest.mark.parametrize(("os_key", "suffixes"), [("linux", (".so",)),
                                                  ("darwin", (".dylib", ".so"))])
def test_unix_paths_are_absolute_libraries(os_key: str, suffixes: tuple[str, ...]) -> None:
    for _vendor, path in known_modules(os_key):
        posix = PurePosixPath(str(path))
        assert posix.is_absolute() and "\\" not in str(path), path
        name = posix.name
        framework = os_key == "darwin" and posix.parent.suffix == ".framework"
        assert name.endswith(suffixes) or ".so." in name or framework, path  # .so.1.0.0
        if os_key == "darwin":
            assert not str(path).startswith("/usr/lib/x86_64-linux-gnu"), path
