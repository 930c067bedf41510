"""Whether pages can reach the agent: its transports, and any port another program holds.

A running agent says where it listens, and what it could not serve, in ``runtime.json``
(``agent/daemon/runtime.py``). Without a running agent the doctor tries the configured
WebSocket ports itself, so a program squatting on one is found before the agent starts.
"""

from __future__ import annotations

import errno
import json
import re
import socket
from typing import Any

from agent import paths
from agent.config import Config
from agent.i18n import _
from agent.platform import current as current_platform
from agent.transport.websocket import range_ports

RUNTIME_FILE = "runtime.json"  # written by agent.daemon.runtime (not imported: heavy)


def transport_report(config: Config) -> dict[str, Any]:
    """``{"running", "pid", "ports", "unavailable": {transport: why}}``."""
    info = _running_agent()
    if info is not None:
        return {"running": True, "pid": info.get("pid"), "ports": dict(info.get("ports", {})),
                "unavailable": dict(info.get("unavailable", {}))}
    unavailable: dict[str, str] = {}
    server = config.server
    for transport, enabled, port in (("wss", server.wss_enabled, server.wss_port),
                                     ("ws", server.ws_enabled, server.ws_port)):
        if enabled and port:
            # The agent would take the first free port of its range: only a range with no
            # free port is a problem, named by the configured port as the agent names it.
            problems = [_port_problem(p) for p in range_ports(port, server.port_range)]
            if all(problems):
                unavailable[transport] = str(problems[0])
    return {"running": False, "pid": None, "ports": {}, "unavailable": unavailable}


def _running_agent() -> dict[str, Any] | None:
    try:
        info = json.loads((paths.data_dir() / RUNTIME_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    pid = info.get("pid")
    if isinstance(pid, int) and current_platform().process_exists(pid) is False:
        return None  # left behind by an agent that did not stop cleanly
    return info


def _port_problem(port: int) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} is used by another program"
            return f"cannot listen on port {port}: {exc.strerror or exc}"
    return None


# The report keeps these in English (as the daemon writes them to runtime.json, and for
# ``--json``); they are translated only where a person reads them.
_IN_USE = re.compile(r"port (\d+) is used by another program")
_CANNOT_LISTEN = re.compile(r"cannot listen on port (\d+): (.*)", re.DOTALL)


def _shown_reason(why: str) -> str:
    if match := _IN_USE.fullmatch(why):
        return _("port {port} is used by another program").format(port=match[1])
    if match := _CANNOT_LISTEN.fullmatch(why):
        return _("cannot listen on port {port}: {reason}").format(port=match[1],
                                                                   reason=match[2])
    return why


def transport_lines(report: dict[str, Any]) -> list[str]:
    """The report's lines for a person, in the CLI's language."""
    lines = []
    ports = ", ".join(f"{name} {port}" for name, port in sorted(report["ports"].items()))
    if report["running"]:
        lines.append("  " + _("agent running (pid {pid}): {ports}").format(
            pid=report["pid"], ports=ports or _("no WebSocket port")))
    else:
        lines.append("  " + _("agent not running"))
    for transport, why in sorted(report["unavailable"].items()):
        lines.append("  " + _("{reason}; pages cannot reach the agent over {transport}").format(
            reason=_shown_reason(why), transport=transport))
    return lines
