"""The `imza-agent` command.

Subcommands import their modules lazily: `run` must accept connections fast, so nothing
heavy (pyHanko, Qt) is imported on the way to the listening socket.

Global options (``--config``, ``--language``) are accepted before or after the
subcommand: every subparser has them too, with ``SUPPRESS`` defaults so a value given
before the subcommand is not overwritten by the subparser's default. Messages and help
follow the language: ``--language``, else ``[ui] language`` (``auto``: the tray's choice,
else the OS locale).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from agent import PROTOCOL_VERSION, __version__
from agent.i18n import LANGUAGES, _

if TYPE_CHECKING:  # imported lazily at run time: `run` must listen fast
    from agent.config import Config

GLOBAL_OPTIONS = ("--config", "--language")


def _global_options(*, sub: bool) -> argparse.ArgumentParser:
    """The options every command takes; ``sub``: the copy a subparser carries."""
    parser = argparse.ArgumentParser(add_help=False)
    default = argparse.SUPPRESS if sub else None
    parser.add_argument("--config", type=Path, default=default, metavar="FILE",
                        help=_("configuration file (TOML); default: "
                               "~/.config/imza-agent/config.toml if it exists"))
    parser.add_argument("--language", choices=LANGUAGES, default=default,
                        help=_("language of messages (default: [ui] language of the "
                               "configuration)"))
    return parser


def _parser() -> argparse.ArgumentParser:
    common = [_global_options(sub=True)]
    parser = argparse.ArgumentParser(
        prog="imza-agent", parents=[_global_options(sub=False)],
        description=_("Local signing agent: portals ask, you choose the certificate and "
                      "enter the PIN in the agent's own window."))
    parser.add_argument("--version", action="version",
                        version=f"imza-agent {__version__} (protocol {PROTOCOL_VERSION})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=common, help=help_text, description=help_text)

    run = command("run", _("run the agent (the daemon)"))
    run.add_argument("--headless", action="store_true",
                     help=_("no tray icon and no dialog toolkit (servers, tests)"))

    status = command("status", _("whether the agent runs: pid, settings, ports, tokens, "
                                 "uptime"))
    status.add_argument("--json", action="store_true", help=_("machine-readable output"))

    stop = command("stop", _("stop the running agent"))
    stop.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                      help=_("how long to wait for it to end (default: 5)"))

    config = command("config", _("the configuration file: where it is, what is in force, "
                                 "edit it"))
    config_sub = config.add_subparsers(dest="config_action", metavar="ACTION", required=True)
    config_sub.add_parser("path", parents=common, help=_("print the configuration file's path"))
    config_sub.add_parser("show", parents=common,
                          help=_("print every setting in force, as TOML"))
    config_sub.add_parser("edit", parents=common,
                          help=_("open the file in an editor (created if missing), then "
                                 "check it"))

    autostart = command("autostart", _("start the agent when you log in: on, off, or status"))
    autostart.add_argument("action", choices=["on", "off", "status"])
    autostart.add_argument("--json", action="store_true", help=_("machine-readable output"))

    extension = command("extension", _("write the browser extension's packages (Chromium "
                                       "zip, Firefox .xpi) and print where they are"))
    extension.add_argument("--out", type=Path, default=None, metavar="DIR",
                           help=_("directory to write them into (default: the agent's data "
                                  "directory, subdirectory extension)"))
    extension.add_argument("--json", action="store_true", help=_("machine-readable output"))

    doctor = command("doctor", _("show readers, modules, tokens and certificates"))
    doctor.add_argument("--json", action="store_true", help=_("machine-readable output"))

    trust = command("trust", _("manage trust in the agent's local TLS certificate"))
    trust.add_argument("action", choices=["install", "status", "remove"])
    trust.add_argument("--json", action="store_true", help=_("machine-readable output"))

    journal = command("journal", _("the signing journal"))
    journal.add_argument("action", choices=["verify", "show"],
                         help=_("verify: check the chain, the keys and the records (exit "
                                "status 1 on any problem); show: a table of the entries"))
    journal.add_argument("--json", action="store_true", help=_("machine-readable output"))
    journal.add_argument("--since", metavar="WHEN",
                         help=_("show: only entries since a date (2026-11-30) or for a "
                                "time back (7d, 24h, 30m)"))
    journal.add_argument("--origin", metavar="SITE",
                         help=_("show: only entries of this origin, host or site"))

    pin = command("pin", _("change your token's PIN, or unblock it with the PUK; the PINs "
                           "are asked for here, never taken from arguments"))
    pin.add_argument("action", choices=["change", "unblock"])
    pin.add_argument("--token", metavar="SERIAL|LABEL", default=None,
                     help=_("the token, by serial number or label (needed when more than "
                            "one is present)"))

    extend = command("extend", _("extend a signature you have (CMS, PDF or XML) to a higher "
                                 "level: a time-stamp, validation data, an archive "
                                 "time-stamp; no key or PIN is used"))
    from agent.commands.extend_command import add_arguments as extend_arguments

    extend_arguments(extend)

    verify = command("verify", _("verify the signatures of a signed file (CMS, PDF, XML "
                                 "or ASiC-E) and show the verdict on each"))
    verify.add_argument("file", type=Path, metavar="FILE")
    verify.add_argument("--data", type=Path, metavar="DETACHED",
                        help=_("the signed content of a detached CMS signature"))
    verify.add_argument("--json", action="store_true", help=_("machine-readable output"))

    demo = command("demo", _("the agent with the demo identity, the demo portal and a "
                             "browser pointed at it"))
    demo.add_argument("--port", type=int, default=8443, help=_("the portal's https port"))
    demo.add_argument("--no-browser", action="store_true",
                      help=_("do not open a browser"))

    native_host = command("native-host", _("the browser extension's native messaging host "
                                           "(`native-host install` registers it)"))
    native_host.add_argument("args", nargs=argparse.REMAINDER,
                             help=_("install [options], or what the browser passes"))
    return parser


def _early_options(argv: Sequence[str]) -> tuple[Path | None, str | None]:
    """``--config`` and ``--language`` wherever they are, before the full parse: the
    language must be known to translate the help."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--config", type=Path)
    early.add_argument("--language")
    known, _rest = early.parse_known_args(list(argv))
    language = known.language if known.language in LANGUAGES else None
    return known.config, language


