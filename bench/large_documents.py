"""Issue 17, bars 4 and 5: a large PDF through the agent, against pyHanko in-process.

    .venv/bin/python bench/large_documents.py [--mb 50] [--rounds 3] [--path both]
                                              [--json FILE]

* time: ``sign.pdf`` (B-B, P-256 on SoftHSM) of a generated PDF of ``--mb`` MB through a
  real ``imza-agent run --headless`` — from the first frame sent to the answer received —
  against pyHanko signing the same file in this process (a software P-256 key, the same
  certificate), median of ``--rounds``; the bar is a ratio ≤ 1.5. Two paths, alternating
  round by round: ``base64`` (the document in the JSON request, the signed one in the
  answer) and ``upload`` (``document.upload``, the bytes as 1 MiB binary frames as the
  page SDK sends them, the signing call naming the upload, and the answer's binary frame
  holding only the bytes after the page's own document);
* the wire alone, for each path: the same frames up and the same answers down through a
  bare ``websockets`` echo on loopback, nothing else; and for the upload, the time until
  the daemon holds the bytes (an ``agent.info`` sent behind the frames is answered);
* CPU: user + system seconds of the daemon and every process below it per request;
* peak memory: the PSS of the daemon and every process below it (PKCS#11 and document
  workers), sampled every 20 ms while the request runs, against the idle figure plus 3×
  the document (bar 4);
* memory that comes back: the daemon's own PSS and RSS idle, and again once the documents
  are signed and the workers gone (bar 5: within 10 MiB).

A bench, not a test: it prints its figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from io import BytesIO
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]

from agent_process import AgentProcess, _pss_kib, _tree, write_files  # noqa: E402
from testbed.pki import build_pki  # noqa: E402
from testbed.softhsm import build_softhsm  # noqa: E402

MIB = 1024 * 1024
IDENTITY = "ec_sign"
PATHS = ("base64", "upload")
UPLOAD_FRAME = MIB  # the page SDK's binary frame (extension/sdk/imza.js)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _tree_pss_kib(pid: int) -> int:
    """0 when a process of the tree ended while it was read (the sampler tries again)."""
    try:
        return sum(_pss_kib(child) for child in _tree(pid))
    except (FileNotFoundError, ProcessLookupError):
        return 0


def _tree_cpu(pid: int) -> float:
    """User + system seconds of ``pid``, its reaped children (the document workers that
    ended) and its live descendants."""
    ticks = 0
    for index, child in enumerate(_tree(pid)):
        try:
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        ticks += int(fields[11]) + int(fields[12])
        if index == 0:
            ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


class PeakSampler:
    """The largest PSS of a process tree, sampled on a thread while a request runs."""

    def __init__(self, pid: int, every: float = 0.02) -> None:
        self.pid, self.every = pid, every
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_pss_kib(self.pid))
            self._stop.wait(self.every)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- the baseline: pyHanko in this process ------------------------------------------------------

def pyhanko_in_process(pdf: bytes, rounds: int) -> list[float]:
    """pyHanko's own signer on the same bytes: a software P-256 key and a certificate for
    it (the token's key cannot leave the token; the signature itself is ~1 ms either way)."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from pyhanko.keys import load_cert_from_pemder, load_private_key_from_pemder_data
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench")])
    start = datetime.now(UTC) - timedelta(minutes=5)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(start)
            .not_valid_after(start + timedelta(days=1)).sign(key, hashes.SHA256()))
    with tempfile.NamedTemporaryFile(suffix=".pem") as pem:
        pem.write(cert.public_bytes(serialization.Encoding.PEM))
        pem.flush()
        signing_cert = load_cert_from_pemder(pem.name)
    signing_key = load_private_key_from_pemder_data(key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), passphrase=None)
    signer = signers.SimpleSigner(signing_cert=signing_cert, signing_key=signing_key,
                                  cert_registry=None)  # type: ignore[arg-type]
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
        out = BytesIO()
        signers.PdfSigner(signers.PdfSignatureMetadata(field_name="Signature1"),
                          signer=signer).sign_pdf(writer, output=out)
        signed = out.getvalue()
        times.append(time.perf_counter() - t0)
        assert signed[:len(pdf)] == pdf
    return times


# --- the wire alone -----------------------------------------------------------------------------

