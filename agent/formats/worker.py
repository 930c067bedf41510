"""One document in its own process: ``python -m agent.formats.worker CPU_S MEMORY_MB LOG``.

A hostile PDF or XML can make pyHanko, signxml or lxml spend seconds of CPU and
gigabytes of memory; here that costs this process only, which the kernel stops at its
limits (set first thing, before any document is read) and the daemon replaces.

The worker loads the format libraries, says it is ready, and then serves exactly one
request — one document, or the items of one ``sign.batch`` — : it builds the signature
and, when it needs the user's key, first asks the daemon to confirm (which shows the
dialog and logs in to the token), then sends each digest and waits for its signature.
Its log records travel to the daemon, which writes them to its own log.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

# Exit code for "ran out of memory" when even the error frame could not be written.
EXIT_OUT_OF_MEMORY = 86


def apply_limits(cpu_seconds: int, memory_mb: int) -> bool:
    """CPU time and memory: rlimits on Linux and macOS (which refuses RLIMIT_AS; the CPU
    limit still holds), a job object on Windows (agent/platform/process_limits.py).
    Returns whether the limits are in force; the daemon's wall-clock timeout is there
    besides."""
    from agent.platform.process_limits import limit_this_process

    return limit_this_process(cpu_seconds=cpu_seconds, memory_bytes=memory_mb << 20)


class _ForwardingHandler(logging.Handler):
    """Sends each record to the daemon as a ``log`` frame."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        from agent.formats import worker_wire

        try:
            worker_wire.write_answer(self.fd, {"type": "log", "level": record.levelno,
                                               "name": record.name,
                                               "message": self.format(record)})
        except Exception:  # a log line must never take the request down
            self.handleError(record)


def _warm_imports() -> None:
    """Load what a document needs now, while the worker is idle, not on the request."""
    import contextlib
    import importlib

    for name in ("agent.formats.pades", "agent.formats.cades", "agent.formats.xades",
                 "agent.formats.preview",  # a batch's XML previews
                 "agent.formats.worker_jobs"):  # a job's own code, and what it loads
        # signxml/lxml are optional: without them sign.xml is not offered at all.
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    with contextlib.suppress(ImportError):
        from agent.formats.pades import find_stamp_font

        find_stamp_font()  # imports fontTools and HarfBuzz, which every PAdES request uses


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print("usage: python -m agent.formats.worker CPU_SECONDS MEMORY_MB LOG_LEVEL",
              file=sys.stderr)
        return 2
    limited = apply_limits(int(argv[1]), int(argv[2]))
    # The real stdout carries frames; anything a library prints goes to stderr.
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    from agent.formats import worker_payload, worker_wire

    logging.basicConfig(level=int(argv[3]), handlers=[_ForwardingHandler(protocol_fd)])
    logging.raiseExceptions = False
    _warm_imports()
    worker_wire.write_answer(protocol_fd, {"type": "ready", "pid": os.getpid(),
                                           "limited": limited})
    stdin = sys.stdin.buffer
    try:
        request = worker_payload.read_job(stdin)
    except worker_wire.FrameError as exc:
        print(f"document worker: bad frame from the daemon: {exc}", file=sys.stderr)
        return 3
    if request is None:  # the daemon closed the pipe: an idle spare being retired
        return 0
    from agent.document_tail import Appended, allow_appended

    answer: dict[str, Any] | bytes | list[bytes]
    args = request.get("args") if request.get("op") != "batch" else None
    # A single job's result may come back from its builder as the update after one of
    # its documents (``Appended``): the daemon has that document, so only the update is
    # sent, and nobody here joins the two.
    documents = tuple(value for value in args.values() if type(value) is bytes) \
        if isinstance(args, dict) else ()
    try:
        with allow_appended(*documents):
            answer = _serve(request, protocol_fd, stdin)
    except MemoryError:
        answer = _too_large_answer()
    try:
        if isinstance(answer, Appended):
            worker_payload.write_result_after(
                protocol_fd, answer, worker_payload.appended_prefix(answer, args)
                if isinstance(args, dict) else None)
        elif isinstance(answer, bytes):
            args = request.get("args")
            # An incremental update: the daemon has the bytes it began with.
            prefix = worker_payload.result_prefix(answer, args) \
                if isinstance(args, dict) else None
            worker_payload.write_result_after(protocol_fd, answer, prefix)
        elif isinstance(answer, list):
            worker_wire.write_results(protocol_fd, answer)
        else:
            worker_wire.write_answer(protocol_fd, answer)
    except MemoryError:
        return EXIT_OUT_OF_MEMORY
    return 0


def _too_large_answer() -> dict[str, Any]:
    return {"type": "error", "reason": "TOO_LARGE",
            "message": "the document needs more memory than allowed", "data": {}}


def _serve(request: dict[str, Any], fd: int, stdin: Any
           ) -> dict[str, Any] | bytes | list[bytes]:
    """The built result, or the error answer."""
    import asyncio

    from agent.errors import AgentError
    from agent.formats.worker_jobs import run_batch, run_job

    # asyncio.run installs a Ctrl-C handler that holds the main task, and on the way out
    # Python 3.11 formats that handler's repr, the task's result (the signed document)
    # included: seconds for a 50 MB PDF. A worker takes no Ctrl-C of its own anyway: the
    # daemon ends it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    result: bytes | list[bytes]
    try:
        if request.get("op") == "batch":
            result = asyncio.run(run_batch(request, fd, stdin))
        else:
            result = asyncio.run(run_job(request, fd, stdin))
    except MemoryError:
        return _too_large_answer()
    except AgentError as exc:
        return {"type": "error", "reason": exc.reason, "message": exc.message,
                "data": _plain(exc.data)}
    except Exception:
        logging.getLogger("agent.formats.worker").exception(
            "%s failed inside the format library", request.get("kind", request.get("op")))
        return {"type": "error", "reason": "INTERNAL",
                "message": "the signature could not be built", "data": {}}
    return result


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    """An error's data as JSON values (what ``to_wire`` would send anyway)."""
    return {str(k): v if isinstance(v, str | int | float | bool) or v is None else str(v)
            for k, v in data.items()}


if __name__ == "__main__":
    sys.exit(main(sys.argv))
