"""The `imza-agent` command.

Subcommands import their modules lazily: `run` must accept connections fast, so nothing
heavy (pyHanko, tkinter) is imported on the way to the listening socket.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from agent import PROTOCOL_VERSION, __version__

if TYPE_CHECKING:  # imported lazily at run time: `run` must listen fast
    from agent.config import Config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imza-agent",
        description="Local signing agent: portals ask, you choose the certificate and "
                    "enter the PIN in the agent's own window.")
    parser.add_argument("--version", action="version",
                        version=f"imza-agent {__version__} (protocol {PROTOCOL_VERSION})")
    parser.add_argument("--config", type=Path, default=None,
                        help="configuration file (TOML); see docs/configuration.md")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the agent (the daemon)")
    run.add_argument("--headless", action="store_true",
                     help="no tray icon and no dialog toolkit (servers, tests)")

    doctor = sub.add_parser("doctor", help="show readers, modules, tokens and certificates")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")

    trust = sub.add_parser("trust", help="manage trust in the agent's local TLS certificate")
    trust.add_argument("action", choices=["install", "status", "remove"])
    trust.add_argument("--json", action="store_true", help="machine-readable output")

    journal = sub.add_parser("journal", help="the signing journal")
    journal.add_argument("action", choices=["verify", "show"])

    demo = sub.add_parser("demo", help="the agent with the demo identity, the demo portal "
                                       "and a browser pointed at it")
    demo.add_argument("--port", type=int, default=8443, help="the portal's https port")
    demo.add_argument("--no-browser", action="store_true", help="do not open a browser")

    native_host = sub.add_parser(
        "native-host", help="the browser extension's native messaging host "
                            "(`native-host install` registers it)")
    native_host.add_argument("args", nargs=argparse.REMAINDER,
                             help="install [options], or what the browser passes")

    return parser


def _load_config(path: Path | None) -> Config:
    from agent.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"imza-agent: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: Sequence[str] | None = None) -> int:
    # Names on tokens are Azerbaijani, Turkish and Russian: never die on a C locale.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(encoding="utf-8", errors="replace")

    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 2
    config = _load_config(args.config)

    if args.command == "run":
        from agent.daemon.run import run_daemon

        return run_daemon(config, headless=args.headless)
    if args.command == "doctor":
        from agent.doctor import main as doctor_main

        return doctor_main(config, json_output=args.json)
    if args.command == "trust":
        from agent.tls.trust import main as trust_main

        return trust_main(args.action, json_output=args.json)
    if args.command == "journal":
        from agent.journal import main as journal_main

        return journal_main(args.action)
    if args.command == "demo":
        from agent.demo_portal import main as demo_main

        return demo_main(config, args.config, port=args.port, open_browser=not args.no_browser)
    if args.command == "native-host":
        if args.args[:1] == ["install"]:
            from agent.platform.native_messaging import install

            return install(args.args[1:], args.config)
        # Otherwise the browser started us; what it passes (the caller's origin for Chrome,
        # the manifest path and add-on ID for Firefox) is ignored: the browser only starts
        # hosts whose manifest allows the calling extension.
        from agent.transport.native_host import run_host

        return run_host(args.config)
    raise AssertionError(args.command)


if __name__ == "__main__":
    raise SystemExit(main())
