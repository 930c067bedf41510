"""Start at login (`imza-agent autostart`): ``status``/``set_enabled`` ask the platform
(``agent.platform.current().autostart``: the Windows ``Run`` key, a macOS LaunchAgent);
the rest of this module is Linux's, the XDG Autostart specification's way.

The package installs a system-wide entry, ``/etc/xdg/autostart/imza-agent.desktop``; a
pip or source install has none. The session manager reads the entry with this file name
from the most important directory that has one: ``$XDG_CONFIG_HOME/autostart`` (the
user's), then each of ``$XDG_CONFIG_DIRS`` (default ``/etc/xdg``) in order. So deleting
the user's file cannot turn a system entry off: the user's file must exist and say
``Hidden=true``. Both the tray's "Start at login" and the CLI go through ``status`` and
``set_enabled`` here, so they always agree.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from agent.i18n import _
from agent.platform.base import AutostartStatus

FILE_NAME = "imza-agent.desktop"
DEFAULT_CONFIG_DIRS = "/etc/xdg"
EXIT_OK = 0
EXIT_FAILED = 1  # the entry could not be written or removed
EXIT_USAGE = 2

Scope = Literal["user", "system"]


Status = AutostartStatus  # one status type for every platform's autostart


# --- where the entries are ----------------------------------------------------------------

def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def user_file(env: Mapping[str, str] | None = None) -> Path:
    env = _env(env)
    config_home = env.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(config_home):  # the base directory spec ignores relative paths
        home = Path(env["HOME"]) if env.get("HOME") else Path.home()
        config_home = str(home / ".config")
    return Path(config_home) / "autostart" / FILE_NAME


def system_files(env: Mapping[str, str] | None = None) -> list[Path]:
    """Where a system entry may be, most important first (existing or not)."""
    dirs = _env(env).get("XDG_CONFIG_DIRS") or DEFAULT_CONFIG_DIRS
    return [Path(d) / "autostart" / FILE_NAME for d in dirs.split(":") if os.path.isabs(d)]


def system_file(env: Mapping[str, str] | None = None) -> Path | None:
    """The system entry a session would read if the user had none."""
    return next((f for f in system_files(env) if f.exists()), None)


# --- reading an entry -----------------------------------------------------------------------

def read_entry(path: Path) -> dict[str, str]:
    """The keys of the ``[Desktop Entry]`` group, the only group autostart reads."""
    keys: dict[str, str] = {}
    group = ""
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1]
        elif group == "Desktop Entry" and "=" in line:
            key, _sep, value = line.partition("=")
            keys[key.strip()] = value.strip()  # a repeated key: the last counts, as in GLib
    return keys


def starts(path: Path) -> bool:
    """Whether this entry starts the agent: not ``Hidden`` and not switched off in GNOME's
    way. An entry that cannot be read starts nothing."""
    try:
        entry = read_entry(path)
    except OSError:
        return False
    return (entry.get("Hidden", "").lower() != "true"
            and entry.get("X-GNOME-Autostart-enabled", "").lower() != "false")


def xdg_status(env: Mapping[str, str] | None = None) -> Status:
    user = user_file(env)
    if user.exists():
        return Status(starts(user), user, "user")
    system = system_file(env)
    if system is not None:
        return Status(starts(system), system, "system")
    return Status(False, None, None)


def status(env: Mapping[str, str] | None = None) -> Status:
    """This platform's start-at-login state (Linux: the XDG entries above)."""
    from agent.platform import current

    return current().autostart(env).status()


def enabled(env: Mapping[str, str] | None = None) -> bool:
    """What the tray's "Start at login" shows."""
    return status(env).enabled


# --- writing an entry -----------------------------------------------------------------------

_RESERVED = set(' \t\n"\'\\><~|&;$*?#()`')


