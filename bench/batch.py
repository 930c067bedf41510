"""E-invoices per minute: a UBL-shaped invoice signed XAdES B-B enveloped, through a running
agent with ``sign.batch`` on SoftHSM, against the same signing done by signxml in a plain
loop with python-pkcs11 on the same SoftHSM key.

    .venv/bin/python bench/batch.py [--invoices 100] [--rounds 7] [--key rsa|ec]

Like for like: the same key, the same invoices, the same certificates in KeyInfo; the
plain loop's time includes its one login and logout (``C_Login``/``C_Logout`` around
the loop), as the agent's includes its one login.  The agent's figure is the whole
request as a page sees it: the frame, the one scripted confirmation + PIN dialog
(answered at once) with every invoice's preview, the login, one document worker parsing,
previewing and signing every invoice, one token signature per invoice, the answer.
The rounds alternate (a plain loop, then the agent), each after the agent is idle (its
spare document worker started), so both meet the same load of a shared machine; CPU
seconds of every process involved are printed beside the wall clock.

The issue's bars (issue 14 §3): within 1.5× of the plain loop, and at least 120 invoices
a minute (the mali mühür FAQ).  A bench, not a test: it prints the figures and asserts
nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]

from agent_process import AgentProcess, _tree, process_cpu, rpc, write_files  # noqa: E402
from testbed.pki import build_pki  # noqa: E402
from testbed.softhsm import SoftHsmBed, build_softhsm  # noqa: E402

BAR_RATIO = 1.5
BAR_PER_MINUTE = 120
IDENTITIES = {"rsa": "rsa_sign", "ec": "ec_sign"}

def invoice(number: int) -> bytes:
    """A UBL 2.1 invoice as Türkiye's e-Fatura shapes it (UBL-TR), with ten lines: the
    size of a real one (a few KiB), the signature going at the end of the root."""
    lines = "".join(
        f"<cac:InvoiceLine><cbc:ID>{i}</cbc:ID>"
        f'<cbc:InvoicedQuantity unitCode="C62">{i}</cbc:InvoicedQuantity>'
        f'<cbc:LineExtensionAmount currencyID="TRY">{i * 125}.00</cbc:LineExtensionAmount>'
        f"<cac:Item><cbc:Name>Mal/hizmet {i} – çay, şeker, ğ, ı, İ</cbc:Name></cac:Item>"
        f'<cac:Price><cbc:PriceAmount currencyID="TRY">125.00</cbc:PriceAmount></cac:Price>'
        "</cac:InvoiceLine>" for i in range(1, 11))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2" '
        'xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2" '
        'xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">'
        "<cbc:UBLVersionID>2.1</cbc:UBLVersionID><cbc:CustomizationID>TR1.2"
        "</cbc:CustomizationID><cbc:ProfileID>TICARIFATURA</cbc:ProfileID>"
        f"<cbc:ID>EFT2026{number:09d}</cbc:ID>"
        f"<cbc:UUID>6f2b9c3e-0000-4000-8000-{number:012d}</cbc:UUID>"
        "<cbc:IssueDate>2026-11-30</cbc:IssueDate><cbc:InvoiceTypeCode>SATIS"
        "</cbc:InvoiceTypeCode><cbc:DocumentCurrencyCode>TRY</cbc:DocumentCurrencyCode>"
        "<cac:AccountingSupplierParty><cac:Party><cac:PartyName><cbc:Name>Örnek Ticaret A.Ş."
        "</cbc:Name></cac:PartyName></cac:Party></cac:AccountingSupplierParty>"
        "<cac:AccountingCustomerParty><cac:Party><cac:PartyName><cbc:Name>Alıcı Ltd. Şti."
        "</cbc:Name></cac:PartyName></cac:Party></cac:AccountingCustomerParty>"
        '<cac:LegalMonetaryTotal><cbc:PayableAmount currencyID="TRY">6875.00'
        "</cbc:PayableAmount></cac:LegalMonetaryTotal>"
        f"{lines}</Invoice>").encode()


# --- the plain loop: signxml + python-pkcs11, logged in once ---------------------------------

@dataclass(frozen=True)
class Figures:
    wall: float  # seconds
    cpu: float   # seconds of CPU, every process involved
    roles: tuple[tuple[str, float], ...] = ()  # the agent's CPU by process (agent_roles)


class TokenKey:
    """What signxml needs of a private key (``sign``, ``public_key``, ``key_size``,
    ``curve``), signing on the token in a session that stays logged in."""

    def __init__(self, private: Any, cert: Any) -> None:
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.private = private
        self._public = cert.public_key()
        self.rsa = isinstance(self._public, rsa.RSAPublicKey)
        self.key_size = self._public.key_size

    @property
    def curve(self) -> Any:
        return self._public.curve

    def public_key(self) -> Any:
        return self._public

    def sign(self, data: bytes, *args: Any, **kwargs: Any) -> bytes:
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
        from pkcs11 import Mechanism

        if self.rsa:
            return bytes(self.private.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS))
        # SoftHSM has no ECDSA-with-SHA-256 mechanism: the hash here, ECDSA on the token.
        digest = hashlib.sha256(data).digest()
        raw = bytes(self.private.sign(digest, mechanism=Mechanism.ECDSA))
        half = len(raw) // 2  # signxml wants DER, as cryptography's keys give it
        return encode_dss_signature(int.from_bytes(raw[:half], "big"),
                                    int.from_bytes(raw[half:], "big"))


def plain_loop(bed: SoftHsmBed, identity: str, invoices: list[bytes]) -> Figures:
    """Seconds (wall clock and CPU) to sign every invoice, XAdES B-B enveloped, with
    signxml on the token: one login, every invoice, one logout."""
    import pkcs11
    from lxml import etree
    from pkcs11 import ObjectClass
    from signxml import methods
    from signxml.xades import XAdESSigner

    spec = bed.objects[identity].token
    cert = bed.identity(identity).cert
    lib = pkcs11.lib(str(bed.module))  # loaded once, as the agent's token worker has it
    token = lib.get_token(token_label=spec.label)
    parser = etree.XMLParser(resolve_entities=False, no_network=True)

    def sign(key: TokenKey, document: bytes) -> bytes:
        root = etree.fromstring(document, parser=parser)
        signer = XAdESSigner(method=methods.enveloped, signature_algorithm=(
            "rsa-sha256" if key.rsa else "ecdsa-sha256"), digest_algorithm="sha256",
            c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#")
        # The certificates the agent puts in KeyInfo: the signer's (the bench's agent has
        # no trust anchors, and the token holds no CA certificate, so no chain).
        signed = signer.sign(root, key=key, cert=[cert])
        return bytes(etree.tostring(signed, encoding="utf-8"))

    def session_key(session: Any) -> TokenKey:
        return TokenKey(session.get_key(object_class=ObjectClass.PRIVATE_KEY,
                                        id=bed.objects[identity].key_id), cert)

    with token.open(user_pin=spec.pin) as session:
        sign(session_key(session), invoices[0])  # imports and caches, not measured
    # Like the agent's one sign.batch: one login, every invoice, one logout.
    start, cpu = time.perf_counter(), time.process_time()  # SoftHSM runs in this process
    with token.open(user_pin=spec.pin) as session:
        key = session_key(session)
        for document in invoices:
            sign(key, document)
    figures = Figures(time.perf_counter() - start, time.process_time() - cpu)
    lib.finalize()
    return figures


# --- the agent -------------------------------------------------------------------------------

def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def batch_params(handle: str, invoices: list[bytes]) -> dict[str, Any]:
    return {"handle": handle, "display": {"text": f"{len(invoices)} e-fatura"},
            "items": [{"kind": "xml", "name": f"EFT2026{i:09d}.xml", "xml": b64(doc),
                       "level": "B-B", "mode": "enveloped", "digestAlgorithm": "SHA-256"}
                      for i, doc in enumerate(invoices)]}


def agent_cpu(pid: int) -> float:
    """CPU seconds of the daemon, every process under it (token workers, idle spares)
    and the children it has reaped (the document workers that served a request)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    reaped = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    return reaped + sum(process_cpu(p) for p in _tree(pid) if Path(f"/proc/{p}").exists())


