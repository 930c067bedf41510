"""``imza-agent extend FILE --level …``: a PDF signed by pyHanko with a key of the
loopback PKI (not by the agent) is extended by the command — the configuration's TSA,
or the one on the command line — in a document worker, and checked offline by pyHanko
and pdfsig; a malformed file, a file over the limit and a wrong option fail with a message
and write nothing."""

from __future__ import annotations

import argparse
import asyncio
from io import BytesIO
from pathlib import Path

import pki_services
import pytest
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from pki_services import DIRECT_ENV, FormatsBed, run_tool, trust_context
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.validation import async_validate_pdf_signature, async_validate_pdf_timestamp
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko_certvalidator.registry import SimpleCertificateStore
from test_formats_pdf import minimal_pdf

from agent.commands import extend_command
from agent.config import Config, FormatsConfig, ServerConfig

pytestmark = [pytest.mark.softhsm, pytest.mark.verifiers]

formats_bed = pki_services.formats_bed


@pytest.fixture(autouse=True)
def _direct(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in DIRECT_ENV.items():  # loopback services, whatever proxy is set
        monkeypatch.setenv(name, value)


def pyhanko_signed_pdf(bed: FormatsBed) -> bytes:
    """A B-B PAdES signature made by pyHanko with the loopback PKI's "rsa" key."""
    identity = bed.identities["rsa"]
    key = asn1_keys.PrivateKeyInfo.load(identity.key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    intermediate = asn1_x509.Certificate.load(
        bed.services.pki.intermediate.cert.public_bytes(serialization.Encoding.DER))
    signer = signers.SimpleSigner(
        signing_cert=asn1_x509.Certificate.load(identity.der), signing_key=key,
        cert_registry=SimpleCertificateStore.from_certs([intermediate]))
    out = BytesIO()
    signers.sign_pdf(IncrementalPdfFileWriter(BytesIO(minimal_pdf())),
                     signers.PdfSignatureMetadata(field_name="Imza",
                                                  subfilter=fields.SigSeedSubFilter.PADES),
                     signer=signer, output=out)
    return out.getvalue()


def config_for(bed: FormatsBed, **server: int) -> Config:
    return Config(formats=FormatsConfig(trust_anchors=list(bed.anchors),
                                        tsa_url=bed.services.url("/tsa"),
                                        network_timeout=pki_services.NETWORK_TIMEOUT),
                  server=ServerConfig(**server))


def run(config: Config, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="imza-agent extend")
    extend_command.add_arguments(parser)
    return extend_command.run(parser.parse_args(list(argv)), config)


def test_extend_to_lt_with_the_configured_tsa(formats_bed: FormatsBed, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    signed = pyhanko_signed_pdf(formats_bed)
    source = tmp_path / "müqavilə.pdf"
    source.write_bytes(signed)
    asked = len(formats_bed.services.requests)
    assert run(config_for(formats_bed), str(source), "--level", "lt") == 0
    out = tmp_path / "müqavilə.B-LT.pdf"  # the level as PAdES names it, next to the file
    assert str(out.name) in capsys.readouterr().out
    extended = out.read_bytes()
    assert extended.startswith(signed) and source.read_bytes() == signed
    assert "POST /tsa" in formats_bed.services.requests[asked:]
    asyncio.run(validate_offline(formats_bed, extended))
    done = run_tool(["pdfsig", "-nocert", str(out)])
    assert done.returncode == 0 and "Signature is Valid." in done.stdout, done.stdout


async def validate_offline(bed: FormatsBed, pdf: bytes) -> None:
    """pyHanko with fetching off and hard-fail: only what the document carries."""
    reader = PdfFileReader(BytesIO(pdf))
    dss = DocumentSecurityStore.read_dss(reader)
    offline = trust_context(bed, allow_fetching=False, revocation_mode="hard-fail",
                            ocsps=[o.get_object().data for o in dss.ocsps],
                            crls=[c.get_object().data for c in dss.crls])
    signature, stamp = reader.embedded_signatures
    status = await async_validate_pdf_signature(signature, offline)
    assert status.intact and status.valid and status.trusted
    assert (await async_validate_pdf_timestamp(stamp, offline)).trusted


def test_the_command_lines_tsa_and_out(formats_bed: FormatsBed, tmp_path: Path) -> None:
    source = tmp_path / "signed.pdf"
    source.write_bytes(pyhanko_signed_pdf(formats_bed))
    target = tmp_path / "archive" / "kept.pdf"
    target.parent.mkdir()
    asked = len(formats_bed.services.requests)
    assert run(config_for(formats_bed), str(source), "--level", "B-LTA", "--format", "pdf",
               "--tsa-url", formats_bed.services.url("/tsa-alt"), "--out", str(target)) == 0
    requests = formats_bed.services.requests[asked:]
    assert "POST /tsa-alt" in requests and "POST /tsa" not in requests
    stamps = [s for s in PdfFileReader(BytesIO(target.read_bytes())).embedded_signatures
              if s.sig_object["/Type"] == "/DocTimeStamp"]
    assert len(stamps) == 2  # B-T's stand-in for the signature time-stamp, then B-LTA's


@pytest.mark.parametrize(("content", "words"), [
    (b"%PDF-1.7\n not really \x00\xff" * 10, "UNSUPPORTED"),
    (minimal_pdf(), "no signature"),
    (b"\x30\x03\x02\x01\x01", "UNSUPPORTED"),
])
def test_a_file_that_cannot_be_extended_fails_and_writes_nothing(
        formats_bed: FormatsBed, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        content: bytes, words: str) -> None:
    source = tmp_path / "bad.pdf"
    source.write_bytes(content)
    assert run(config_for(formats_bed), str(source), "--level", "T") == 1
    assert words in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pdf"]


def test_limits_and_usage(formats_bed: FormatsBed, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "big.pdf"
    source.write_bytes(pyhanko_signed_pdf(formats_bed))
    limit = 1024
    assert source.stat().st_size > limit
    assert run(config_for(formats_bed, max_document_bytes=limit), str(source),
               "--level", "B-T") == 1
    assert "1024" in capsys.readouterr().err
    assert run(config_for(formats_bed), str(source), "--level", "LT",
               "--data", str(source)) == 2
    assert "--data" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.pdf"]


@pytest.mark.parametrize(("head", "fmt"), [
    (b"%PDF-1.7\n", "pdf"), (b"\r\n%PDF-1.4", "pdf"), (b"\xef\xbb\xbf <?xml?><a/>", "xml"),
    (b"<Invoice/>", "xml"), (b"\x30\x82\x01\x00", "cms")])
def test_the_format_is_told_from_the_first_bytes(head: bytes, fmt: str) -> None:
    assert extend_command.detect_format(head) == fmt
    assert extend_command.level_for(fmt, "B-LTA") == ("LTA" if fmt == "cms" else "B-LTA")
