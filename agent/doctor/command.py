"""``imza-agent doctor`` and ``python -m agent.doctor``: print the report, say by the exit
code whether everything configured works."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agent.config import Config, ConfigError, load_config
from agent.doctor.collect import collect, has_failures
from agent.doctor.text import render_text


def main(config: Config, *, json_output: bool) -> int:
    """Print the report; 0 when everything configured works, 1 when something fails."""
    report = collect(config)
    out = sys.stdout
    reconfigure = getattr(out, "reconfigure", None)
    if reconfigure is not None:
        # Holder names are Azerbaijani, Turkish, Russian: never let a legacy console
        # code page turn them into an exception or question marks in a support ticket.
        reconfigure(encoding="utf-8", errors="backslashreplace")
    if json_output:
        json.dump(report, out, ensure_ascii=False, indent=2, sort_keys=True)
        out.write("\n")
    else:
        render_text(report, out)
    out.flush()
    return 1 if has_failures(report) else 0


def cli(argv: list[str] | None = None) -> int:
    """``python -m agent.doctor [--config FILE] [--json]``."""
    parser = argparse.ArgumentParser(prog="imza-agent doctor",
                                     description="Show what the agent sees on this machine.")
    parser.add_argument("--config", type=Path, default=None, help="configuration file")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    return main(config, json_output=args.json)
