"""Firefox on Windows and macOS: trust the OS store's roots (``security.enterprise_roots.
enabled``) instead of editing each profile's NSS database, where no certutil exists.

Each profile gets one marked line in its ``user.js`` (Firefox reads it at every start and
copies it into prefs.js); removal takes out exactly that line and leaves the user's own
lines. A machine install may set the same through ``policies.json``
(``Certificates.ImportEnterpriseRoots``, the installer's job).
"""

from __future__ import annotations

from pathlib import Path

from agent.platform.base import TrustResult

PREF_LINE = 'user_pref("security.enterprise_roots.enabled", true); // imza-agent'
BROWSER = "firefox (OS roots)"


def profiles(profiles_dir: Path) -> list[Path]:
    """Profile directories: those with a prefs.js (Firefox has started in them)."""
    if not profiles_dir.is_dir():
        return []
    return sorted(p for p in profiles_dir.iterdir() if (p / "prefs.js").is_file())


def _lines(user_js: Path) -> list[str]:
    try:
        return user_js.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def enabled(profile: Path) -> bool:
    return PREF_LINE in _lines(profile / "user.js")


def enable(profile: Path) -> TrustResult:
    user_js = profile / "user.js"
    try:
        lines = _lines(user_js)
        if PREF_LINE not in lines:
            user_js.write_text("\n".join([*lines, PREF_LINE]) + "\n", encoding="utf-8")
    except OSError as exc:
        return TrustResult(profile, BROWSER, error=str(exc))
    return TrustResult(profile, BROWSER, trusted=True)


def disable(profile: Path) -> TrustResult:
    user_js = profile / "user.js"
    try:
        lines = _lines(user_js)
        if PREF_LINE in lines:
            kept = [line for line in lines if line != PREF_LINE]
            if kept:
                user_js.write_text("\n".join(kept) + "\n", encoding="utf-8")
            else:
                user_js.unlink()
    except OSError as exc:
        return TrustResult(profile, BROWSER, error=str(exc))
    return TrustResult(profile, BROWSER)


def status(profile: Path, os_store_trusts: bool) -> TrustResult:
    """Firefox trusts the CA when it reads the OS roots and the OS store has it."""
    return TrustResult(profile, BROWSER, trusted=os_store_trusts and enabled(profile))
