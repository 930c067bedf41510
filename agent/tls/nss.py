"""The user's NSS certificate databases and the ``certutil`` tool that edits them.

On Linux, Chromium/Chrome read ``~/.pki/nssdb`` and every Firefox profile has its own
database (``cert9.db``, the SQL format; the old ``cert8.db`` format is not handled).
Firefox keeps its profiles in ``~/.mozilla/firefox`` or, for installs made by Firefox 147
and later (Debian's firefox-esr 153 among them), in ``$XDG_CONFIG_HOME/mozilla/firefox``.
Snap and Flatpak builds keep theirs under their own home directories.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

INSTALL_HINT = (
    "certutil (from the NSS tools) is required: install it with "
    "`sudo apt install libnss3-tools` (Debian/Ubuntu), `sudo dnf install nss-tools` "
    "(Fedora/RHEL) or `sudo pacman -S nss` (Arch)")
# Firefox keeps a locked, password-protected database waiting on a prompt forever;
# a bound on every call turns that into an error instead of a hang.
_CERTUTIL_TIMEOUT = 30.0
_LIST_LINE = re.compile(r"^(?P<nick>.*\S)\s+(?P<trust>[A-Za-z]*,[A-Za-z]*,[A-Za-z]*)\s*$")


class NssError(Exception):
    """certutil failed on one database; the message names the database."""


class CertutilMissing(NssError):
    def __init__(self) -> None:
        super().__init__(INSTALL_HINT)


@dataclass(frozen=True)
class NssDb:
    path: Path
    browser: str  # "chromium", "firefox", "firefox (snap)", ...
    profile: str | None = None  # a Firefox profile's name (profiles.ini, or its folder's)

    @property
    def spec(self) -> str:
        return f"sql:{self.path}"

    @property
    def label(self) -> str:
        """For a person: "Chromium", "Firefox profile default-esr", "Firefox (snap) ..."."""
        name = self.browser[:1].upper() + self.browser[1:]
        return f"{name} profile {self.profile}" if self.profile else name


@dataclass(frozen=True)
class NssEntry:
    nickname: str
    trust: str  # certutil's "SSL,S/MIME,JAR/XPI" flags, e.g. "C,,"


def certutil_path() -> str:
    found = shutil.which("certutil")
    if found is None:
        raise CertutilMissing()
    return found


# --- finding the databases -------------------------------------------------------------

# (browser label, database relative to home, the browser's own home relative to home or
# None) of Chromium-family databases.  Chromium creates its database lazily; we create
# it when the browser's home exists (for the main one: always), and Chromium adopts it.
CHROMIUM_DBS = (
    ("chromium", ".pki/nssdb", None),
    ("chromium (snap)", "snap/chromium/current/.pki/nssdb", "snap/chromium/current"),
    # Flathub's Chromium and Chrome persist ~/.pki into their own ~/.var/app/<id>.
    ("chromium (flatpak)", ".var/app/org.chromium.Chromium/.pki/nssdb",
     ".var/app/org.chromium.Chromium"),
    ("chrome (flatpak)", ".var/app/com.google.Chrome/.pki/nssdb", ".var/app/com.google.Chrome"),
)
# (browser label, Firefox data directory relative to home).  Both the old ~/.mozilla and
# the XDG location (Firefox 147+) are searched: an upgraded install keeps the old one.
FIREFOX_ROOTS = (
    ("firefox", ".mozilla/firefox"),
    ("firefox", "<xdg-config>/mozilla/firefox"),
    ("firefox (snap)", "snap/firefox/common/.mozilla/firefox"),
    ("firefox (snap)", "snap/firefox/common/.config/mozilla/firefox"),
    ("firefox (flatpak)", ".var/app/org.mozilla.firefox/.mozilla/firefox"),
    ("firefox (flatpak)", ".var/app/org.mozilla.firefox/config/mozilla/firefox"),
)


def firefox_root(home: Path, rel: str, env: Mapping[str, str] | None = None) -> Path:
    """A FIREFOX_ROOTS entry as a path (``<xdg-config>``: $XDG_CONFIG_HOME or ~/.config)."""
    if rel.startswith("<xdg-config>/"):
        environ = os.environ if env is None else env
        configured = environ.get("XDG_CONFIG_HOME", "")
        # The spec ignores a relative value; so does Firefox.
        base = Path(configured) if os.path.isabs(configured) else home / ".config"
        return base / rel.removeprefix("<xdg-config>/")
    return home / rel


def discover_databases(home: Path, *, create_chromium: bool = False,
                       env: Mapping[str, str] | None = None) -> list[NssDb]:
    """Every NSS database of the user's browsers.  With ``create_chromium`` the main
    ``~/.pki/nssdb`` is created when missing, and a snap or flatpak Chromium's when that
    browser has a home of its own (Chromium creates its database only on first use of
    certificates, and will then adopt ours)."""
    dbs: list[NssDb] = []
    for browser, rel, own_home in CHROMIUM_DBS:
        path = home / rel
        wanted = own_home is None or (home / own_home).is_dir()
        if create_chromium and wanted and not (path / "cert9.db").exists():
            create_database(path)
        if (path / "cert9.db").exists():
            dbs.append(NssDb(path, browser))
    seen: set[Path] = set()
    for browser, rel in FIREFOX_ROOTS:
        for path, name in _firefox_profiles(firefox_root(home, rel, env)):
            if path not in seen:  # profiles.ini of one root may point into another
                seen.add(path)
                dbs.append(NssDb(path, browser, name))
    return dbs


def _firefox_profiles(root: Path) -> list[tuple[Path, str]]:
    """(profile, name) of profiles with a cert9.db: the directories under ``root`` plus any
    that profiles.ini places elsewhere; the name is profiles.ini's, else the folder's
    ("abcd1234.default-esr" -> "default-esr")."""
    if not root.is_dir():
        return []
    candidates = {p.resolve(): p.name.partition(".")[2] or p.name
                  for p in root.iterdir() if p.is_dir()}
    ini = root / "profiles.ini"
    if ini.is_file():
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        with contextlib.suppress(configparser.Error):  # a broken ini: use the glob only
            parser.read(ini, encoding="utf-8")
        for section in parser.sections():
            raw = parser.get(section, "Path", fallback=None)
            if raw:
                relative = parser.get(section, "IsRelative", fallback="1") == "1"
                path = ((root / raw) if relative else Path(raw)).resolve()
                candidates[path] = (parser.get(section, "Name", fallback="")
                                    or candidates.get(path) or path.name)
    return sorted((p, name) for p, name in candidates.items() if (p / "cert9.db").is_file())


# --- certutil operations ---------------------------------------------------------------

def create_database(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:  # a read-only or foreign-owned home
        raise NssError(f"{path}: cannot create the database: {exc.strerror or exc}") from exc
    _certutil(NssDb(path, "chromium"), "-N", "--empty-password")


def list_entries(db: NssDb) -> list[NssEntry]:
    out = _certutil(db, "-L")
    entries = []
    for line in out.splitlines():
        match = _LIST_LINE.match(line)
        if match and match["nick"] != "SSL,S/MIME,JAR/XPI":
            entries.append(NssEntry(match["nick"], match["trust"]))
    return entries


def certificates(db: NssDb, nickname: str) -> list[x509.Certificate]:
    """All certificates stored under ``nickname`` (several can share one)."""
    pem = _certutil(db, "-L", "-n", nickname, "-a")
    return x509.load_pem_x509_certificates(pem.encode()) if "BEGIN" in pem else []


def add_trusted_ca(db: NssDb, nickname: str, ca_pem: Path) -> None:
    """Add (or re-trust) a CA as trusted for TLS servers only (``C,,``)."""
    _certutil(db, "-A", "-n", nickname, "-t", "C,,", "-i", str(ca_pem))


def delete(db: NssDb, nickname: str) -> None:
    """Delete every certificate under ``nickname`` (certutil removes one per call)."""
    for _ in range(100):  # bounded: a misbehaving certutil must not loop forever
        if not any(e.nickname == nickname for e in list_entries(db)):
            return
        _certutil(db, "-D", "-n", nickname)
    raise NssError(f"{db.path}: could not delete {nickname!r}")


def _certutil(db: NssDb, *args: str) -> str:
    command = [certutil_path(), *args, "-d", db.spec]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, stdin=subprocess.DEVNULL,
            timeout=_CERTUTIL_TIMEOUT,
            # No controlling terminal: a database with a primary password then fails
            # instead of prompting on /dev/tty.
            start_new_session=True)
    except subprocess.TimeoutExpired as exc:
        raise NssError(f"{db.path}: certutil did not finish (is the database locked "
                       "or protected by a primary password?)") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise NssError(f"{db.path}: certutil {args[0]} failed: "
                       f"{detail[-1] if detail else f'exit {done.returncode}'}")
    return done.stdout