async def upload_wire_floor(document_bytes: int, answer_bytes: int, rounds: int
                            ) -> list[float]:
    """The upload path's frames through ``websockets`` on loopback, both ends in this
    process: a small request and its answer, the bytes up as binary frames of
    UPLOAD_FRAME, a small request, and a small answer with a binary frame of the size the
    agent sent back."""
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import ServerConnection, serve

    tail = b"\0" * answer_bytes

    async def echo(conn: ServerConnection) -> None:
        async for message in conn:
            if isinstance(message, str) and message == "upload":
                await conn.send('{"result":{"upload":"u-0"}}')
            elif isinstance(message, str):
                await conn.send(json.dumps({"result": {"pdf": {"binary": len(tail)}}}))
                if tail:
                    await conn.send(tail)
            del message

    document = b"\1" * document_bytes
    view = memoryview(document)
    times = []
    async with serve(echo, "127.0.0.1", 0, max_size=None, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", max_size=None,
                           compression=None) as ws:
            for _ in range(rounds):
                t0 = time.perf_counter()
                await ws.send("upload")
                await ws.recv()
                for i in range(0, document_bytes, UPLOAD_FRAME):
                    await ws.send(view[i:i + UPLOAD_FRAME])
                await ws.send("sign")
                await ws.recv()
                if tail:
                    await ws.recv()
                times.append(time.perf_counter() - t0)
    return times


async def wire_floor(frame_chars: int, answer_chars: int, rounds: int) -> list[float]:
    """The same frame up and an answer of the same size down through ``websockets`` on
    loopback, both ends in this process, nothing else: what any WebSocket agent pays."""
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import ServerConnection, serve

    answer = "A" * answer_chars

    async def echo(conn: ServerConnection) -> None:
        async for message in conn:
            del message
            await conn.send(answer)

    times = []
    async with serve(echo, "127.0.0.1", 0, max_size=None, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", max_size=None,
                           compression=None) as ws:
            frame = "A" * frame_chars
            for _ in range(rounds):
                t0 = time.perf_counter()
                await ws.send(frame)
                await ws.recv()
                times.append(time.perf_counter() - t0)
    return times


# --- through the agent -------------------------------------------------------------------------

async def base64_round(ws: Any, msg_id: int, handle: str, pdf: bytes, frame_b64: str,
                       out: dict[str, Any]) -> float:
    frame = json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": "sign.pdf",
                        "params": {"handle": handle, "level": "B-B", "pdf": frame_b64}})
    t0 = time.perf_counter()
    await ws.send(frame)
    answer = await ws.recv()
    elapsed = time.perf_counter() - t0
    out.setdefault("frame_chars", len(frame))
    out.setdefault("answer_chars", len(answer))
    del frame
    result = json.loads(answer)
    assert "result" in result, str(result)[:500]
    signed = base64.b64decode(result["result"]["pdf"])
    assert signed[:len(pdf)] == pdf
    return elapsed


async def upload_round(ws: Any, msg_id: int, handle: str, pdf: bytes,
                       out: dict[str, Any]) -> float:
    """As the page SDK does it: the id first, then the bytes, then the signing call."""
    view = memoryview(pdf)
    t0 = time.perf_counter()
    upload = await _call(ws, msg_id, "document.upload", {"size": len(pdf)})
    for i in range(0, len(pdf), UPLOAD_FRAME):
        await ws.send(view[i:i + UPLOAD_FRAME])
    # Frames are read in order: once agent.info is answered, the daemon holds the upload
    # (one round trip more than a page needs; it splits the figure in two).
    await _call(ws, msg_id + 2, "agent.info", {})
    out.setdefault("upload_in_s", []).append(time.perf_counter() - t0)
    await ws.send(json.dumps({"jsonrpc": "2.0", "id": msg_id + 1, "method": "sign.pdf",
                              "params": {"handle": handle, "level": "B-B",
                                         "pdf": {"upload": upload["upload"]}}}))
    answer = json.loads(await ws.recv())
    assert "result" in answer, str(answer)[:500]
    shape = answer["result"]["pdf"]
    tail = await ws.recv() if shape["binary"] else b""
    elapsed = time.perf_counter() - t0
    assert isinstance(tail, bytes) and len(tail) == shape["binary"]
    assert shape.get("prefix") == len(pdf), shape  # an incremental update
    out.setdefault("upload_answer_bytes", len(tail))
    return elapsed


