"""A document worker loads what a batch's signing needs before the job arrives: the
modules ``agent.formats.worker_jobs`` imports are loaded when the worker warms up, not
on a batch's path (cryptography's OpenSSL backend, which the ECDSA signer loads on first
use, and the thread pool behind the reader of the daemon's signatures)."""

from __future__ import annotations

import json
import subprocess
import sys

LOADED_ON_FIRST_USE = ("cryptography.hazmat.backends.openssl.backend",
                       "concurrent.futures.thread")


def _modules_after(statement: str) -> dict[str, bool]:
    """Which of ``LOADED_ON_FIRST_USE`` a fresh interpreter holds after ``statement``."""
    code = (f"import sys, json\n{statement}\n"
            f"print(json.dumps({{m: m in sys.modules for m in {LOADED_ON_FIRST_USE!r}}}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    loaded: dict[str, bool] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def test_a_fresh_interpreter_does_not_hold_them() -> None:
    """The check below means something: these modules are not loaded by default."""
    assert _modules_after("pass") == dict.fromkeys(LOADED_ON_FIRST_USE, False)


def test_the_worker_jobs_module_loads_them() -> None:
    assert _modules_after("import agent.formats.worker_jobs") == \
        dict.fromkeys(LOADED_ON_FIRST_USE, True)
