"""What every atheris target shares: the import path, the seed corpus and the rules for
what counts as a crash.

A target is a script::

    python tests/fuzz/fuzz_frame.py -max_total_time=30 -timeout=10 -rss_limit_mb=2048

All libFuzzer flags pass through.  Without a corpus directory the harness writes the
target's seeds into a fresh temp dir and fuzzes from there; ``-seed_corpus=DIR`` (ours,
not libFuzzer's) writes them into DIR instead, so a longer local run can keep what it
finds.  An input that raises anything but the target's expected exceptions is a crash:
libFuzzer writes it as ``crash-<sha1>`` under ``-artifact_prefix`` and exits non-zero,
as it does for a per-input timeout (``timeout-*``) or the RSS limit (``oom-*``).
Rerun one input with ``python tests/fuzz/fuzz_x.py crash-<sha1>``.

``IMZA_FUZZ_SURVEY=FILE`` turns unexpected exceptions into lines in FILE (type and the
innermost frame) instead of crashes, to list every kind a run meets, not just the first.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
for _path in (str(REPO), str(TESTS)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

# Nothing a target runs may touch the real data dir (as tests/conftest.py ensures for
# pytest; a target may also be run by hand).
os.environ.setdefault("IMZA_AGENT_HOME", tempfile.mkdtemp(prefix="imza-fuzz-home-"))

import atheris  # noqa: E402

SEED_FLAG = "-seed_corpus="


def _corpus_args(argv: list[str], seeds: Iterable[bytes]) -> list[str]:
    """argv with a corpus directory holding the seeds (see the module docstring)."""
    rest = [a for a in argv[1:] if not a.startswith(SEED_FLAG)]
    given = [a[len(SEED_FLAG):] for a in argv[1:] if a.startswith(SEED_FLAG)]
    positional = [a for a in rest if not a.startswith("-")]
    if positional and not given:
        return [argv[0], *rest]  # a corpus or single inputs to replay: used as they are
    directory = Path(given[-1]) if given else Path(tempfile.mkdtemp(prefix="imza-fuzz-corpus-"))
    directory.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        (directory / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    return [argv[0], *rest, str(directory)]


def fuzz(test_one: Callable[[bytes], None], seeds: Callable[[], Iterable[bytes]]) -> None:
    """Run libFuzzer over ``test_one`` with ``sys.argv``; never returns."""
    argv = _corpus_args(sys.argv, seeds())
    atheris.Setup(argv, test_one)
    atheris.Fuzz()


def instrumented() -> atheris.import_hook.HookManager:
    """``with instrumented(): import agent...``: coverage feedback for our code and the
    pure-Python libraries the entry points hand data to."""
    return atheris.instrument_imports(include=["agent", "pyhanko", "publicsuffixlist",
                                               "idna"])


def unexpected(exc: Exception) -> None:
    """An exception the target does not allow: a crash; or with ``IMZA_FUZZ_SURVEY=FILE``
    a line in FILE (type and innermost frame), and the run goes on."""
    survey = os.environ.get("IMZA_FUZZ_SURVEY")
    if not survey:
        raise exc
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    with open(survey, "a", encoding="utf-8") as out:
        out.write(f"{type(exc).__name__} at {frame.filename}:{frame.lineno} ({frame.name})\n")
