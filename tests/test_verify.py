"""Verification (``signature.verify`` and its document worker): real CAdES, PAdES and
XAdES signatures made by a running agent with SoftHSM keys against the loopback
TSA/OCSP/CRL, then verified — good, tampered, revoked, expired but time-stamped, and
under an unknown root — each verdict checked against an independent reading (openssl
cms, pdfsig, xmlsec1)."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pki_services
import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from daemon import Daemon, b64, unb64
from pki_services import (
    DIRECT_ENV,
    ORIGIN,
    FormatsBed,
    Issued,
    build_formats_token,
    run_tool,
    select_handle,
    start_formats_daemon,
)
from test_formats_pdf import minimal_pdf

from agent.config import FormatsConfig
from agent.errors import Unsupported
from agent.formats.isolation import document_workers
from agent.protocol.params_verify import SignatureVerifyResult
from agent.verify.service import verify_signature

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon, pytest.mark.verifiers]

formats_bed = pki_services.formats_bed

DATA = "Ödəniş tapşırığı № 118: 2 500,00 AZN".encode()
XML = ('<?xml version="1.0" encoding="UTF-8"?>\n'
       '<Qaimə nömrə="118"><Məbləğ valyuta="AZN">2500.00</Məbləğ></Qaimə>').encode()
DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
EXPIRING_SECONDS = 25  # the short-lived signer's life: signed early, verified after


def _short_lived(services: pki_services.PkiServices, name: str) -> Issued:
    """Like ``PkiServices.issue`` but valid only from a minute ago to EXPIRING_SECONDS from
    now, with the bed's OCSP/CRL addresses, so it can sign now and be expired later."""
    base = services.issue(name)
    start = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(base.cert.subject)
               .issuer_name(base.cert.issuer).public_key(base.key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(start - dt.timedelta(minutes=1))
               .not_valid_after(start + dt.timedelta(seconds=EXPIRING_SECONDS)))
    for ext in base.cert.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    cert = builder.sign(services.pki.intermediate.key, hashes.SHA256())
    return Issued(name, cert, base.key, base.serial_number)


@dataclass
class Signed:
    """What the agent signed for this module; a signature it could not make is the error
    text instead, so only the tests that need it fail (and say why)."""

    made: dict[str, bytes | str]
    expires: dt.datetime

    def __getitem__(self, name: str) -> bytes:
        value = self.made[name]
        if isinstance(value, str):
            pytest.fail(f"the agent did not sign {name}: {value}", pytrace=False)
        return value


async def _sign_all(daemon: Daemon, bed: FormatsBed, only: set[str] | None) -> Signed:
    tsa = bed.services.url("/tsa")
    made: dict[str, bytes | str] = {}
    async with daemon.client(ORIGIN) as client:
        async def sign(name: str, identity: str, method: str, params: dict[str, Any],
                       member: str) -> None:
            if only is not None and name not in only:
                made[name] = "not made for this module"
                return
            try:
                handle = await select_handle(client, bed.serial(identity))
                result = await client.call(method, {"handle": handle, "tsaUrl": tsa,
                                                    **params}, timeout=60)
                made[name] = unb64(result[member])
            except Exception as exc:  # reported by the tests that need this signature
                made[name] = f"{type(exc).__name__}: {exc}"

        cms_params = {"data": b64(DATA), "hashAlgorithm": "SHA-256"}
        # First: its certificate's life is short.
        await sign("cms_expired_lt", "v_expiring", "sign.cms", {**cms_params, "level": "LT"},
                   "cms")
        await sign("pdf_expired_lt", "v_expiring", "sign.pdf",
                   {"pdf": b64(minimal_pdf("Muqavile 120")), "level": "B-LT"}, "pdf")
        await sign("xml_expired_bt", "v_expiring", "sign.xml",
                   {"xml": b64(XML), "level": "B-T", "mode": "enveloped"}, "xml")
        await sign("cms_bt", "v_good", "sign.cms", {**cms_params, "level": "T"}, "cms")
        await sign("cms_revoked", "v_revoke", "sign.cms", {**cms_params, "level": "T"}, "cms")
        await sign("pdf_bt", "v_good", "sign.pdf",
                   {"pdf": b64(minimal_pdf("Muqavile 118")), "level": "B-T"}, "pdf")
        await sign("xml_bt", "v_good", "sign.xml",
                   {"xml": b64(XML), "level": "B-T", "mode": "enveloped"}, "xml")
        await sign("cms_bb", "v_good", "sign.cms", {**cms_params, "level": "B"}, "cms")
        await sign("pdf_blta", "v_good", "sign.pdf",
                   {"pdf": b64(minimal_pdf("Muqavile 122")), "level": "B-LTA"}, "pdf")
        await sign("cms_blta", "v_good", "sign.cms", {**cms_params, "level": "LTA"}, "cms")
        await sign("xml_blt", "v_good", "sign.xml",
                   {"xml": b64(XML), "level": "B-LT", "mode": "enveloped"}, "xml")
        await sign("pdf_revoked", "v_revoke", "sign.pdf",
                   {"pdf": b64(minimal_pdf("Muqavile 121")), "level": "B-T"}, "pdf")
        await sign("xml_revoked", "v_revoke", "sign.xml",
                   {"xml": b64(XML), "level": "B-T", "mode": "enveloped"}, "xml")
    return Signed(made, bed.identities["v_expiring"].cert.not_valid_after_utc)


