"""`imza-agent` under cProfile, for bench/run.py: ``python bench/profile_daemon.py OUT -m
agent.cli ARGS...``. The daemon ends with ``os._exit`` (agent/daemon/run.py), which
skips ``python -m cProfile``'s own writing of the file; the profile is written by an exit
hook of the daemon instead."""

from __future__ import annotations

import cProfile
import sys

from agent.daemon.run import at_exit


def main() -> int:
    out, rest = sys.argv[1], sys.argv[2:]
    if rest[:2] == ["-m", "agent.cli"]:
        rest = rest[2:]
    profile = cProfile.Profile()
    at_exit(lambda: profile.dump_stats(out))
    profile.enable()
    from agent.cli import main as cli_main

    return cli_main(rest)


if __name__ == "__main__":
    sys.exit(main())