async def through_agent(agent: AgentProcess, pdf: bytes, der: bytes, rounds: int,
                        extra_mb: list[int], paths: tuple[str, ...]) -> dict[str, Any]:
    assert agent.process is not None
    pid = agent.process.pid
    out: dict[str, Any] = {"idle_tree_pss_kib": _tree_pss_kib(pid),
                           "idle_daemon_pss_kib": _pss_kib(pid),
                           "idle_daemon_rss_kib": _rss_kib(pid)}
    frame_b64 = base64.b64encode(pdf).decode("ascii") if "base64" in paths else ""
    runs: dict[str, dict[str, list[float]]] = {
        path: {"times": [], "peaks_tree_pss_kib": [], "cpu": []} for path in paths}
    async with agent.connect() as ws:
        listed = await _call(ws, 1, "certificates.list", {"purpose": "sign"})
        wanted = base64.b64encode(der).decode("ascii")
        [handle] = [c["handle"] for c in listed["certificates"] if c["certificate"] == wanted]
        # One small document first: the first document worker starts Python and pyHanko,
        # and a warm spare is kept from then on; both belong to the idle figure after it.
        from test_large_documents import large_pdf

        await _call(ws, 2, "sign.pdf", {"handle": handle, "level": "B-B",
                                        "pdf": base64.b64encode(large_pdf(4096)).decode()})
        await asyncio.sleep(3.0)
        out.update(warm_tree_pss_kib=_tree_pss_kib(pid), warm_daemon_pss_kib=_pss_kib(pid),
                   warm_daemon_rss_kib=_rss_kib(pid))
        for n in range(rounds):
            for path in paths:  # alternating: the machine's load falls on both alike
                cpu = _tree_cpu(pid)
                with PeakSampler(pid) as sampler:
                    if path == "base64":
                        elapsed = await base64_round(ws, 100 + 10 * n, handle, pdf,
                                                     frame_b64, out)
                    else:
                        elapsed = await upload_round(ws, 105 + 10 * n, handle, pdf, out)
                await asyncio.sleep(0.5)  # the document worker's exit, counted in its CPU
                runs[path]["cpu"].append(_tree_cpu(pid) - cpu)
                runs[path]["times"].append(elapsed)
                runs[path]["peaks_tree_pss_kib"].append(sampler.peak)
        for mb in extra_mb:  # larger documents, for the memory that must come back
            big = base64.b64encode(large_pdf(mb * 1000 * 1000, b"extra")).decode("ascii")
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": 900 + mb, "method": "sign.pdf",
                                      "params": {"handle": handle, "level": "B-B",
                                                 "pdf": big}}))
            del big
            assert "result" in json.loads(await ws.recv())
    # The document workers end with their requests; the warm spare stays (it is part of
    # the idle figure only once a document has been signed, so the daemon's own figure is
    # the one compared).
    await asyncio.sleep(3.0)
    out.update(paths=runs,
               after_tree_pss_kib=_tree_pss_kib(pid), after_daemon_pss_kib=_pss_kib(pid),
               after_daemon_rss_kib=_rss_kib(pid))
    return out


async def _call(ws: Any, msg_id: int, method: str, params: dict[str, Any]) -> Any:
    await ws.send(json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": method,
                              "params": params}))
    answer = json.loads(await ws.recv())
    if "error" in answer:
        raise RuntimeError(f"{method}: {answer['error']}")
    return answer["result"]


def _config(base: Path, module: Path, holder: str, pin: str) -> tuple[Path, Path]:
    config, policy = write_files(base, module, holder, pin, journal=False)
    text = config.read_text(encoding="utf-8").replace(
        "[server]\n", "[server]\n# One page sends several large documents in a row on "
        "purpose.\nbytes_per_second = 1073741824\nbytes_burst = 1073741824\n")
    config.write_text(text + "[formats]\nrevocation = \"off\"\n", encoding="utf-8")
    return config, policy


async def bench(args: argparse.Namespace, pdf: bytes) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="imza-bench-large-") as tmp:
        base = Path(tmp)
        bed = build_softhsm(base / "softhsm", build_pki())
        spec = bed.tokens["A"]
        identity = bed.identity(IDENTITY)
        config, policy = _config(base, bed.module, identity.common_name, spec.pin)
        if args.preview_bytes is not None:
            text = config.read_text(encoding="utf-8")
            config.write_text(text.replace("[ui]\n", f"[ui]\npreview_bytes = "
                                           f"{args.preview_bytes}\n"), encoding="utf-8")
        # --profile: the daemon under cProfile (bench/profiled_daemon.py; CPU time with
        # IMZA_BENCH_PROFILE_CPU=1), to see where its part of the time goes.
        prefix = ([str(REPO / "bench" / "profiled_daemon.py"), args.profile]
                  if args.profile else [])
        agent = AgentProcess(base / "home", config, policy, dict(bed.env), prefix)
        await agent.start()
        try:
            await asyncio.sleep(2.0)  # settle after start-up (stores ready, imports)
            agent_run = await through_agent(agent, pdf, identity.der, args.rounds,
                                            args.extra_mb, PATHS if args.path == "both"
                                            else (args.path,))
        finally:
            agent.stop()
    return {"document_bytes": len(pdf), **agent_run}


