"""One PKCS#11 module in its own process: ``python -m agent.keystores.pkcs11.worker MODULE``.

Vendor modules crash, hang and print to stdout; running each in a child process keeps the
daemon alive whatever they do.  The worker reads request frames from stdin and writes
answers to a private copy of the original stdout (see ``wire``).  Every PKCS#11 call runs
on this process's one thread: python-pkcs11 calls C_Initialize without locking flags, so
the module may not be thread-safe.

The worker knows nothing of the agent's types: it answers with plain dicts and names
errors by ``kind`` strings that ``client`` turns into ``agent.errors`` exceptions.  It is
started on demand, so it imports only the stdlib and python-pkcs11.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def _take_protocol_fd() -> int:
    """Keep the real stdout for frames and send everything printed to fd 1 to stderr."""
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    return protocol_fd


def main(argv: list[str]) -> int:
    protocol_fd = _take_protocol_fd()
    # Imported after the fd swap, so nothing an import prints can corrupt the frames.
    from agent.keystores.pkcs11 import wire
    from agent.keystores.pkcs11.worker_ops import WorkerError

    if len(argv) != 2:
        wire.write_frame(protocol_fd, _error_frame(WorkerError("BAD_REQUEST", "usage")))
        return 2
    try:
        from agent.keystores.pkcs11.worker_ops import LoadedModule

        module = LoadedModule.load(argv[1])
    except WorkerError as exc:
        wire.write_frame(protocol_fd, _error_frame(exc))
        return 1
    wire.write_frame(protocol_fd, {"ok": True, "result": {"ready": True, "pid": os.getpid()}})

    stdin = sys.stdin.buffer
    try:
        while (request := wire.read_frame(stdin)) is not None:
            wire.write_frame(protocol_fd, _answer(module, request))
    except wire.FrameError as exc:
        print(f"pkcs11 worker: bad frame from parent: {exc}", file=sys.stderr)
        return 3
    finally:
        module.close()
    return 0


def _answer(module: Any, request: dict[str, Any]) -> dict[str, Any]:
    from agent.keystores.pkcs11.worker_ops import WorkerError

    try:
        answer = {"ok": True, "result": module.handle(request.get("op"),
                                                      request.get("args") or {})}
    except WorkerError as exc:
        answer = _error_frame(exc)
    return {"id": request.get("id"), **answer}


def _error_frame(exc: Any) -> dict[str, Any]:
    error = {"kind": exc.kind, "message": exc.message, **exc.data}
    if exc.detail:
        error["detail"] = exc.detail  # for the daemon's log only
    return {"ok": False, "error": error}


if __name__ == "__main__":
    sys.exit(main(sys.argv))
