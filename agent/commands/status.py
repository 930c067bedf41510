"""``imza-agent status`` and ``imza-agent stop``.

Both find the agent through agent/daemon/instance.py (the lock ``run`` holds, and
runtime.json). ``status`` exits 0 when an agent runs and 3 when none does (as LSB init
scripts' ``status``); ``stop`` exits 0 when the agent ended or none was running, 1 when it
did not end in time or the pid is not an agent's.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

from agent.commands.running import already_running
from agent.commands.text import duration, error, shown_path
from agent.config import Config, ConfigError, config_file, load_config
from agent.daemon.instance import (
    RunningAgent,
    find_running,
    is_agent_process,
    send_stop,
    wait_gone,
)
from agent.i18n import _
from agent.platform import current as current_platform

NOT_RUNNING = 3


def _transports(runtime: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    ports = runtime.get("ports")
    if isinstance(ports, dict):
        for name, port in ports.items():
            found[str(name)] = f"{name}://127.0.0.1:{port}/v1"
    if isinstance(runtime.get("socket"), str):
        found["extension"] = runtime["socket"]
    return found


def _unavailable(runtime: dict[str, Any]) -> dict[str, str]:
    value = runtime.get("unavailable")
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _tokens(runtime: dict[str, Any]) -> list[dict[str, Any]] | None:
    value = runtime.get("tokens")
    if not isinstance(value, list):
        return None
    return [t for t in value if isinstance(t, dict)]


def stale_settings(agent: RunningAgent) -> tuple[list[str] | None, bool]:
    """The config sections its file now sets differently from what the agent loaded
    (None: unknown), and whether the system policy file changed since it started. An
    agent that started without a file would read the default file at a restart."""
    if agent.facts is None:
        return None, False
    path = _as_path(agent.facts.config) or config_file(None)
    try:
        config = load_config(path)
    except ConfigError:
        return None, agent.policy_changed()
    changed = agent.changed_sections(config)
    if changed is not None and _only_language_differs(agent, config):
        # A --language given to `run` is not in the file: not a change of the file.
        changed = [s for s in changed if s != "ui"]
    return changed, agent.policy_changed()


def _as_path(text: str | None) -> Path | None:
    return None if text is None else Path(text)


def _only_language_differs(agent: RunningAgent, config: Config) -> bool:
    """Whether the agent's [ui] is the file's but for the language (``run --language``)."""
    from agent.daemon.instance import section_digests

    loaded = agent.facts.sections.get("ui") if agent.facts else None
    for language in ("auto", "az", "tr", "ru", "en"):
        candidate = config.model_copy(
            update={"ui": config.ui.model_copy(update={"language": language})})
        if section_digests(candidate)["ui"] == loaded:
            return True
    return False


def restart_advice(changed: list[str] | None, policy_changed: bool) -> str | None:
    """What a person must do for edited settings to take effect, or None."""
    names = [f"[{name}]" for name in changed or []]
    if policy_changed:
        names.append(_("the system policy"))
    if not names:
        return None
    return _("changed since the agent started: {what}; the running agent still uses the old "
             "settings. Restart it: imza-agent stop && imza-agent run").format(
                 what=", ".join(names))


def status(*, json_output: bool) -> int:
    agent = find_running()
    if agent is None:
        if json_output:
            print(json.dumps({"running": False}))
        else:
            print(_("imza-agent is not running"))
        return NOT_RUNNING
    if agent.pid is None:
        if json_output:
            print(json.dumps({"running": True, "starting": True}))
        else:
            print(already_running(agent))
        return 0
    facts, runtime = agent.facts, agent.runtime
    started = facts.started if facts and facts.started else None
    changed, policy_changed = stale_settings(agent)
    report: dict[str, Any] = {
        "running": True, "pid": agent.pid, "version": runtime.get("version"),
        "config": facts.config if facts else None,
        "language": facts.language if facts else None,
        "started": (dt.datetime.fromtimestamp(started, dt.UTC).isoformat(timespec="seconds")
                    if started else None),
        "uptime_seconds": round(time.time() - started, 1) if started else None,
        "transports": _transports(runtime), "unavailable": _unavailable(runtime),
        "tokens": _tokens(runtime), "changed_sections": changed,
        "policy_changed": policy_changed,
    }
    if json_output:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    print(_text(agent, report))
    return 0


def _text(agent: RunningAgent, report: dict[str, Any]) -> str:
    lines = [_("imza-agent is running (pid {pid}, version {version})").format(
        pid=agent.pid, version=report["version"] or _("unknown"))]
    if agent.facts is not None:
        lines.append("  " + _("config: {config}").format(config=shown_path(report["config"])))
        lines.append("  " + _("language: {language}").format(language=report["language"]))
    if report["uptime_seconds"] is not None:
        since = dt.datetime.fromisoformat(report["started"]).astimezone()
        lines.append("  " + _("running for {duration} (since {time})").format(
            duration=duration(report["uptime_seconds"]),
            time=since.strftime("%Y-%m-%d %H:%M")))
    transports = report["transports"]
    addresses = [a for name, a in transports.items() if name != "extension"]
    if "extension" in transports:
        addresses.append(_("browser extension ({path})").format(
            path=shown_path(transports["extension"])))
    lines.append("  " + _("listening: {addresses}").format(
        addresses=", ".join(addresses) if addresses else _("nothing yet")))
    for name, reason in report["unavailable"].items():
        lines.append("  " + _("not listening: {transport} ({reason})").format(
            transport=name, reason=reason))
    tokens = report["tokens"]
    if tokens is None:
        lines.append("  " + _("tokens: not reported by this agent (see `imza-agent doctor`)"))
    elif not tokens:
        lines.append("  " + _("tokens: none"))
    else:
        names = [str(t.get("label") or "?") + (" (DEMO)" if t.get("demo") else "")
                 for t in tokens]
        lines.append("  " + _("tokens: {tokens}").format(tokens=", ".join(names)))
    advice = restart_advice(report["changed_sections"], report["policy_changed"])
    if advice:
        lines.append(advice)
    return "\n".join(lines)


def stop(*, timeout: float) -> int:
    agent = find_running()
    if agent is None:
        print(_("imza-agent was not running; nothing to stop"))
        return 0
    if agent.pid is None:
        error(already_running(agent))
        return 1
    pid = agent.pid
    if not is_agent_process(pid):
        error(_("process {pid} is not imza-agent; nothing was stopped").format(pid=pid))
        return 1
    try:
        send_stop(pid)
    except ProcessLookupError:
        print(_("imza-agent was not running; nothing to stop"))
        return 0
    if not wait_gone(pid, timeout):
        error(_("imza-agent (pid {pid}) did not stop within {seconds} s; `{command}` "
                "ends it").format(pid=pid, seconds=f"{timeout:g}",
                                  command=current_platform().force_stop_command(pid)))
        return 1
    print(_("imza-agent stopped (pid {pid})").format(pid=pid))
    return 0

