"""Where vendors install their PKCS#11 modules, and which of them are on this machine.

The table lists the usual install paths of the middleware met on Azerbaijani, Turkish and
CIS tokens and cards, and of the PIV middleware packaged by Debian (CACKey, Yubico's
ykcs11); only files that exist are loaded.  Modules named in the config come
first, and one file reached by two paths (symlinks) is loaded once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

_SYS32 = r"C:\Windows\System32"

# vendor → candidate paths, per OS ("linux", "windows", "darwin").  CACKey ships no
# Windows installer, so it has no Windows paths.
KNOWN_MODULES: dict[str, dict[str, tuple[str, ...]]] = {
    "linux": {
        "OpenSC": ("/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
                   "/usr/lib/aarch64-linux-gnu/opensc-pkcs11.so",
                   "/usr/lib64/opensc-pkcs11.so", "/usr/lib/opensc-pkcs11.so",
                   "/usr/local/lib/opensc-pkcs11.so"),
        "SafeNet eToken": ("/usr/lib/libeTPkcs11.so", "/usr/lib64/libeTPkcs11.so",
                           "/usr/lib/pkcs11/libeTPkcs11.so", "/usr/lib/libeToken.so"),
        "ePass2003 / EnterSafe": ("/usr/lib/libcastle.so.1.0.0", "/usr/lib/libcastle.so",
                                  "/usr/local/lib/libcastle.so.1.0.0",
                                  "/usr/lib/x86_64-linux-gnu/libcastle.so.1.0.0"),
        "AKİS": ("/usr/lib/libakisp11.so", "/usr/lib64/libakisp11.so",
                 "/usr/local/lib/libakisp11.so"),
        "Rutoken": ("/usr/lib/librtpkcs11ecp.so", "/usr/lib/x86_64-linux-gnu/librtpkcs11ecp.so",
                    "/usr/lib64/librtpkcs11ecp.so"),
        "JaCarta": ("/usr/lib/libjcPKCS11-2.so", "/usr/lib/x86_64-linux-gnu/libjcPKCS11-2.so",
                    "/usr/lib64/libjcPKCS11-2.so"),
        "Charismathics": ("/usr/lib/libcmP11.so", "/usr/lib64/libcmP11.so",
                          "/usr/local/lib/libcmP11.so"),
        "Bit4id": ("/usr/lib/bit4id/libbit4xpki.so", "/usr/lib/libbit4xpki.so",
                   "/usr/lib64/libbit4xpki.so", "/usr/local/lib/libbit4xpki.so"),
        "Thales IDPrime": ("/usr/lib/libIDPrimePKCS11.so", "/usr/lib64/libIDPrimePKCS11.so",
                           "/usr/lib/pkcs11/libIDPrimePKCS11.so"),
        # PIV cards; Debian's package installs it under /usr/lib/pkcs11.
        "CACKey": ("/usr/lib/pkcs11/libcackey.so", "/usr/lib/libcackey.so",
                   "/usr/lib64/libcackey.so", "/usr/local/lib/libcackey.so"),
        # YubiKey PIV; it only looks at readers whose name starts with "Yubico".
        "Yubico YKCS11": ("/usr/lib/x86_64-linux-gnu/libykcs11.so",
                          "/usr/lib/aarch64-linux-gnu/libykcs11.so", "/usr/lib64/libykcs11.so",
                          "/usr/local/lib/libykcs11.so"),
    },
    "windows": {
        "OpenSC": (r"C:\Program Files\OpenSC Project\OpenSC\pkcs11\opensc-pkcs11.dll",
                   rf"{_SYS32}\opensc-pkcs11.dll"),
        "SafeNet eToken": (rf"{_SYS32}\eTPKCS11.dll",),
        "ePass2003 / EnterSafe": (rf"{_SYS32}\eps2003csp11.dll",),
        "AKİS": (rf"{_SYS32}\akisp11.dll",),
        "Rutoken": (rf"{_SYS32}\rtPKCS11ECP.dll",),
        "JaCarta": (rf"{_SYS32}\jcPKCS11-2.dll",),
        "Charismathics": (rf"{_SYS32}\cmP1164.dll", rf"{_SYS32}\cmP11.dll",
                          r"C:\Program Files\Charismathics\PKCS11\cmP1164.dll"),
        "Bit4id": (rf"{_SYS32}\bit4xpki.dll",),
        "Thales IDPrime": (rf"{_SYS32}\IDPrimePKCS1164.dll", rf"{_SYS32}\IDPrimePKCS11.dll"),
        "Yubico YKCS11": (r"C:\Program Files\Yubico\Yubico PIV Tool\bin\libykcs11.dll",),
    },
    "darwin": {
        "OpenSC": ("/Library/OpenSC/lib/opensc-pkcs11.so", "/usr/local/lib/opensc-pkcs11.so",
                   "/opt/homebrew/lib/opensc-pkcs11.so"),
        "SafeNet eToken": ("/usr/local/lib/libeTPkcs11.dylib",
                           "/Library/Frameworks/eToken.framework/Versions/A/libeToken.dylib"),
        "ePass2003 / EnterSafe": ("/usr/local/lib/libcastle.1.0.0.dylib",
                                  "/usr/local/lib/libcastle_v2.1.0.0.dylib"),
        "AKİS": ("/usr/local/lib/libakisp11.dylib",),
        "Rutoken": ("/Library/Frameworks/rtpkcs11ecp.framework/rtpkcs11ecp",
                    "/usr/local/lib/librtpkcs11ecp.dylib"),
        "JaCarta": ("/Library/Frameworks/jcPKCS11-2.framework/jcPKCS11-2",
                    "/usr/local/lib/libjcPKCS11-2.dylib"),
        "Charismathics": ("/usr/local/lib/libcmP11.dylib",),
        "Bit4id": ("/Library/bit4id/pkcs11/libbit4xpki.dylib", "/usr/local/lib/libbit4xpki.dylib"),
        "Thales IDPrime": ("/Library/Frameworks/eToken.framework/Versions/A/libIDPrimePKCS11.dylib",
                           "/usr/local/lib/libIDPrimePKCS11.dylib"),
        "CACKey": ("/Library/CACKey/libcackey.dylib",),  # its macOS package's location
        "Yubico YKCS11": ("/usr/local/lib/libykcs11.dylib", "/opt/homebrew/lib/libykcs11.dylib"),
    },
}

# Environment a module is loaded with, by the start of its file name.  CACKey adds a
# slot of built-in US DoD CA certificates to every machine unless told not to; for our
# users it is a token that is not theirs.
MODULE_ENV: dict[str, dict[str, str]] = {
    "libcackey": {"CACKEY_NO_EXTRA_CERTS": "1"},
}

# Modules whose C_Sign does the card's work also for the length query (a NULL output
# buffer): CACKey 0.7 runs C_SignFinal, i.e. GENERAL AUTHENTICATE, for it.  A PIV card
# lets its signature key act once per PIN verification, so the real call that follows
# fails; these modules are given one C_Sign with a buffer large enough.
SIGN_IN_ONE_CALL = ("libcackey",)

Source = Literal["config", "known"]


def signs_in_one_call(module: Path | str) -> bool:
    return Path(module).name.lower().startswith(SIGN_IN_ONE_CALL)


def module_env(module: Path) -> dict[str, str]:
    """The environment variables ``module`` needs (``MODULE_ENV``), if any."""
    name = module.name.lower()
    return {k: v for prefix, extra in MODULE_ENV.items() if name.startswith(prefix)
            for k, v in extra.items()}


@dataclass(frozen=True)
class ModuleCandidate:
    path: Path
    vendor: str | None
    source: Source
    present: bool


def current_os() -> str:
    """This OS's key in ``KNOWN_MODULES`` (the platform layer knows which)."""
    from agent.platform import current

    return current().pkcs11_table


def known_modules(os_name: str | None = None) -> list[tuple[str, Path]]:
    table = KNOWN_MODULES.get(os_name or current_os(), {})
    return [(vendor, Path(path)) for vendor, paths in table.items() for path in paths]


def discover_modules(configured: list[Path], use_known: bool,
                     os_name: str | None = None) -> list[ModuleCandidate]:
    """Configured modules first, then the known ones; each real file once.

    Missing files are listed with ``present=False`` (for ``doctor``); only present ones
    should be loaded.
    """
    known = known_modules(os_name) if use_known else []
    wanted: list[tuple[Path, str | None, Source]] = [
        *((Path(p), None, "config") for p in configured),
        *((path, vendor, "known") for vendor, path in known),
    ]
    seen: set[str] = set()
    found: list[ModuleCandidate] = []
    for path, vendor, source in wanted:
        present = path.is_file()
        key = os.path.normcase(os.path.realpath(path)) if present else f"missing:{path}"
        if key in seen:
            continue
        seen.add(key)
        if source == "known" and not present:
            continue  # the table is long; absent vendor modules are not worth listing
        found.append(ModuleCandidate(path=path, vendor=vendor, source=source, present=present))
    return found
