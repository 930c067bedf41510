"""The frozen build's entry point: every executable of the PyInstaller build runs this.

The agent starts its helper processes as ``sys.executable -m MODULE ARGS`` (token workers,
the UI process, document previews, the on-demand launcher). In a frozen build
``sys.executable`` is imza-agent.exe, which has no interpreter command line, so this entry
does what ``python -m`` would: run MODULE as ``__main__`` with ``sys.argv`` = [exe, ARGS].
Anything else is the ``imza-agent`` command line. The same program is also
imza-agent-native-host.exe (imza-agent.spec): under that name it is ``imza-agent
native-host``, because a browser starts a native host with arguments of its own (the
caller's origin), never ours.
"""

from __future__ import annotations

import multiprocessing
import runpy
import sys
from pathlib import Path

NATIVE_HOST_EXE = "imza-agent-native-host"


def main() -> int:
    multiprocessing.freeze_support()
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "-m":
        sys.argv = [sys.argv[0], *args[2:]]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        return 0
    from agent.cli import main as cli_main

    if Path(sys.executable).stem.lower() == NATIVE_HOST_EXE:
        return cli_main(["native-host", *args])
    return cli_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