def report(r: dict[str, Any]) -> None:
    doc_kib = r["document_bytes"] / 1024
    base_t = statistics.median(r["pyhanko"])
    budget = r["warm_tree_pss_kib"] + 3 * doc_kib
    back = r["after_daemon_pss_kib"] - r["warm_daemon_pss_kib"]
    mib = 1024.0
    rows = [
        ("document", f"{r['document_bytes'] / 1e6:.1f} MB", ""),
        ("pyHanko in-process, same file, median", f"{base_t * 1000:.0f} ms", ""),
    ]
    for path, run in r["paths"].items():
        agent_t = statistics.median(run["times"])
        ratio = agent_t / base_t
        wire = statistics.median(r["wire"][path])
        peak = max(run["peaks_tree_pss_kib"])
        what = ("the document as base64 in the request, the signed one in the answer"
                if path == "base64" else "document.upload + 1 MiB binary frames, the "
                "answer's binary frame after the page's own bytes")
        rows += [
            (f"**{path}**: sign.pdf B-B through the agent, median ({what})",
             f"{agent_t * 1000:.0f} ms", ""),
            (f"{path}: time ratio agent / pyHanko", f"{ratio:.2f}",
             "≤ 1.5: " + ("met" if ratio <= 1.5 else "NOT met")),
            (f"{path}: the wire alone, same frames up and answers down (websockets, "
             "loopback), median", f"{wire * 1000:.0f} ms",
             f"pyHanko + wire = {(base_t + wire) / base_t:.2f}× pyHanko"),
            (f"{path}: CPU of daemon + workers per request, median",
             f"{statistics.median(run['cpu']) * 1000:.0f} ms", ""),
            (f"{path}: PSS daemon + workers, peak while signing", f"{peak / mib:.1f} MiB",
             f"≤ idle (warm) + 3× document = {budget / mib:.1f} MiB: "
             + ("met" if peak <= budget else "NOT met")),
        ]
    rows += [
        ("PSS daemon + workers, idle at start", f"{r['idle_tree_pss_kib'] / mib:.1f} MiB",
         ""),
        ("PSS daemon + workers, idle after a 4 KB PDF (warm spare)",
         f"{r['warm_tree_pss_kib'] / mib:.1f} MiB", ""),
        ("daemon PSS at start → after a 4 KB PDF → after the large ones",
         f"{r['idle_daemon_pss_kib'] / mib:.1f} → {r['warm_daemon_pss_kib'] / mib:.1f} → "
         f"{r['after_daemon_pss_kib'] / mib:.1f} MiB",
         "≤ +10 MiB: " + ("met" if back <= 10 * mib else "NOT met")),
        ("daemon RSS at start → after a 4 KB PDF → after the large ones",
         f"{r['idle_daemon_rss_kib'] / mib:.1f} → {r['warm_daemon_rss_kib'] / mib:.1f} → "
         f"{r['after_daemon_rss_kib'] / mib:.1f} MiB", ""),
        ("PSS daemon + workers after", f"{r['after_tree_pss_kib'] / mib:.1f} MiB",
         "(a warm document worker stays once a document was signed)"),
    ]
    print("| figure | value | bar |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if "upload_in_s" in r:
        print("upload: document.upload + bytes until the daemon holds them (s):",
              " ".join(f"{t:.3f}" for t in r["upload_in_s"]))
    for path, run in r["paths"].items():
        print(f"times (s), {path}:", " ".join(f"{t:.3f}" for t in run["times"]),
              "; wire:", " ".join(f"{t:.3f}" for t in r["wire"][path]),
              "; CPU:", " ".join(f"{t:.2f}" for t in run["cpu"]))
    print("times (s), pyHanko:", " ".join(f"{t:.3f}" for t in r["pyhanko"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=50, help="document size, MB (10^6 bytes)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--extra-mb", type=int, nargs="*", default=[100],
                        help="larger documents signed afterwards, before memory is read")
    parser.add_argument("--path", choices=("base64", "upload", "both"), default="both",
                        help="how the document crosses the wire (both: alternating)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--profile", help="write the daemon's cProfile to this file")
    parser.add_argument("--preview-bytes", type=int,
                        help="[ui] preview_bytes (default: the agent's, 100 MiB: the scripted "
                             "dialog then writes the document to its transcript)")
    args = parser.parse_args()
    from test_large_documents import large_pdf

    pdf = large_pdf(args.mb * 1000 * 1000)
    results = asyncio.run(bench(args, pdf))
    # pyHanko's synchronous API runs its own event loop: outside ours.
    results["pyhanko"] = pyhanko_in_process(pdf, args.rounds)
    results["wire"] = {}
    if "frame_chars" in results:
        results["wire"]["base64"] = asyncio.run(wire_floor(
            results["frame_chars"], results["answer_chars"], args.rounds))
    if "upload_answer_bytes" in results:
        results["wire"]["upload"] = asyncio.run(upload_wire_floor(
            len(pdf), results["upload_answer_bytes"], args.rounds))
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