def exec_line(argv: Sequence[str]) -> str:
    """``argv`` as an ``Exec`` value: arguments with reserved characters in double quotes
    (with ``"`` `` ` `` ``$`` ``\\`` escaped), ``%`` doubled, then the string-level
    escape of backslashes, as the Desktop Entry spec says."""
    words = []
    for arg in argv:
        arg = arg.replace("%", "%%")
        if any(c in _RESERVED for c in arg):
            arg = '"' + "".join("\\" + c if c in '"`$\\' else c for c in arg) + '"'
        words.append(arg)
    return " ".join(words).replace("\\", "\\\\")


def agent_command(env: Mapping[str, str] | None = None) -> list[str]:
    """How a login session starts this agent: a frozen build's own executable, the
    ``imza-agent`` on PATH, else this very interpreter and package (a venv or source
    install)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "run"]
    found = shutil.which("imza-agent", path=_env(env).get("PATH"))
    return [found, "run"] if found else [sys.executable, "-m", "agent.cli", "run"]


def _entry_text(name: str, exec_value: str, *, hidden: bool) -> str:
    lines = ["[Desktop Entry]", "Type=Application", f"Name={name}",
             "Comment=E-signature agent for web portals", f"Exec={exec_value}",
             "Terminal=false"]
    if hidden:
        lines[0:0] = ["# Start at login is off for this user (imza-agent autostart off);",
                      "# `imza-agent autostart on` turns it on again."]
        lines += ["Hidden=true", "X-GNOME-Autostart-enabled=false"]
    else:
        lines += ["X-GNOME-Autostart-enabled=true"]
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    """Whole or not at all: a session starting meanwhile never reads half an entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".imza-agent.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def set_enabled(on: bool, env: Mapping[str, str] | None = None) -> Status:
    """Turn start at login on or off for this user, the platform's way; the new status.
    Raises ``OSError`` when it cannot be changed."""
    from agent.platform import current

    return current().autostart(env).set_enabled(on)


def xdg_set_enabled(on: bool, env: Mapping[str, str] | None = None) -> Status:
    """Turn the XDG entry on or off for this user; returns the new status.
    Raises ``OSError`` when the user's autostart directory cannot be changed."""
    user = user_file(env)
    system = system_file(env)
    if on:
        if system is not None and starts(system):
            user.unlink(missing_ok=True)  # the package's entry applies again
        elif not (user.exists() and starts(user)):
            _write(user, _entry_text("imza-agent", exec_line(agent_command(env)), hidden=False))
    elif not user.exists() or starts(user):
        # A user file that already keeps the agent from starting (ours, or one a desktop
        # settings tool wrote) stays as it is. Otherwise an override with Hidden=true,
        # even with no system entry yet: the choice survives a later package install.
        template = next((f for f in (system, user) if f is not None and f.exists()), None)
        entry: dict[str, str] = {}
        if template is not None:
            try:
                entry = read_entry(template)
            except OSError:
                entry = {}
        _write(user, _entry_text(entry.get("Name") or "imza-agent",
                                 entry.get("Exec") or exec_line(agent_command(env)),
                                 hidden=True))
    return xdg_status(env)


# --- imza-agent autostart on|off|status [--json] ---------------------------------------------

def describe(current: Status) -> str:
    if current.file is None:
        return _("Start at login: off (no autostart entry)")
    if current.enabled:
        return _("Start at login: on ({file})").format(file=current.file)
    return _("Start at login: off ({file} turns it off)").format(file=current.file)


def command(action: str, *, json_output: bool = False,
            env: Mapping[str, str] | None = None) -> int:
    """``imza-agent autostart ACTION``; returns the exit status."""
    try:
        current = status(env) if action == "status" else set_enabled(action == "on", env)
    except OSError as exc:
        print(_("Cannot change start at login: {error}").format(
            error=exc.strerror or exc), file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(current.to_json()) if json_output else describe(current))
    return EXIT_OK


def main(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="imza-agent autostart",
        description="Start the agent when you log in (on by default with the package).")
    parser.add_argument("action", choices=["on", "off", "status"])
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # argparse has printed the usage
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    return command(args.action, json_output=args.json, env=env)
