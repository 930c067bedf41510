"""Soak: many mixed requests against one daemon, and whether its RSS or open files grow.

    .venv/bin/python bench/soak.py [--requests 20000] [--seconds 600] [--json out.json]

A real `imza-agent run --headless` on the SoftHSM bed (scripted UI, a system policy that
grants the bench origin select, sign, list, tokens and auth). Requests come in sessions:
a connection opens, lists and selects, then runs a shuffled mix of ``certificates.list``,
``sign.hash``, ``sign.cms``, ``sign.pdf`` and ``auth.login``, and closes; between sessions a
handshake the agent must refuse (an origin it does not admit). The pace spreads
``--requests`` over ``--seconds``; a slower agent simply takes longer.

Every ``SAMPLE`` seconds the RSS (``VmRSS``) and the open file descriptors of the daemon,
and of its whole process tree, are read. After the warm-up (the first ``WARM_UP`` share of
the requests) a least-squares line through the samples gives the growth as a slope: KiB
and descriptors per 1,000 requests. A flat agent shows slopes near zero; the table gives
the first and last readings too.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]

from agent_process import ORIGIN, AgentProcess, _tree, rpc, write_files  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

SAMPLE = 5.0
WARM_UP = 0.2
SESSION = 25  # requests per connection (list and select included)
# Handshakes the agent refuses: an unknown path, and an origin that is not https.
REFUSALS = (("/v9", ORIGIN), ("/v1", "http://plain-http.invalid"))
# The mix inside a session (weights); list and select open every session.
# Documents are rare: each is parsed in a fresh document worker (about 0.9 s here), and
# 20,000 requests must fit in about ten minutes.
MIX = {"sign.hash": 60, "certificates.list": 20, "auth.login": 16, "sign.cms": 1,
       "sign.pdf": 1}
HOLDER = "Əliyev"  # holds rsa_sign and rsa_auth on token A: one PIN for sign and auth


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF with a correct cross-reference table."""
    content = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode("ascii")
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += (b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
            % (len(objects) + 1, xref))
    return bytes(out)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Sample:
    t: float
    requests: int
    rss_daemon: int
    rss_tree: int
    fds_daemon: int
    fds_tree: int
    rss_pkcs11: int  # the PKCS#11 workers: long-lived, unlike the document workers


@dataclass
class Soak:
    samples: list[Sample] = field(default_factory=list)
    done: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    requests: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # time spent, by kind

    def count(self, kind: str, ok: bool, why: str = "", took: float = 0.0) -> None:
        self.requests += 1
        self.seconds[kind] = self.seconds.get(kind, 0.0) + took
        table = self.done if ok else self.failed
        table[kind] = table.get(kind, 0) + 1
        if not ok and len(self.errors) < 20:
            self.errors.append(f"{kind}: {why}"[:300])


def sample(daemon: int, soak: Soak, t0: float) -> Sample:
    rss_tree = fds_tree = rss_pkcs11 = 0
    for pid in _tree(daemon):
        try:
            rss = rss_kib(pid)
            fds_tree += fds(pid)
            if b"agent.keystores.pkcs11.worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                rss_pkcs11 += rss
        except OSError:  # a worker that just ended
            continue
        rss_tree += rss
    return Sample(time.monotonic() - t0, soak.requests, rss_kib(daemon), rss_tree,
                  fds(daemon), fds_tree, rss_pkcs11)


async def one(ws: Any, soak: Soak, kind: str, handle: str, pdf: bytes) -> None:
    params: dict[str, Any]
    if kind == "sign.hash":
        params = {"handle": handle, "hash": b64(os.urandom(32)), "hashAlgorithm": "SHA-256"}
    elif kind == "sign.cms":
        params = {"handle": handle, "data": b64(os.urandom(256)), "hashAlgorithm": "SHA-256",
                  "level": "B"}
    elif kind == "sign.pdf":
        params = {"handle": handle, "pdf": b64(pdf), "level": "B-B"}
    elif kind == "auth.login":
        challenge = base64.urlsafe_b64encode(os.urandom(32)).decode("ascii").rstrip("=")
        params = {"challenge": challenge}
    else:
        params = {"purpose": "sign"}
    start = time.perf_counter()
    try:
        await rpc(ws, kind, params)
    except RuntimeError as exc:
        soak.count(kind, False, str(exc), time.perf_counter() - start)
    else:
        soak.count(kind, True, took=time.perf_counter() - start)


async def refused(port: int, soak: Soak, which: int) -> None:
    """A handshake the agent refuses: counted done when it is refused, failed otherwise."""
    path, origin = REFUSALS[which % len(REFUSALS)]
    try:
        async with connect(f"ws://127.0.0.1:{port}{path}", origin=origin,  # type: ignore[arg-type]
                           compression=None) as ws:
            await rpc(ws, "agent.info")
    except Exception:
        soak.count("refused handshake", True)
    else:
        soak.count("refused handshake", False, "the agent served an origin it must refuse")


