"""`python -m agent.ui.qt --fd N --frame-bytes M`: the UI process (docs/ui-process.md).

Started by the daemon only (agent/ui/process/), with its end of a socketpair as ``N``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import traceback
from pathlib import Path
from types import TracebackType


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.ui.qt")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--frame-bytes", type=int, default=128 * 1024 * 1024)
    options = parser.parse_args(argv)
    # Screen readers must hear every window even when no AT-SPI registry asked for it yet.
    os.environ["QT_LINUX_ACCESSIBILITY_ALWAYS_ON"] = "1"
    # Ctrl+C in a terminal reaches the whole group: the daemon stops us with "quit".
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    level = getattr(logging, os.environ.get("IMZA_AGENT_LOG", "info").upper(), logging.INFO)
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="imza-agent-ui[%(process)d]: %(levelname)s %(name)s %(message)s")

    sys.excepthook = _log_kind_only
    from PySide6.QtWidgets import QApplication

    from agent.ui.qt.app import UiApp

    app = QApplication([sys.argv[0]])
    app.setApplicationName("imza-agent")
    app.setQuitOnLastWindowClosed(False)  # the tray lives on with no window open
    ui = UiApp(app, options.fd, options.frame_bytes)
    code = app.exec()
    return code or ui.exit_code


def _log_kind_only(kind: type[BaseException], error: BaseException,
                   trace: TracebackType | None) -> None:
    """An exception nobody caught (Qt reports those raised in slots here): its type and
    where, never its message, which may quote what a dialog shows."""
    where = " < ".join(f"{Path(f.filename).name}:{f.lineno}"
                       for f in reversed(traceback.extract_tb(trace)))
    logging.getLogger("imza_agent.ui").error("uncaught %s at %s", kind.__name__, where)


if __name__ == "__main__":
    sys.exit(main())