def _choose_language(config_path: Path | None, override: str | None) -> None:
    from agent import i18n

    language = override
    if language is None:
        from agent.config import ConfigError, config_file, load_config
        from agent.ui.preferences import saved_language

        try:
            configured = load_config(config_file(config_path)).ui.language
        except ConfigError:
            configured = "auto"  # the command reports the error, in the OS's language
        language = i18n.resolve(configured, saved=saved_language())
    i18n.set_language(language)


def _load_config(path: Path | None, language: str | None) -> Config:
    from agent.config import ConfigError, load_config

    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"imza-agent: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if language is not None:  # --language wins over the file, for the daemon's dialogs too
        config = config.model_copy(
            update={"ui": config.ui.model_copy(update={"language": language})})
    return config


def _split_globals(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """Global options out of `native-host install ...`'s own arguments."""
    rest: list[str] = []
    found: dict[str, str] = {}
    items = iter(args)
    for arg in items:
        name, eq, value = arg.partition("=")
        if name in GLOBAL_OPTIONS:
            found[name] = value if eq else next(items, "")
        else:
            rest.append(arg)
    return rest, found


def main(argv: Sequence[str] | None = None) -> int:
    # Names on tokens are Azerbaijani, Turkish and Russian: never die on a C locale.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(encoding="utf-8", errors="replace")

    argv = list(sys.argv[1:] if argv is None else argv)
    _choose_language(*_early_options(argv))
    try:
        return _main(argv)
    except BrokenPipeError:  # `imza-agent config show | head`: the reader left; fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 2
    if args.command == "native-host" and args.args[:1] == ["install"]:
        rest, found = _split_globals(args.args[1:])
        args.args = ["install", *rest]
        if "--config" in found:
            args.config = Path(found["--config"])
    explicit: Path | None = args.config
    language: str | None = args.language

    if args.command == "native-host":
        # The launcher script it writes names only a config given here: otherwise the
        # host (and the daemon it starts) look for the default file when they run.
        if args.args[:1] == ["install"]:
            from agent.platform.native_messaging import install

            return install(args.args[1:], explicit)
        # Otherwise the browser started us; what it passes (the caller's origin for Chrome,
        # the manifest path and add-on ID for Firefox) is ignored: the browser only starts
        # hosts whose manifest allows the calling extension.
        from agent.transport.native_host import run_host

        return run_host(explicit)

    # These never need the configuration: a broken file must not keep a person from
    # seeing or stopping the agent.
    if args.command == "status":
        from agent.commands.status import status

        return status(json_output=args.json)
    if args.command == "stop":
        from agent.commands.status import stop

        return stop(timeout=args.timeout)
    if args.command == "autostart":
        from agent.platform.autostart import command as autostart_command

        return autostart_command(args.action, json_output=args.json)
    if args.command == "extension":
        from agent.browser_extension import write_packages_command

        return write_packages_command(out=args.out, json_output=args.json)

    from agent.config import config_file

    config_path = config_file(explicit)
    if args.command == "config":
        from agent.commands.config_command import main as config_main

        return config_main(args.config_action, config_path, explicit=explicit is not None)
    config = _load_config(config_path, language)

    if args.command == "run":
        from agent.commands.running import run_agent

        return run_agent(config, config_path, headless=args.headless)
    if args.command == "doctor":
        from agent.doctor import main as doctor_main

        return doctor_main(config, json_output=args.json)
    if args.command == "trust":
        from agent.tls.trust import main as trust_main

        return trust_main(args.action, json_output=args.json)
    if args.command == "journal":
        from agent.journal import main as journal_main

        return journal_main(args.action, json_output=args.json,
                            keyring_timeout=config.journal.keyring_timeout,
                            since=args.since, origin=args.origin)
    if args.command == "pin":
        from agent.commands.pin_command import main as pin_main

        return pin_main(args.action, config, token=args.token)
    if args.command == "extend":
        from agent.commands.extend_command import run as extend_run

        return extend_run(args, config)
    if args.command == "verify":
        from agent.commands.verify_command import main as verify_main

        return verify_main(config, args.file, data=args.data, json_output=args.json)
    if args.command == "demo":
        from agent.commands.running import demo

        return demo(config, config_path, language=language, port=args.port,
                    open_browser=not args.no_browser)
    raise AssertionError(args.command)


if __name__ == "__main__":
    raise SystemExit(main())
