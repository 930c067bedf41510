"""The coverage-guided fuzzers (tests/fuzz/fuzz_*.py, atheris/libFuzzer) with a fixed
budget each: a fixed seed, at most ``runs`` inputs and ``seconds`` of fuzzing, a per-input
timeout and an RSS limit.  A target passes when libFuzzer exits 0 and wrote no
crash-/timeout-/oom-/leak- artifact: no input raised what the target does not allow, hung
past the timeout or grew past the memory limit.

The whole module takes about 2 minutes on a 2-core machine.  Longer runs, and replaying
an artifact: docs/testing.md, "Fuzzing".
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

FUZZ_DIR = Path(__file__).resolve().parent / "fuzz"
ARTIFACT = re.compile(r"^(crash|timeout|oom|leak|slow-unit)-")


@dataclass(frozen=True)
class Budget:
    target: str
    runs: int        # inputs to try (fewer if ``seconds`` runs out first)
    seconds: int     # -max_total_time
    timeout: int     # -timeout: one input longer than this is a hang
    rss_mb: int      # -rss_limit_mb: past this the process is out of memory
    min_runs: int    # fewer executions than this means the fuzzer did not really run


# The document targets get the worker's memory limit (documents.worker_memory_mb).
BUDGETS = [
    Budget("fuzz_frame", runs=150_000, seconds=15, timeout=10, rss_mb=1024, min_runs=1000),
    Budget("fuzz_origin", runs=100_000, seconds=15, timeout=10, rss_mb=1024, min_runs=1000),
    Budget("fuzz_dispatch", runs=15_000, seconds=20, timeout=30, rss_mb=1536, min_runs=300),
    Budget("fuzz_pdf", runs=15_000, seconds=30, timeout=10, rss_mb=1024, min_runs=200),
    Budget("fuzz_xml", runs=40_000, seconds=20, timeout=10, rss_mb=1024, min_runs=500),
]


def run_target(script: Path, budget: Budget, tmp_path: Path) -> tuple[int, list[str], str]:
    """(exit status, artifact names, output) of one libFuzzer run within ``budget``."""
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir(exist_ok=True)
    log = tmp_path / "fuzz.log"
    command = [sys.executable, str(script),
               f"-seed_corpus={tmp_path / 'corpus'}", "-seed=1",
               f"-runs={budget.runs}", f"-max_total_time={budget.seconds}",
               f"-timeout={budget.timeout}", f"-rss_limit_mb={budget.rss_mb}",
               f"-artifact_prefix={artifacts}/", "-print_final_stats=1"]
    with log.open("wb") as out:
        finished = subprocess.run(command, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=budget.seconds + 90, check=False)
    found = sorted(p.name for p in artifacts.iterdir() if ARTIFACT.match(p.name))
    return finished.returncode, found, log.read_text("utf-8", errors="replace")


@pytest.mark.timeout(150)
@pytest.mark.parametrize("budget", BUDGETS, ids=lambda b: b.target)
def test_fuzz_target_finds_no_crash_hang_or_oom(budget: Budget, tmp_path: Path) -> None:
    status, found, text = run_target(FUZZ_DIR / f"{budget.target}.py", budget, tmp_path)
    assert status == 0 and not found, (
        f"{budget.target}: exit {status}, artifacts {found} in {tmp_path / 'artifacts'}\n"
        f"replay: python tests/fuzz/{budget.target}.py <artifact>\n" + text[-6000:])
    done = re.search(r"Done (\d+) runs", text)
    assert done is not None, text[-3000:]
    runs = int(done.group(1))
    print(f"{budget.target}: {runs} inputs, no crash, hang or OOM")
    assert runs >= budget.min_runs, f"{budget.target} ran only {runs} inputs\n{text[-3000:]}"


# --- the check itself can fail ------------------------------------------------------------

_BROKEN_TARGET = """
import sys, time
sys.path.insert(0, {fuzz_dir!r})
import harness

def test_one(data: bytes) -> None:
    if data.startswith(b"boom"):
        raise TypeError("a bug")
    if data.startswith(b"hang"):
        time.sleep(3600)

harness.fuzz(test_one, lambda: [b"fine", {seed!r}])
"""


@pytest.mark.parametrize(("seed", "artifact"), [(b"boom", "crash-"), (b"hang", "timeout-")])
def test_a_crash_or_a_hang_fails_the_check(seed: bytes, artifact: str, tmp_path: Path) -> None:
    script = tmp_path / "fuzz_broken.py"
    script.write_text(_BROKEN_TARGET.format(fuzz_dir=str(FUZZ_DIR), seed=seed), "utf-8")
    status, found, text = run_target(script, Budget(
        "fuzz_broken", runs=1000, seconds=20, timeout=2, rss_mb=1024, min_runs=1), tmp_path)
    assert status != 0, text[-3000:]
    assert [name for name in found if name.startswith(artifact)], (found, text[-3000:])
