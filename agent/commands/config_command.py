"""``imza-agent config path|show|edit``.

``path``: the file the agent reads (``--config``, else ``~/.config/imza-agent/config.toml``).
``show``: every setting in force, as TOML that reads back to the same configuration;
credentials inside URLs (a proxy's password) are masked.
``edit``: creates the file with every key commented out if it is missing, opens
``$VISUAL``, ``$EDITOR``, ``sensible-editor`` or ``xdg-open`` on it, then checks it and
says whether the running agent still uses older settings.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agent.commands.status import restart_advice, stale_settings
from agent.commands.text import error, shown_path
from agent.config import Config, ConfigError, load_config
from agent.daemon.instance import find_running
from agent.i18n import _
from agent.paths import default_config_file

_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")
MASK = "***"


def main(action: str, config_path: Path | None, *, explicit: bool) -> int:
    target = config_path if config_path is not None else default_config_file()
    if action == "path":
        print(target)
        if not target.is_file():
            print(_("(not created yet: the built-in defaults apply; `imza-agent config edit` "
                    "creates it)") if not explicit else _("(no such file)"), file=sys.stderr)
        return 0 if target.is_file() or not explicit else 1
    if action == "show":
        return show(config_path)
    if action == "edit":
        return edit(target)
    raise AssertionError(action)


# --- show -------------------------------------------------------------------------------------

def show(config_path: Path | None) -> int:
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        error(str(exc))
        return 2
    source = shown_path(config_path)
    print(render(config, _("the settings in force, from {source}").format(source=source)))
    _say_if_stale(config_path)
    return 0


def mask(text: str) -> str:
    """``http://user:secret@proxy:3128`` → ``http://***@proxy:3128``."""
    return _USERINFO.sub(lambda m: m.group(1) + MASK + "@", text)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(mask(value), ensure_ascii=False)  # a JSON string is a TOML string
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k), ensure_ascii=False)} = {_toml(v)}"
                               for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _is_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _keys(values: dict[str, Any]) -> list[str]:
    lines = []
    for key, value in values.items():
        if value is None:
            lines.append(f"# {key} = (unset)")
        elif not _is_tables(value):
            lines.append(f"{key} = {_toml(value)}")
    return lines


def render(config: Config, title: str) -> str:
    """Every key of every section, its value in force; unset keys as comments."""
    lines = [f"# {title}"]
    data = config.model_dump(mode="json")
    for section in Config.model_fields:
        values: dict[str, Any] = data[section]
        lines += ["", f"[{section}]", *_keys(values)]
        for key, items in values.items():
            if _is_tables(items):
                for item in items:
                    lines += ["", f"[[{section}.{key}]]", *_keys(item)]
    return "\n".join(lines)


# --- edit -------------------------------------------------------------------------------------

def template() -> str:
    """The file ``edit`` creates: every section, every key commented out with its default
    and what it means."""
    lines = ["# imza-agent configuration. Every key is optional: remove the \"# \" before a",
             "# key to set it. Reference: docs/configuration.md; what is in force:",
             "# `imza-agent config show`.", ""]
    defaults = Config().model_dump(mode="json")
    for section, info in Config.model_fields.items():
        model = info.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        lines.append(f"[{section}]")
        for key, field in model.model_fields.items():
            for text in textwrap.wrap(field.description or "", 86):
                lines.append(f"# {text}")
            value = defaults[section][key]
            lines.append(f"# {key} = " + ("(unset)" if value is None else _toml(value)))
        lines.append("")
    return "\n".join(lines)


def _editor() -> tuple[list[str], bool] | None:
    """The editor command and whether it returns at once (xdg-open: a desktop app)."""
    for variable in ("VISUAL", "EDITOR"):
        value = os.environ.get(variable, "").strip()
        if value:
            return shlex.split(value), False
    if shutil.which("sensible-editor"):
        return ["sensible-editor"], False
    if shutil.which("xdg-open"):
        return ["xdg-open"], True
    return None


def edit(target: Path) -> int:
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        target.write_text(template(), encoding="utf-8")
        print(_("created {path} with every setting commented out").format(
            path=shown_path(target)))
    found = _editor()
    if found is None:
        error(_("no editor found: set VISUAL or EDITOR, or install sensible-editor or "
                "xdg-open"))
        return 1
    command, detached = found
    try:
        status = subprocess.call([*command, str(target)])
    except OSError as exc:
        error(_("the editor {editor} could not start: {reason}").format(
            editor=command[0], reason=exc.strerror or exc))
        return 1
    if detached:
        print(_("opened {path} in the desktop's editor; check it afterwards with "
                "`imza-agent config show`").format(path=shown_path(target)))
        return 0
    if status != 0:
        error(_("the editor {editor} ended with status {status}").format(
            editor=command[0], status=status))
    try:
        load_config(target)
    except ConfigError as exc:
        error(_("{path} is not valid; the agent will not start with it:").format(
            path=shown_path(target)) + "\n" + str(exc))
        print(_("fix it with `imza-agent config edit`"), file=sys.stderr)
        return 1
    print(_("{path} is valid").format(path=shown_path(target)))
    _say_if_stale(target)
    return 0


def _say_if_stale(config_path: Path | None) -> None:
    """When the running agent loaded other settings than the file now holds: which, and
    what to do."""
    agent = find_running()
    if agent is None or agent.pid is None or agent.facts is None:
        return
    loaded = agent.facts.config
    if loaded is not None and loaded != (None if config_path is None else str(config_path)):
        print(_("the running agent (pid {pid}) reads {config}, not this file").format(
            pid=agent.pid, config=shown_path(agent.facts.config)), file=sys.stderr)
        return
    advice = restart_advice(*stale_settings(agent))
    if advice:
        print(advice, file=sys.stderr)
