"""Writes imza-agent(1) in roff from the command's own argument parser, so the manual
page lists every command and option the program accepts.

    python3 manpage.py VERSION > imza-agent.1
"""

from __future__ import annotations

import argparse
import sys

from agent.cli import _parser


def roff(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line
                     for line in escaped.splitlines())


def options(parser: argparse.ArgumentParser) -> list[str]:
    lines: list[str] = []
    for action in parser._actions:  # argparse has no public listing of its actions
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
            continue
        name = ", ".join(action.option_strings) or action.metavar or action.dest
        if action.choices and not action.option_strings:
            name = "{" + ",".join(map(str, action.choices)) + "}"
        lines += [".TP", f"\\fB{roff(str(name))}\\fR", roff(action.help or "")]
    return lines


def main() -> None:
    version = sys.argv[1]
    parser = _parser()
    out = [f'.TH IMZA-AGENT 1 "" "imza-agent {roff(version)}" "User Commands"',
           ".SH NAME", "imza\\-agent \\- local e\\-signature agent for web portals",
           ".SH SYNOPSIS", "\\fBimza\\-agent\\fR [\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]",
           ".SH DESCRIPTION", roff(parser.description or ""),
           ".SH OPTIONS", *options(parser), ".SH COMMANDS"]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                out += [".SS", f"\\fB{roff(name)}\\fR", roff(helps.get(name) or ""),
                        ".PP", f"Usage: {roff(sub.format_usage().removeprefix('usage: ').strip())}"]
                sub_options = options(sub)
                if sub_options:
                    out += [".RS", *sub_options, ".RE"]
    out += [".SH FILES",
            ".TP", "\\fI~/.local/share/imza\\-agent/\\fR",
            "the user's data: the sites allowed, the signing journal, the local TLS "
            "certificate; never removed by the package",
            ".TP", "\\fI/etc/xdg/autostart/imza\\-agent.desktop\\fR", "start at login",
            ".SH SEE ALSO", "/usr/share/doc/imza\\-agent/README.Debian"]
    print("\n".join(out))


if __name__ == "__main__":
    main()
