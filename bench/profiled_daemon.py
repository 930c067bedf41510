"""Run a module under cProfile and write the profile even though it ends with ``os._exit``.

    python bench/profiled_daemon.py OUT.prof -m agent.cli --config ... run --headless

``python -m cProfile -o`` writes its file only when the program returns; the daemon ends
with ``os._exit`` (agent/daemon/run.py says why), so the profile is written from the
daemon's own exit hooks instead.
"""

from __future__ import annotations

import cProfile
import os
import runpy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    out, flag, module, *rest = sys.argv[1:]
    if flag != "-m":
        raise SystemExit(__doc__)
    # IMZA_BENCH_PROFILE_CPU=1: CPU time instead of wall time (a loaded machine's
    # scheduling delays then stay out of the figures).
    cpu = os.environ.get("IMZA_BENCH_PROFILE_CPU") == "1"
    profile = cProfile.Profile(time.process_time) if cpu else cProfile.Profile()

    def dump() -> None:
        profile.disable()
        profile.dump_stats(out)

    from agent.daemon import run
    run._exit_hooks.append(dump)
    sys.argv = [module, *rest]
    profile.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        dump()  # a start that failed returns here


if __name__ == "__main__":
    main()