def signing_agent(formats_bed: FormatsBed, only: set[str] | None = None
                  ) -> Iterator[tuple[FormatsBed, Signed, Daemon]]:
    """Identities of this module's own (a signer revoked after signing, one that expires
    soon) on a token of its own, on the shared loopback services; the signatures made."""
    services = formats_bed.services
    identities = {"v_good": services.issue("v_good"),
                  "v_revoke": services.issue("v_revoke"),
                  "v_expiring": _short_lived(services, "v_expiring")}
    directory = Path(tempfile.mkdtemp(prefix="imza-verify-"))
    token = build_formats_token(directory / "softhsm", list(identities.values()),
                                label="Yoxlama")
    bed = FormatsBed(services, identities, token, formats_bed.anchors, directory)
    daemon = start_formats_daemon(bed, directory / "home")
    try:
        signed = asyncio.run(_sign_all(daemon, bed, only))
        # Revoked after it signed: the CRL and OCSP say so from now on (an hour back).
        services.revoked.add(identities["v_revoke"].cert.serial_number)
        yield bed, signed, daemon
    finally:
        code = daemon.stop()
        shutil.rmtree(directory, ignore_errors=True)
    assert code == 0, "the daemon did not stop cleanly"


@pytest.fixture(scope="module")
def verify_agent(formats_bed: FormatsBed) -> Iterator[tuple[FormatsBed, Signed, Daemon]]:
    yield from signing_agent(formats_bed)


@pytest.fixture(scope="module")
def verify_bed(verify_agent: tuple[FormatsBed, Signed, Daemon]) -> tuple[FormatsBed, Signed]:
    return verify_agent[0], verify_agent[1]


def _config(bed: FormatsBed, anchors: list[Path] | None = None, *,
            private: bool = True) -> FormatsConfig:
    """``private``: the development setting that lets the addresses a document names be
    on loopback (the bed's OCSP/CRL); off, they are refused as a page's TSA would be."""
    return FormatsConfig(trust_anchors=anchors if anchors is not None else bed.anchors,
                         network_timeout=pki_services.NETWORK_TIMEOUT,
                         page_tsa_private_addresses=private)


