"""ASiC-S containers (EN 319 162-1 §4.3: one file and its signature) verified like ASiC-E:
the signatures are made by a running agent with SoftHSM keys — a detached CAdES over the
file (``sign.cms``), a XAdES by ``sign.asic`` of that one file — and packed here as
ASiC-S (the agent builds ASiC-E only; the signature files are the same in both).  The
CAdES is checked by openssl too; a changed file fails; a second file is refused."""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path

import cms_checks
import pki_services
import pytest
from daemon import Daemon, b64
from pki_services import DIRECT_ENV, FormatsBed
from test_verify_more import _call

from agent.config import FormatsConfig
from agent.errors import Unsupported
from agent.protocol.params_verify import SignatureVerifyResult
from agent.verify.service import verify_signature

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon, pytest.mark.verifiers]

formats_bed = pki_services.formats_bed
formats_daemon = pki_services.formats_daemon

NAME = "qaimə №130.txt"
DATA = "Məbləğ: 310.00 AZN\nTarix: 2026-11-30\n".encode()
MIMETYPE = b"application/vnd.etsi.asic-s+zip"


@pytest.fixture(autouse=True)
def _direct(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in DIRECT_ENV.items():
        monkeypatch.setenv(name, value)


def asic_s(entries: list[tuple[str, bytes]], mimetype: bytes = MIMETYPE) -> bytes:
    """An ASiC-S container: the stored mimetype first, then the entries (deflated)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), mimetype, zipfile.ZIP_STORED)
        for name, data in entries:
            archive.writestr(zipfile.ZipInfo(name), data, zipfile.ZIP_DEFLATED)
    return out.getvalue()


@pytest.fixture(scope="module")
def signed(formats_daemon: Daemon, formats_bed: FormatsBed) -> dict[str, bytes]:
    tsa = formats_bed.services.url("/tsa")

    async def sign_all() -> dict[str, bytes]:
        p7s = await _call(formats_daemon, formats_bed, "ec", "sign.cms", {
            "data": b64(DATA), "hashAlgorithm": "SHA-256", "level": "T", "tsaUrl": tsa},
            "cms")
        asic_e = await _call(formats_daemon, formats_bed, "rsa", "sign.asic", {
            "files": [{"name": NAME, "data": b64(DATA), "mimeType": "text/plain"}],
            "signatureFormat": "xades", "level": "B-T", "tsaUrl": tsa}, "container")
        return {"p7s": p7s, "asic_e": asic_e}

    return asyncio.run(sign_all())


def _xades_entry(asic_e: bytes) -> tuple[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(asic_e)) as archive:
        [name] = [n for n in archive.namelist()
                  if n.startswith("META-INF/") and "signatures" in n and n.endswith(".xml")]
        return name, archive.read(name)


async def _verify(bed: FormatsBed, container: bytes) -> SignatureVerifyResult:
    config = FormatsConfig(trust_anchors=bed.anchors,
                           network_timeout=pki_services.NETWORK_TIMEOUT,
                           page_tsa_private_addresses=True)
    return await verify_signature(config, container, None, None)


def _verdicts(result: SignatureVerifyResult) -> list[tuple[str, str | None, str | None]]:
    return [(s.indication.value, s.sub_indication, s.field_name) for s in result.signatures]


async def test_cades_asic_s_passes_and_a_changed_file_fails(
        signed: dict[str, bytes], formats_bed: FormatsBed, tmp_path: Path) -> None:
    cms_checks.openssl_verify(formats_bed, signed["p7s"], DATA, tmp_path)
    good = asic_s([(NAME, DATA), ("META-INF/signature.p7s", signed["p7s"])])
    result = await _verify(formats_bed, good)
    assert result.format.value == "asic"
    assert _verdicts(result) == [("TOTAL-PASSED", None, "META-INF/signature.p7s")], \
        [s.message for s in result.signatures]
    assert result.signatures[0].level == "CAdES-B-T"
    changed = asic_s([(NAME, DATA + b" "), ("META-INF/signature.p7s", signed["p7s"])])
    assert _verdicts(await _verify(formats_bed, changed)) == [
        ("TOTAL-FAILED", "HASH_FAILURE", "META-INF/signature.p7s")]


async def test_xades_asic_s_passes_and_a_changed_file_fails(
        signed: dict[str, bytes], formats_bed: FormatsBed) -> None:
    name, xml = _xades_entry(signed["asic_e"])
    good = asic_s([(NAME, DATA), ("META-INF/signatures.xml", xml)])
    result = await _verify(formats_bed, good)
    assert _verdicts(result) == [("TOTAL-PASSED", None, "META-INF/signatures.xml")], \
        [s.message for s in result.signatures]
    assert result.signatures[0].level == "XAdES-B-T"
    changed = asic_s([(NAME, DATA.replace(b"310", b"910")),
                      ("META-INF/signatures.xml", xml)])
    [report] = (await _verify(formats_bed, changed)).signatures
    assert (report.indication.value, report.sub_indication) == ("TOTAL-FAILED",
                                                                "HASH_FAILURE")
    assert name.startswith("META-INF/")


async def test_asic_s_with_two_files_or_no_signature_is_refused(
        signed: dict[str, bytes], formats_bed: FormatsBed) -> None:
    two = asic_s([(NAME, DATA), ("second.txt", b"x"),
                  ("META-INF/signature.p7s", signed["p7s"])])
    with pytest.raises(Unsupported, match="exactly one file"):
        await _verify(formats_bed, two)
    with pytest.raises(Unsupported, match="no signature"):
        await _verify(formats_bed, asic_s([(NAME, DATA)]))