# The agent's processes by what their command line runs, for the CPU by process.
_ROLES = (("agent.keystores.pkcs11.worker", "token worker"),
          ("multiprocessing", "frame parser"), ("agent.formats", "document workers"))


def agent_roles(pid: int) -> dict[str, float]:
    """CPU seconds by process: the daemon, its token worker, its frame parser and its
    document workers (live ones, and the reaped ones counted in the daemon's cutime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    roles = {"daemon": process_cpu(pid), "token worker": 0.0, "frame parser": 0.0,
             "document workers": (int(fields[13]) + int(fields[14])) / tick}
    for child in _tree(pid)[1:]:
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            cpu = process_cpu(child)
        except (FileNotFoundError, ProcessLookupError):
            continue
        role = next((name for mark, name in _ROLES if mark.encode() in command),
                    "document workers")
        roles[role] += cpu
    return roles


async def settle(pid: int, quiet: float = 0.01, limit: float = 30.0) -> None:
    """Until the agent's processes use (almost) no CPU for a quarter of a second: the
    document worker that a batch left to start as a spare has loaded its libraries, as
    it has between a page's batches."""
    deadline = time.monotonic() + limit
    before = agent_cpu(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        now = agent_cpu(pid)
        if now - before < quiet:
            return
        before = now


async def through_agent(bed: SoftHsmBed, identity: str, invoices: list[bytes], rounds: int,
                        base: Path, plain_round: Callable[[], Figures],
                        profile: Path | None = None) -> tuple[list[Figures], list[Figures]]:
    """Each round, the plain loop and then one ``sign.batch`` of every invoice (after a
    warm-up): interleaved, so both meet the same load of a shared machine."""
    spec = bed.objects[identity].token
    holder = bed.identity(identity).common_name
    config, policy = write_files(base, bed.module, holder, spec.pin, journal=True)
    # SoftHSM only: card events of other programs' readers on a shared machine (tests
    # with virtual readers) must not reach the bench's agent.
    config.write_text(config.read_text(encoding="utf-8") + "[pcsc]\nenabled = false\n",
                      encoding="utf-8")
    prefix = [str(REPO / "bench" / "profile_daemon.py"), str(profile)] if profile else []
    # A HOME of the bench's own (as bench/run.py's agent_env): a first start puts the
    # agent's CA into the browsers' stores under HOME, which must not be the user's
    # (465 certutil calls, 5.4 s of this bench's start-up, when it was).
    home = base / "user-home"
    home.mkdir(exist_ok=True)
    env = {**bed.env, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_DATA_HOME": str(home / ".local/share")}
    agent = AgentProcess(base / "agent-home", config, policy, env, prefix=prefix)
    await agent.start()
    try:
        async with agent.connect() as ws:
            # Handles are per connection: listed on the one that signs.
            listed = await rpc(ws, "certificates.list", {"purpose": "sign"})
            handle = {c["certificate"]: c["handle"] for c in listed["certificates"]}[
                b64(bed.identity(identity).der)]
            # A full batch first, not measured (as the plain loop's first invoice): the
            # daemon's first large frame and first batch load what they need.
            warm = await rpc(ws, "sign.batch", batch_params(handle, invoices))
            assert len(warm["results"]) == len(invoices)
            in_key_info = base64.b64decode(warm["results"][0]["xml"]).count(
                b"X509Certificate>") // 2
            assert in_key_info == 1, "the plain loop puts one certificate in KeyInfo too"
            assert agent.process is not None
            pid = agent.process.pid
            plain, times = [], []
            for _ in range(rounds):
                await settle(pid)  # the spare worker has started: the agent is idle
                plain.append(plain_round())
                params = json.dumps(batch_params(handle, invoices))  # not timed
                start, cpu, roles = time.perf_counter(), agent_cpu(pid), agent_roles(pid)
                result = await rpc(ws, "sign.batch", json.loads(params))
                wall, after = time.perf_counter() - start, agent_roles(pid)
                times.append(Figures(wall, agent_cpu(pid) - cpu, tuple(
                    (name, after[name] - roles[name]) for name in after)))
                assert len(result["results"]) == len(invoices)
                assert all(b"SignatureValue" in base64.b64decode(r["xml"])
                           for r in result["results"])
            return plain, times
    except RuntimeError:  # the agent answered an error: its log says why
        log = base / "agent-home.log"
        if log.exists():
            print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
        raise
    finally:
        agent.stop()


async def main(count: int, rounds: int, key: str, profile: Path | None = None) -> int:
    identity = IDENTITIES[key]
    invoices = [invoice(n) for n in range(1, count + 1)]
    with tempfile.TemporaryDirectory(prefix="imza-bench-batch-") as tmp:
        base = Path(tmp)
        bed = build_softhsm(base / "softhsm", build_pki())
        plain, agent = await through_agent(
            bed, identity, invoices, rounds, base,
            lambda: plain_loop(bed, identity, invoices), profile)
    plain_s = statistics.median(f.wall for f in plain)
    agent_s = statistics.median(f.wall for f in agent)
    # Each agent round against the plain round just before it (the same load).
    pair_ratio = statistics.median(a.wall / p.wall for a, p in zip(agent, plain, strict=True))
    plain_cpu = statistics.median(f.cpu for f in plain)
    agent_cpu_s = statistics.median(f.cpu for f in agent)
    plain_rate, agent_rate = count / plain_s * 60, count / agent_s * 60
    ratio = agent_s / plain_s
    size = sum(len(d) for d in invoices) / count
    print(f"| {count} UBL invoices ({size / 1024:.1f} KiB each), XAdES B-B enveloped, "
          f"{'RSA-2048' if key == 'rsa' else 'P-256'} on SoftHSM | median of {rounds} | "
          "invoices/minute |")
    print("|---|---|---|")
    print(f"| signxml + python-pkcs11, plain loop, logged in once | {plain_s:.2f} s | "
          f"{plain_rate:,.0f} |")
    print(f"| agent, one sign.batch (one dialog, one login, one worker) | {agent_s:.2f} s | "
          f"{agent_rate:,.0f} |")
    print(f"| ratio agent / plain loop (bar ≤ {BAR_RATIO}×) | {ratio:.2f}× | "
          f"{'meets' if ratio <= BAR_RATIO else 'misses'} the bar |")
    print(f"| invoices/minute through the agent (bar ≥ {BAR_PER_MINUTE}) | | "
          f"{'meets' if agent_rate >= BAR_PER_MINUTE else 'misses'} the bar |")
    print(f"| median of each round's ratio (agent / the plain loop just before it) | "
          f"{pair_ratio:.2f}× | |")
    print(f"| CPU: plain loop {plain_cpu:.2f} s, agent (every process) {agent_cpu_s:.2f} s | "
          f"{agent_cpu_s / plain_cpu:.2f}× | |")
    by_role = {name: statistics.median(dict(f.roles)[name] for f in agent)
               for name, _ in agent[0].roles}
    print("| agent CPU by process, median of the rounds | "
          + ", ".join(f"{name} {cpu * 1000:.0f} ms" for name, cpu in by_role.items())
          + " | |")
    print(f"all rounds, wall s: plain {[round(f.wall, 3) for f in plain]}, "
          f"agent {[round(f.wall, 3) for f in agent]}", file=sys.stderr)
    print(f"all rounds, CPU s: plain {[round(f.cpu, 3) for f in plain]}, "
          f"agent {[round(f.cpu, 3) for f in agent]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--key", choices=sorted(IDENTITIES), default="rsa")
    parser.add_argument("--profile", type=Path,
                        help="run the agent under cProfile, writing its profile here")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.invoices, args.rounds, args.key, args.profile)))
