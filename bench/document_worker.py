"""What the document worker costs: one small PDF signed (B-B, a software P-256 key) in
the bench process the way the daemon did before issue 11 §7, and through a document
worker — with a warm spare waiting (requests spaced out) and without (``warm_workers =
0``: every document starts Python and pyHanko).

    .venv/bin/python bench/document_worker.py [--rounds N]

A bench, not a test: it prints medians and their ratio and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from agent.formats.anchors import Anchors  # noqa: E402
from agent.formats.isolation import DocumentWorkers, WorkerLimits  # noqa: E402
from agent.formats.job import FormatJob  # noqa: E402
from agent.formats.network import NetworkSettings  # noqa: E402
from agent.formats.pades import build_pades_here  # noqa: E402


def _job() -> FormatJob:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench")])
    start = datetime.now(UTC) - timedelta(minutes=5)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(start)
            .not_valid_after(start + timedelta(days=1)).sign(key, hashes.SHA256()))

    async def sign(digest: bytes, algorithm: str, *, ecdsa_raw: bool = False) -> bytes:
        return key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))

    return FormatJob(sign=sign, certificate=cert, chain=[], anchors=Anchors(),
                     network=NetworkSettings(), tsa_url=None)


ARGS = {"level": "B-B", "reason": None, "location": None, "field_name": None, "stamp": None}


async def _timed(make: object, rounds: int, pause: float) -> list[float]:
    times = []
    for _ in range(rounds):
        if pause:
            await asyncio.sleep(pause)  # lets the spare finish starting, as between pages
        start = time.perf_counter()
        await make()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return times


async def main(rounds: int) -> None:
    from test_formats_pdf import minimal_pdf

    pdf, job = minimal_pdf(), _job()
    await build_pades_here(job, pdf, **ARGS)  # imports and font caches, not measured
    in_process = await _timed(lambda: build_pades_here(job, pdf, **ARGS), rounds, 0)
    warm = DocumentWorkers(WorkerLimits(warm_workers=1))
    await warm.run("pdf", job, {"pdf": pdf, **ARGS})
    with_spare = await _timed(lambda: warm.run("pdf", job, {"pdf": pdf, **ARGS}), rounds, 2.0)
    await warm.close()
    cold = DocumentWorkers(WorkerLimits(warm_workers=0))
    no_spare = await _timed(lambda: cold.run("pdf", job, {"pdf": pdf, **ARGS}), rounds, 0)
    await cold.close()
    base = statistics.median(in_process)
    print("| sign.pdf B-B, small PDF | median ms | ratio |")
    print("|---|---|---|")
    for label, times in (("in the process (before)", in_process),
                         ("worker, warm spare", with_spare),
                         ("worker, started per document", no_spare)):
        median = statistics.median(times)
        print(f"| {label} | {median * 1000:.0f} | {median / base:.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    asyncio.run(main(parser.parse_args().rounds))
