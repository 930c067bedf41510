"""The agent's overhead on a slow smart card: the virtual PIV card through OpenSC.

    .venv/bin/python bench/piv_card.py [--quick] [--delay 0.005] [--json out.json]

Needs pcscd and vsmartcard-vpcd installed and no other pcscd running (it starts its own,
as the tests do: tests/vcard.py).  The card is ``tests/piv_card.py``'s PIV applet with a
P-256 signing key in slot 9C ("PIN always": a VERIFY before every signature) and a delay
before every answer, like a real card's.  In the same run, on the same card:

* raw: python-pkcs11 in this process through ``opensc-pkcs11.so``: open a session,
  C_Login, find the key, C_SignInit + context-specific C_Login + C_Sign, C_Logout: what
  the agent's worker does for one request;
* the agent: a real ``imza-agent run --headless`` with only OpenSC configured, and one
  as a user's machine has it (the known modules: OpenSC, CACKey, ykcs11), ``sign.hash``
  over one WebSocket connection with the scripted PIN dialog.

It prints median and p99 of both, their difference and ratio, and the APDUs the card
answered per signature (the card's time is the APDUs times the delay).  Nothing here
asserts a time; docs/smartcards.md records a run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]

import pkcs11  # noqa: E402
from agent_process import AgentProcess, rpc, write_files  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding  # noqa: E402
from pkcs11 import Attribute, Mechanism, ObjectClass  # noqa: E402
from testbed.pki import build_pki  # noqa: E402
from vcard import Pcscd  # noqa: E402


def _test_card_module() -> Any:
    """tests/piv_card.py under another name: this file is piv_card.py too."""
    spec = importlib.util.spec_from_file_location("piv_test_card",
                                                  REPO / "tests" / "piv_card.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


OPENSC = Path("/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so")
HOLDER = "Bench Kartı"
SIGN_SLOT = 0x9C


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def p99(xs: Sequence[float]) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[98] if len(xs) > 1 else xs[0]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _timed(count: int, one: Callable[[], object]) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        one()
        samples.append(time.perf_counter() - start)
    return samples


def raw_loop(der: bytes, pin: str, count: int) -> list[float]:
    """Per-signature seconds of open + C_Login + find + sign (with the key's own PIN) +
    C_Logout through OpenSC, python-pkcs11 in this process."""
    lib = pkcs11.lib(str(OPENSC))
    try:
        [token] = [slot.get_token() for slot in lib.get_slots(token_present=True)]
        with token.open() as session:
            [cert] = [c for c in session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE})
                      if c[Attribute.VALUE] == der]
            key_id = cert[Attribute.ID]

        def one() -> None:
            with token.open(user_pin=pin) as session:
                key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=key_id)
                key.sign(os.urandom(32), mechanism=Mechanism.ECDSA, pin=pin)

        one()  # warm-up: OpenSC reads the card's objects once
        return _timed(count, one)
    finally:
        lib.finalize()


async def agent_loop(home: Path, config: Path, policy: Path, der: bytes,
                     count: int) -> list[float]:
    """Per-request seconds of sign.hash with the 9C key, from a WebSocket client."""
    agent = AgentProcess(home, config, policy, {})
    try:
        await agent.start()
        async with agent.connect() as ws:
            listed = await rpc(ws, "certificates.list", {"purpose": "sign"})
            wanted = base64.b64encode(der).decode("ascii")
            [handle] = [c["handle"] for c in listed["certificates"]
                        if c["certificate"] == wanted]

            async def one() -> float:
                start = time.perf_counter()
                await rpc(ws, "sign.hash", {"handle": handle, "hashAlgorithm": "SHA-256",
                                            "hash": base64.b64encode(os.urandom(32)).decode()})
                return time.perf_counter() - start

            await one()  # warm-up: the worker's first login
            return [await one() for _ in range(count)]
    finally:
        agent.stop()


def configs(base: Path, pin: str) -> tuple[Path, Path, Path]:
    """The bench's config with OpenSC alone, the same with the known modules, and the
    policy.  Plain ws:// is off by default; the bench's client speaks it."""
    config, policy = write_files(base, OPENSC, HOLDER, pin)
    text = config.read_text(encoding="utf-8")
    if "ws_enabled" not in text:
        text = text.replace("ws_port = 0\n", "ws_port = 0\nws_enabled = true\n", 1)
    config.write_text(text, encoding="utf-8")
    line = f"known_modules = false\nmodules = [{json.dumps(str(OPENSC))}]\n"
    assert line in text, "bench/agent_process.py write_files changed its [tokens] lines"
    known = base / "config-known.toml"
    known.write_text(text.replace(line, "known_modules = true\n"), encoding="utf-8")
    return config, known, policy


async def measure(base: Path, *, count: int, delay: float) -> dict[str, Any]:
    test_card = _test_card_module()
    pcscd = Pcscd(base / "pcscd").start()
    try:
        with test_card.piv_card_in_reader(pcscd, pki=build_pki(), holder=HOLDER,
                                          delay=delay) as placed:
            piv = placed.piv
            der = piv.slots[SIGN_SLOT].cert.public_bytes(Encoding.DER)
            config, known, policy = configs(base, piv.pin)
            out: dict[str, Any] = {"delay": delay, "count": count}
            for name, run in (
                    ("raw", lambda: asyncio.to_thread(raw_loop, der, piv.pin, count)),
                    ("agent", lambda: agent_loop(base / "agent", config, policy, der, count)),
                    ("agent_known", lambda: agent_loop(base / "agent-known", known, policy,
                                                       der, count))):
                seen = len(piv.apdus)
                out[name] = await run()
                # Per signature, warm-up and set-up included: an upper bound.
                out[f"{name}_apdus"] = (len(piv.apdus) - seen) / (count + 1)
            return out
    finally:
        pcscd.stop()


def rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    raw = result["raw"]
    card = f"PIV P-256 9C, {result['delay'] * 1000:g} ms per APDU, {result['count']} signatures"
    out = [(f"{card}: raw python-pkcs11 open+login+sign+logout (median / p99)",
            f"{ms(median(raw))} / {ms(p99(raw))}", f"{result['raw_apdus']:.0f} APDUs")]
    for name, what in (("agent", "agent sign.hash, OpenSC only"),
                       ("agent_known", "agent sign.hash, known modules")):
        agent = result[name]
        out.append((f"{card}: {what} (median / p99)",
                    f"{ms(median(agent))} / {ms(p99(agent))}",
                    f"{result[name + '_apdus']:.0f} APDUs"))
        out.append((f"{card}: {what}, overhead vs raw (median / p99; ratio of medians)",
                    f"{ms(median(agent) - median(raw))} / {ms(p99(agent) - p99(raw))}; "
                    f"{median(agent) / median(raw):.2f}×", ""))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 signatures instead of 100")
    parser.add_argument("--delay", type=float, default=0.005,
                        help="seconds the card waits before every answer (default 0.005)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if not OPENSC.is_file():
        print(f"{OPENSC} is missing (install opensc-pkcs11)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="imza-bench-piv-") as tmp:
        result = asyncio.run(measure(Path(tmp), count=10 if args.quick else 100,
                                     delay=args.delay))
    table = rows(result)
    width = max(len(r[0]) for r in table)
    print(f"\n| {'measure':<{width}} | value | card |\n|{'-' * (width + 2)}|---|---|")
    for what, value, apdus in table:
        print(f"| {what:<{width}} | {value} | {apdus} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": table, "raw": result},
                                              ensure_ascii=False, indent=1),
                                   encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