async def run_soak(agent: AgentProcess, total: int, seconds: float) -> Soak:
    assert agent.process is not None
    daemon = agent.process.pid
    soak = Soak()
    rng = random.Random(17)
    kinds = [k for k, w in MIX.items() for _ in range(w)]
    pdf = minimal_pdf("Soak 17")
    interval = seconds / total
    t0 = time.monotonic()
    soak.samples.append(sample(daemon, soak, t0))
    next_sample = SAMPLE
    sessions = 0
    while soak.requests < total:
        async with agent.connect() as ws:
            await one(ws, soak, "certificates.list", "", pdf)
            start = time.perf_counter()
            try:
                chosen = await rpc(ws, "certificates.select", {"purpose": "sign"})
                handle = chosen["handle"]
                soak.count("certificates.select", True, took=time.perf_counter() - start)
            except RuntimeError as exc:
                soak.count("certificates.select", False, str(exc), time.perf_counter() - start)
                continue
            for _ in range(SESSION - 2):
                await one(ws, soak, rng.choice(kinds), handle, pdf)
                # Pace: spread the requests over the wanted time.
                ahead = t0 + soak.requests * interval - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
                if time.monotonic() - t0 >= next_sample:
                    soak.samples.append(sample(daemon, soak, t0))
                    next_sample += SAMPLE
                    if len(soak.samples) % 12 == 0:  # progress, once a minute
                        print(f"{soak.requests} requests, {soak.samples[-1].t:.0f} s",
                              file=sys.stderr, flush=True)
                if soak.requests >= total:
                    break
        await refused(agent.port, soak, sessions)
        sessions += 1
    soak.samples.append(sample(daemon, soak, t0))
    return soak


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


def rows(soak: Soak) -> list[tuple[str, str, str]]:
    warm = [s for s in soak.samples if s.requests >= WARM_UP * soak.requests]
    first, last = warm[0], soak.samples[-1]
    per_k = {name: slope([(s.requests / 1000, getattr(s, name)) for s in warm])
             for name in ("rss_daemon", "rss_tree", "fds_daemon", "fds_tree", "rss_pkcs11")}
    minutes = (last.t - soak.samples[0].t) / 60
    done = ", ".join(f"{k} {v}" for k, v in sorted(soak.done.items()))
    failed = ", ".join(f"{k} {v}" for k, v in sorted(soak.failed.items())) or "none"
    mean = ", ".join(f"{k} {1000 * t / (soak.done.get(k, 0) + soak.failed.get(k, 0)):.1f}"
                     for k, t in sorted(soak.seconds.items()))
    return [
        ("soak: requests (by kind), minutes", f"{soak.requests} in {minutes:.1f} min: {done}",
         ""),
        ("soak: failed requests", failed, ""),
        ("soak: mean time per request, ms", mean, ""),
        (f"soak: daemon RSS after warm-up → end ({len(warm)} samples)",
         f"{first.rss_daemon / 1024:.1f} → {last.rss_daemon / 1024:.1f} MiB; slope "
         f"{per_k['rss_daemon']:+.1f} KiB / 1000 requests",
         "no growth: " + ("met" if per_k["rss_daemon"] <= 64 else "NOT met")),
        ("soak: RSS of the PKCS#11 workers",
         f"{first.rss_pkcs11 / 1024:.1f} → {last.rss_pkcs11 / 1024:.1f} MiB; slope "
         f"{per_k['rss_pkcs11']:+.1f} KiB / 1000 requests", ""),
        ("soak: RSS of the daemon's whole tree (document workers come and go)",
         f"{first.rss_tree / 1024:.1f} → {last.rss_tree / 1024:.1f} MiB; slope "
         f"{per_k['rss_tree']:+.1f} KiB / 1000 requests", ""),
        ("soak: open file descriptors, daemon / tree",
         f"{first.fds_daemon} → {last.fds_daemon} / {first.fds_tree} → {last.fds_tree}; slope "
         f"{per_k['fds_daemon']:+.2f} / {per_k['fds_tree']:+.2f} per 1000 requests",
         "no growth: " + ("met" if per_k["fds_daemon"] < 0.5 else "NOT met")),
    ]


def soak_files(base: Path, module: Path, pin: str) -> tuple[Path, Path]:
    config, policy = write_files(base, module, HOLDER, pin, name="config-soak")
    # The shared policy grants no auth: this one does.
    policy.write_text(f"[[allow]]\norigins = [{json.dumps(ORIGIN)}]\n"
                      "permissions = [\"select\", \"sign\", \"list\", \"tokens\", \"auth\"]\n",
                      encoding="utf-8")
    return config, policy


async def main_async(args: argparse.Namespace) -> int:
    from testbed.pki import build_pki
    from testbed.softhsm import build_softhsm

    with tempfile.TemporaryDirectory(prefix="imza-soak-") as tmp:
        base = Path(tmp)
        bed = build_softhsm(base / "softhsm", build_pki())
        paths = soak_files(base, bed.module, bed.tokens["A"].pin)
        home = base / "user-home"  # a first run puts its CA into stores under HOME
        home.mkdir()
        agent = AgentProcess(base / "soak", *paths, {**bed.env, "HOME": str(home)})
        try:
            await agent.start()
            soak = await run_soak(agent, args.requests, args.seconds)
        finally:
            agent.stop()
    table = rows(soak)
    for what, value, bar in table:
        print(f"| {what} | {value} | {bar} |")
    if soak.errors:
        print("first failures:\n  " + "\n  ".join(soak.errors))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"rows": table, "samples": [s.__dict__ for s in soak.samples],
             "done": soak.done, "failed": soak.failed, "errors": soak.errors},
            ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--json", help="also write the samples and rows to this file")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