@pytest.fixture(autouse=True)
def _direct(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in DIRECT_ENV.items():
        monkeypatch.setenv(name, value)


async def _verify(bed: FormatsBed, signature: bytes, data: bytes | None = None,
                  anchors: list[Path] | None = None, *,
                  private: bool = True) -> SignatureVerifyResult:
    return await verify_signature(_config(bed, anchors, private=private), signature, data,
                                  None)


def _only(result: SignatureVerifyResult) -> Any:
    assert len(result.signatures) == 1
    return result.signatures[0]


def _openssl_cms(bed: FormatsBed, der: bytes, data: bytes, tmp: Path, *extra: str) -> Any:
    (tmp / "sig.der").write_bytes(der)
    (tmp / "data.bin").write_bytes(data)
    return run_tool(["openssl", "cms", "-verify", "-binary", "-inform", "DER",
                     "-in", str(tmp / "sig.der"), "-content", str(tmp / "data.bin"),
                     "-CAfile", str(bed.anchors[0]), "-certfile", str(bed.anchors[1]),
                     "-purpose", "any", "-out", str(tmp / "out.bin"), *extra])


def _tampered_signature_value(der: bytes) -> bytes:
    content = cms.ContentInfo.load(der)
    info = content["content"]["signer_infos"][0]
    value = bytearray(info["signature"].native)
    value[len(value) // 2] ^= 0x01
    info["signature"] = bytes(value)
    return content.dump(force=True)


# --- CAdES -----------------------------------------------------------------------------------

async def test_cms_good_passes_as_openssl_says(verify_bed: tuple[FormatsBed, Signed],
                                               tmp_path: Path) -> None:
    bed, signed = verify_bed
    report = _only(await _verify(bed, signed["cms_bt"], DATA))
    assert (report.indication.value, report.sub_indication) == ("TOTAL-PASSED", None), \
        report.message
    assert report.level == "CAdES-B-T"
    assert report.signer.common_name == "Formatlar v_good"
    assert report.signer.serial == format(bed.identities["v_good"].cert.serial_number, "X")
    assert report.timestamp_time is not None and report.claimed_signing_time is not None
    assert report.chain[0].subject == report.signer.subject
    assert report.revocation.status == "good"
    assert _openssl_cms(bed, signed["cms_bt"], DATA, tmp_path).returncode == 0


async def test_cms_changed_content_is_hash_failure(verify_bed: tuple[FormatsBed, Signed],
                                                   tmp_path: Path) -> None:
    bed, signed = verify_bed
    changed = DATA.replace(b"2 500", b"9 500")
    report = _only(await _verify(bed, signed["cms_bt"], changed))
    assert (report.indication.value, report.sub_indication) == ("TOTAL-FAILED",
                                                                "HASH_FAILURE"), \
        report.message
    done = _openssl_cms(bed, signed["cms_bt"], changed, tmp_path)
    assert done.returncode != 0 and "content verify error" in done.stderr


async def test_cms_changed_signature_value_is_crypto_failure(
        verify_bed: tuple[FormatsBed, Signed], tmp_path: Path) -> None:
    bed, signed = verify_bed
    broken = _tampered_signature_value(signed["cms_bt"])
    report = _only(await _verify(bed, broken, DATA))
    assert (report.indication.value, report.sub_indication) == ("TOTAL-FAILED",
                                                                "SIG_CRYPTO_FAILURE"), \
        report.message
    done = _openssl_cms(bed, broken, DATA, tmp_path)
    assert done.returncode != 0 and "CMS_SignerInfo_verify:verification failure" in done.stderr


async def test_cms_unknown_root_is_no_chain(verify_bed: tuple[FormatsBed, Signed],
                                            tmp_path: Path) -> None:
    bed, signed = verify_bed
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Başqa kök")])
    now = dt.datetime.now(dt.UTC)
    other = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
             .public_key(key.public_key()).serial_number(1)
             .not_valid_before(now - dt.timedelta(days=1))
             .not_valid_after(now + dt.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
             .sign(key, hashes.SHA256()))
    anchor = tmp_path / "other-root.pem"
    anchor.write_bytes(other.public_bytes(serialization.Encoding.PEM))
    report = _only(await _verify(bed, signed["cms_bt"], DATA, anchors=[anchor]))
    assert (report.indication.value, report.sub_indication) == (
        "INDETERMINATE", "NO_CERTIFICATE_CHAIN_FOUND"), \
        report.message
    assert report.revocation.status == "unknown"  # no path, so no status was had
    (tmp_path / "sig.der").write_bytes(signed["cms_bt"])
    (tmp_path / "data.bin").write_bytes(DATA)
    done = run_tool(["openssl", "cms", "-verify", "-binary", "-inform", "DER",
                     "-in", str(tmp_path / "sig.der"), "-content", str(tmp_path / "data.bin"),
                     "-CAfile", str(anchor), "-purpose", "any", "-out", "/dev/null"])
    assert done.returncode != 0 and "certificate verify error" in done.stderr


async def test_cms_revoked_signer_fails(verify_bed: tuple[FormatsBed, Signed],
                                        tmp_path: Path) -> None:
    bed, signed = verify_bed
    report = _only(await _verify(bed, signed["cms_revoked"], DATA))
    assert (report.indication.value, report.sub_indication) == ("TOTAL-FAILED", "REVOKED"), \
        report.message
    assert report.revocation.status == "revoked"
    assert report.revocation.revocation_time is not None
    # openssl: the signature itself is sound; the signer's certificate, checked against
    # the CA's CRL, is revoked.
    assert _openssl_cms(bed, signed["cms_revoked"], DATA, tmp_path).returncode == 0
    crl = tmp_path / "ca.crl"
    crl.write_bytes(bed.services.crl())
    signer = tmp_path / "signer.pem"
    signer.write_bytes(bed.identities["v_revoke"].cert.public_bytes(
        serialization.Encoding.PEM))
    assert run_tool(["openssl", "crl", "-inform", "DER", "-in", str(crl),
                     "-out", str(tmp_path / "ca-crl.pem")]).returncode == 0
    done = run_tool(["openssl", "verify", "-crl_check", "-CAfile", str(bed.anchors[0]),
                     "-untrusted", str(bed.anchors[1]), "-CRLfile",
                     str(tmp_path / "ca-crl.pem"), str(signer)])
    assert done.returncode != 0 and "certificate revoked" in done.stdout + done.stderr


async def test_cms_expired_but_time_stamped_passes_at_its_time_stamp(
        verify_bed: tuple[FormatsBed, Signed], tmp_path: Path) -> None:
    bed, signed = verify_bed
    pki_services.wait_until_expired(signed.expires)  # the signer's certificate
    report = _only(await _verify(bed, signed["cms_expired_lt"], DATA))
    assert (report.indication.value, report.sub_indication) == ("TOTAL-PASSED", None), \
        report.message
    assert report.level == "CAdES-B-LT"
    stamped = dt.datetime.fromisoformat(report.timestamp_time.replace("Z", "+00:00"))
    assert stamped < signed.expires
    assert report.revocation.embedded_ocsp_responses or report.revocation.embedded_crls
    # openssl judges now: expired; at the time-stamp's time: fine.
    done = _openssl_cms(bed, signed["cms_expired_lt"], DATA, tmp_path)
    assert done.returncode != 0 and "expired" in done.stderr
    assert _openssl_cms(bed, signed["cms_expired_lt"], DATA, tmp_path, "-attime",
                        str(int(stamped.timestamp()))).returncode == 0


@pytest.mark.parametrize(("name", "level"), [("pdf_revoked", "PAdES-B-T"),
                                             ("xml_revoked", "XAdES-B-T")])
async def test_pdf_and_xml_revoked_signer_fails(verify_bed: tuple[FormatsBed, Signed],
                                                name: str, level: str) -> None:
    bed, signed = verify_bed
    report = _only(await _verify(bed, signed[name]))
    assert (report.indication.value, report.sub_indication) == (
        "TOTAL-FAILED", "REVOKED"), \
        report.message
    assert report.level == level and report.revocation.status == "revoked"
    assert report.signer.serial == format(bed.identities["v_revoke"].cert.serial_number, "X")


@pytest.mark.parametrize(("name", "level"), [("pdf_expired_lt", "PAdES-B-LT"),
                                             ("xml_expired_bt", "XAdES-B-T")])
async def test_pdf_and_xml_expired_but_time_stamped_pass(
        verify_bed: tuple[FormatsBed, Signed], name: str, level: str) -> None:
    bed, signed = verify_bed
    pki_services.wait_until_expired(signed.expires)  # the signer's certificate
    report = _only(await _verify(bed, signed[name]))
    assert (report.indication.value, report.sub_indication) == ("TOTAL-PASSED", None), \
        report.message
    assert report.level == level
    stamped = dt.datetime.fromisoformat(report.timestamp_time.replace("Z", "+00:00"))
    assert stamped < signed.expires < dt.datetime.now(dt.UTC)


async def test_addresses_a_document_names_are_guarded(
        verify_bed: tuple[FormatsBed, Signed]) -> None:
    """The OCSP/CRL addresses in the signer's certificate are the document's choice: on
    loopback, without the development setting, they are not asked, and the status is
    then unknown — not passed."""
    bed, signed = verify_bed
    mark = len(bed.services.requests)
    report = _only(await _verify(bed, signed["cms_bt"], DATA, private=False))
    assert report.indication.value == "INDETERMINATE", report.message
    assert report.sub_indication in ("TRY_LATER", "CERTIFICATE_CHAIN_GENERAL_FAILURE")
    assert report.revocation.status == "unknown"
    assert not [r for r in bed.services.requests[mark:] if "/ocsp" in r or "/crl" in r]


# --- PAdES -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nss_db(formats_bed: FormatsBed, tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("nss-verify")
    for argv in (["certutil", "-N", "-d", f"sql:{db}", "--empty-password"],
                 ["certutil", "-A", "-d", f"sql:{db}", "-n", "root", "-t", "CT,C,C",
                  "-i", str(formats_bed.anchors[0])],
                 ["certutil", "-A", "-d", f"sql:{db}", "-n", "inter", "-t", ",,",
                  "-i", str(formats_bed.anchors[1])]):
        assert run_tool(argv).returncode == 0
    return db


def _pdfsig(pdf: bytes, tmp: Path, nss: Path) -> str:
    path = tmp / "signed.pdf"
    path.write_bytes(pdf)
    done = run_tool(["pdfsig", "-nssdir", f"sql:{nss}", str(path)])
    return done.stdout + done.stderr


async def test_pdf_good_passes_and_changed_fails_as_pdfsig_says(
        verify_bed: tuple[FormatsBed, Signed], tmp_path: Path, nss_db: Path) -> None:
    bed, signed = verify_bed
    report = _only(await _verify(bed, signed["pdf_bt"]))
    assert (report.indication.value, report.sub_indication) == ("TOTAL-PASSED", None), \
        report.message
    assert report.level == "PAdES-B-T" and report.field_name
    assert report.timestamp_time is not None
    assert "Signature is Valid" in _pdfsig(signed["pdf_bt"], tmp_path, nss_db)
    # The page's text, inside the signed byte range, changed.
    changed = signed["pdf_bt"].replace(b"Muqavile 118", b"Muqavile 119", 1)
    assert changed != signed["pdf_bt"]
    report = _only(await _verify(bed, changed))
    assert (report.indication.value, report.sub_indication) == ("TOTAL-FAILED",
                                                                "HASH_FAILURE"), \
        report.message
    assert "Digest Mismatch" in _pdfsig(changed, tmp_path, nss_db)


async def test_other_levels_are_told_and_pass(verify_bed: tuple[FormatsBed, Signed],
                                              tmp_path: Path, nss_db: Path) -> None:
    bed, signed = verify_bed
    report = _only(await _verify(bed, signed["cms_bb"], DATA))
    assert (report.level, report.indication.value) == ("CAdES-B-B", "TOTAL-PASSED"), \
        report.message
    assert report.timestamp_time is None and report.claimed_signing_time is not None
    assert _openssl_cms(bed, signed["cms_bb"], DATA, tmp_path).returncode == 0
    report = _only(await _verify(bed, signed["pdf_blta"]))
    assert (report.level, report.indication.value) == ("PAdES-B-LTA", "TOTAL-PASSED"), \
        report.message
    assert report.revocation.embedded_ocsp_responses or report.revocation.embedded_crls
    assert "Signature is Valid" in _pdfsig(signed["pdf_blta"], tmp_path, nss_db)


async def test_cades_b_lta_and_xades_b_lt_are_told_and_pass(
        verify_bed: tuple[FormatsBed, Signed], tmp_path: Path) -> None:
    bed, signed = verify_bed
    report = _only(await _verify(bed, signed["cms_blta"], DATA))
    assert (report.level, report.indication.value) == ("CAdES-B-LTA", "TOTAL-PASSED"), \
        report.message
    assert _openssl_cms(bed, signed["cms_blta"], DATA, tmp_path).returncode == 0
    report = _only(await _verify(bed, signed["xml_blt"]))
    assert (report.level, report.indication.value) == ("XAdES-B-LT", "TOTAL-PASSED"), \
        report.message
    # The status came from what the signature carries.
    assert report.revocation.embedded_ocsp_responses or report.revocation.embedded_crls
    assert _xmlsec(bed, signed["xml_blt"], tmp_path).returncode == 0


# --- XAdES -----------------------------------------------------------------------------------

def _xmlsec(bed: FormatsBed, xml: bytes, tmp: Path) -> Any:
    path = tmp / "signed.xml"
    path.write_bytes(xml)
    return run_tool(["xmlsec1", "--verify", "--trusted-pem", str(bed.anchors[0]),
                     "--untrusted-pem", str(bed.anchors[1]),
                     "--id-attr:Id", f"{XADES}:SignedProperties",
                     "--id-attr:Id", f"{DS}:KeyInfo", str(path)], cwd=tmp)


async def test_xml_good_passes_and_changed_fails_as_xmlsec1_says(
        verify_bed: tuple[FormatsBed, Signed], tmp_path: Path) -> None:
    bed, signed = verify_bed
    report = _only(await _verify(bed, signed["xml_bt"]))
    assert (report.indication.value, report.sub_indication) == ("TOTAL-PASSED", None), \
        report.message
    assert report.level == "XAdES-B-T" and report.timestamp_time is not None
    assert report.signer.common_name == "Formatlar v_good"
    assert _xmlsec(bed, signed["xml_bt"], tmp_path).returncode == 0
    changed = signed["xml_bt"].replace(b"2500.00", b"9500.00")
    assert changed != signed["xml_bt"]
    report = _only(await _verify(bed, changed))
    assert (report.indication.value, report.sub_indication) == ("TOTAL-FAILED",
                                                                "HASH_FAILURE"), \
        report.message
    assert _xmlsec(bed, changed, tmp_path).returncode != 0


# --- the worker ------------------------------------------------------------------------------

async def test_unreadable_file_is_unsupported_and_the_next_one_is_verified(
        verify_bed: tuple[FormatsBed, Signed]) -> None:
    bed, signed = verify_bed
    started = document_workers().started
    with pytest.raises(Unsupported):
        await _verify(bed, b"\x30\x82\xff\xff not a CMS at all", DATA)
    assert document_workers().started > started  # read in a document worker, not here
    with pytest.raises(Unsupported):
        await _verify(bed, signed["cms_bt"])  # detached, without its data
    assert _only(await _verify(bed, signed["cms_bt"], DATA)).indication.value == "TOTAL-PASSED"


# --- the protocol method ---------------------------------------------------------------------

async def test_signature_verify_for_a_granted_site(
        verify_agent: tuple[FormatsBed, Signed, Daemon]) -> None:
    bed, signed, daemon = verify_agent
    async with daemon.client(ORIGIN) as client:
        await select_handle(client, bed.serial("v_good"))  # the site holds its grant
        result = await client.call("signature.verify", {
            "signature": b64(signed["cms_bt"]), "data": b64(DATA)}, timeout=60)
        changed = await client.call("signature.verify", {
            "signature": b64(signed["pdf_bt"].replace(b"Muqavile 118", b"Muqavile 119", 1)),
            "format": "pdf"}, timeout=60)
    assert result["format"] == "cms"
    [one] = result["signatures"]
    assert (one["indication"], one["level"]) == ("TOTAL-PASSED", "CAdES-B-T")
    assert one["signer"]["commonName"] == "Formatlar v_good"
    assert unb64(one["signer"]["certificate"]) == bed.identities["v_good"].der
    [pdf] = changed["signatures"]
    assert (pdf["indication"], pdf["subIndication"]) == ("TOTAL-FAILED", "HASH_FAILURE")


async def test_signature_verify_refuses_an_ungranted_site_before_reading(
        verify_agent: tuple[FormatsBed, Signed, Daemon]) -> None:
    _, signed, daemon = verify_agent
    mark = daemon.transcript_mark()
    async with daemon.client("https://stranger.example") as client:
        # Garbage would be UNSUPPORTED if it were read: the refusal comes first.
        garbage = await client.error("signature.verify", {"signature": b64(b"junk " * 10)})
        good = await client.error("signature.verify", {"signature": b64(signed["pdf_bt"])})
    assert (garbage.reason, good.reason) == ("PERMISSION_DENIED", "PERMISSION_DENIED")
    assert daemon.transcript(mark) == []  # and no dialog asked anything
