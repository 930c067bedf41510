"""``imza-agent run`` and ``imza-agent demo`` never start a second agent.

``run`` takes the instance lock (agent/daemon/instance.py) before it binds a port; when
another agent holds it, it says which one runs and with which config, and exits 1.
``demo`` reuses a running agent only when its effective settings are the ones asked for;
otherwise it says that a different agent runs and how to stop it.
"""

from __future__ import annotations

import errno
import socket
import sys
from pathlib import Path

from agent.commands.text import error, shown_path
from agent.config import Config
from agent.daemon.instance import InstanceLock, RunningAgent, current_facts, find_running
from agent.i18n import _

ALREADY_RUNNING = 1


def describe(agent: RunningAgent) -> dict[str, str]:
    """The placeholders every "an agent runs" message uses."""
    facts = agent.facts
    return {"pid": str(agent.pid),
            "config": shown_path(facts.config) if facts else _("unknown"),
            "language": (facts.language if facts and facts.language else _("unknown"))}


def already_running(agent: RunningAgent) -> str:
    if agent.pid is None:
        return _("another imza-agent is starting right now; try again in a moment")
    return _("imza-agent is already running (pid {pid}, config {config}, language "
             "{language}); use `imza-agent stop` first").format(**describe(agent))


def run_agent(config: Config, config_path: Path | None, *, headless: bool) -> int:
    from agent import i18n

    language = i18n.resolve(config.ui.language, saved=_saved_language())
    lock = InstanceLock()
    other = lock.acquire(current_facts(config, config_path, language))
    if other is not None:
        error(already_running(other))
        return ALREADY_RUNNING
    # The ports listen from here on (the kernel queues a page's connection) while the
    # daemon imports its stack; the transports serve them once it has.
    from agent.daemon.early_listen import EarlySockets

    early = EarlySockets.bind(config.server)
    try:
        from agent.daemon.run import run_daemon

        # The daemon ends with os._exit: the lock is released by its exit hook (and by
        # the kernel in any case); `finally` covers a start that failed.
        return run_daemon(config, headless=headless, on_exit=lock.release, early=early)
    finally:
        early.close()
        lock.release()


def _saved_language() -> str | None:
    from agent.ui.preferences import saved_language

    return saved_language()


def demo(config: Config, config_path: Path | None, *, language: str | None, port: int,
         open_browser: bool) -> int:
    """The demo portal on ``port`` with the agent ``config`` asks for: the running one when
    its settings are these, a new one when none runs, never a different one."""
    from agent.demo_portal import NEEDS_FORMATS
    from agent.formats import available_formats

    if not {"cms", "pdf"} <= available_formats().keys():  # before any agent starts
        print(NEEDS_FORMATS, file=sys.stderr)
        return 2
    if not _port_free(port):
        error(_("port {port} is already in use: is `imza-agent demo` running already (its "
                "portal: https://localhost:{port}/)? Choose another port with --port.")
              .format(port=port))
        return ALREADY_RUNNING
    running = find_running()
    if running is not None:
        if running.pid is None:
            error(already_running(running))
            return ALREADY_RUNNING
        changed = running.changed_sections(config)
        if changed is None or changed:
            sections = (", ".join(f"[{name}]" for name in changed) if changed
                        else _("unknown"))
            error(_("a different imza-agent is running (pid {pid}, config {config}, language "
                    "{language}); its settings differ in {sections}. Stop it with "
                    "`imza-agent stop`, then start the demo again.")
                  .format(sections=sections, **describe(running)))
            return ALREADY_RUNNING
        print(_("using the running imza-agent (pid {pid}): it has the same settings")
              .format(pid=running.pid), flush=True)
    else:
        from agent.daemon.launcher import start_daemon
        from agent.paths import data_dir
        from agent.transport.local import SOCKET_NAME

        try:
            start_daemon(data_dir() / SOCKET_NAME, config_path, language=language)
        except OSError as exc:
            error(_("the agent did not start: {reason}").format(reason=exc))
            return 1
    from agent.demo_portal import main as demo_main

    try:
        return demo_main(config, config_path, port=port, open_browser=open_browser)
    except OSError as exc:  # the port was taken between the check and the bind
        if exc.errno != errno.EADDRINUSE:
            raise
        error(_("port {port} is already in use: is `imza-agent demo` running already (its "
                "portal: https://localhost:{port}/)? Choose another port with --port.")
              .format(port=port))
        return ALREADY_RUNNING


def _port_free(port: int) -> bool:
    """Whether the portal could listen on 127.0.0.1:``port`` (as PortalServer binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True

