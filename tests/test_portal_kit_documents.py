"""The portal kit's server-side signing (portal-kit/python/imza_portal/documents): the
portal prepares, a real agent (SoftHSM token, the test PKI) signs only the hash over its
WebSocket (`sign.hash`), the portal finishes. Each result is checked by validators we did
not write: poppler's pdfsig (NSS trusting only the test root) and pyHanko's validator for
PAdES, `openssl cms -verify` for CAdES; B-LT (PAdES and CAdES) is validated with its
loopback OCSP/CRL/TSA services shut down, from what the file carries. Tampered results
fail."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import subprocess
from io import BytesIO
from pathlib import Path
from typing import Any

import pki_services
import pytest
from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from daemon import Daemon, b64
from pki_services import (
    ORIGIN,
    FormatsBed,
    build_formats_token,
    run_tool,
    start_formats_daemon,
    start_services,
    trust_context,
)
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_detached_cms, async_validate_pdf_signature
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko_certvalidator import ValidationContext
from testbed.pki import TestPKI

from agent.demo_portal.server import sample_pdf
from imza_portal.documents import (
    CertificateMismatch,
    DocumentSigner,
    InvalidPendingState,
    PendingSignature,
    SignatureMismatch,
    TimestampError,
    UnsupportedAlgorithm,
    UnsupportedLevel,
    ValidationDataError,
    async_verify_pdf,
)

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon, pytest.mark.verifiers]

formats_bed = pki_services.formats_bed
formats_daemon = pki_services.formats_daemon


def _anchors(bed: FormatsBed) -> tuple[x509.Certificate, x509.Certificate]:
    root, inter = (x509.load_pem_x509_certificate(p.read_bytes()) for p in bed.anchors)
    return root, inter


def _kit(bed: FormatsBed, tsa: bool = False) -> DocumentSigner:
    root, inter = _anchors(bed)
    return DocumentSigner(trust_roots=[root], intermediates=[inter],
                          tsa_url=bed.services.url("/tsa") if tsa else None)


async def _sign_on_server(daemon: Daemon, bed: FormatsBed, identity: str, prepare: Any,
                          *, tamper_hash: bool = False, other: str | None = None
                          ) -> tuple[PendingSignature, dict[str, Any]]:
    """What a portal and its page do: select (page) → prepare (server) → sign.hash (page,
    the agent) → the answer goes back to the server. ``other``: a second identity whose
    handle signs instead (the user picked another key in between)."""
    async with daemon.client(ORIGIN) as page:
        chosen = await page.call("certificates.select", {
            "purpose": "sign", "filter": {"subjectSerialNumber": bed.serial(identity)}})
        # the portal's server gets the selection as the page posts it (JSON, base64)
        pending = PendingSignature.from_bytes((await prepare(chosen)).to_bytes())
        handle = chosen["handle"]
        if other is not None:
            handle = (await page.call("certificates.select", {
                "purpose": "sign", "filter": {"subjectSerialNumber": bed.serial(other)}}
            ))["handle"]
        params = pending.sign_hash_params(handle, {"documentName": "muqavile.pdf"})
        if tamper_hash:
            params["hash"] = b64(hashlib.sha256(b"another document").digest())
        answer = await page.call("sign.hash", params, timeout=60)
    return pending, answer


@pytest.fixture(scope="module")
def nss_db(formats_bed: FormatsBed, tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("nss-kit")
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True,
                   capture_output=True)
    for name, trust, path in (("root", "CT,C,C", formats_bed.anchors[0]),
                              ("intermediate", ",,", formats_bed.anchors[1])):
        subprocess.run(["certutil", "-A", "-d", f"sql:{db}", "-n", name, "-t", trust, "-i",
                        str(path)], check=True, capture_output=True)
    return db


def _pdfsig(pdf: bytes, tmp: Path, nss: Path) -> str:
    path = tmp / "signed.pdf"
    path.write_bytes(pdf)
    done = run_tool(["pdfsig", "-nssdir", f"sql:{nss}", str(path)])
    return done.stdout + done.stderr


def _tampered(pdf: bytes) -> bytes:
    """One byte of the original page content changed: inside the signed byte range."""
    at = pdf.index(b"DEMO)")
    return pdf[:at] + b"X" + pdf[at + 1:]


@pytest.mark.parametrize(("identity", "scheme"), [
    ("rsa", "RSASSA-PKCS1-v1_5"), ("rsa", "RSASSA-PSS"), ("ec", "ECDSA")])
async def test_pades_b_b(formats_daemon: Daemon, formats_bed: FormatsBed, nss_db: Path,
                         tmp_path: Path, identity: str, scheme: str) -> None:
    kit = _kit(formats_bed)
    original = sample_pdf()

    async def prepare(chosen: dict[str, Any]) -> PendingSignature:
        return await kit.async_prepare_pdf(original, chosen, scheme=scheme, reason="Razıyam",
                                           field_name="Imza1")

    pending, answer = await _sign_on_server(formats_daemon, formats_bed, identity, prepare)
    assert answer["scheme"] == scheme and pending.scheme == scheme
    pdf = await kit.async_finish(pending, answer)
    assert pdf.startswith(original)  # an incremental update of the portal's own file
    report = _pdfsig(pdf, tmp_path, nss_db)
    assert "Signature is Valid." in report and "Certificate is Trusted." in report, report
    assert "ETSI.CAdES.detached" in report and "Total document signed" in report, report
    [sig] = PdfFileReader(BytesIO(pdf)).embedded_signatures
    assert sig.field_name == "Imza1" and sig.sig_object["/Reason"] == "Razıyam"
    status = await async_validate_pdf_signature(sig, trust_context(formats_bed))
    assert status.intact and status.valid and status.trusted and status.bottom_line
    assert status.timestamp_validity is None
    # tampered: both validators see it
    bad = _tampered(pdf)
    assert "Signature is Valid." not in _pdfsig(bad, tmp_path, nss_db)
    [bad_sig] = PdfFileReader(BytesIO(bad)).embedded_signatures
    bad_status = await async_validate_pdf_signature(bad_sig, trust_context(formats_bed))
    assert not bad_status.intact
    [report_ok] = await async_verify_pdf(pdf, _anchors(formats_bed)[:1])
    [report_bad] = await async_verify_pdf(bad, _anchors(formats_bed)[:1])
    assert report_ok.ok and report_ok.level == "B-B" and not report_bad.ok


async def test_pades_b_t(formats_daemon: Daemon, formats_bed: FormatsBed, nss_db: Path,
                         tmp_path: Path) -> None:
    kit = _kit(formats_bed, tsa=True)

    async def prepare(chosen: dict[str, Any]) -> PendingSignature:
        return await kit.async_prepare_pdf(sample_pdf(), chosen, level="B-T")

    pending, answer = await _sign_on_server(formats_daemon, formats_bed, "ec", prepare)
    pdf = await kit.async_finish(pending, answer)
    report = _pdfsig(pdf, tmp_path, nss_db)
    assert "Signature is Valid." in report and "Certificate is Trusted." in report, report
    [sig] = PdfFileReader(BytesIO(pdf)).embedded_signatures
    context = trust_context(formats_bed)
    status = await async_validate_pdf_signature(sig, context, ts_validation_context=context)
    assert status.valid and status.trusted
    assert status.timestamp_validity is not None and status.timestamp_validity.trusted
    [mine] = await async_verify_pdf(pdf, _anchors(formats_bed)[:1])
    assert mine.level == "B-T" and mine.timestamp is not None


async def test_a_second_signature_gets_a_field_of_its_own(
        formats_daemon: Daemon, formats_bed: FormatsBed, nss_db: Path, tmp_path: Path) -> None:
    kit = _kit(formats_bed)
    pdf = sample_pdf()
    for identity in ("rsa", "ec"):
        async def prepare(chosen: dict[str, Any], current: bytes = pdf) -> PendingSignature:
            return await kit.async_prepare_pdf(current, chosen)

        pending, answer = await _sign_on_server(formats_daemon, formats_bed, identity, prepare)
        pdf = await kit.async_finish(pending, answer)
    root, inter = _anchors(formats_bed)
    reports = await async_verify_pdf(pdf, [root], [inter])
    assert [(r.field, r.ok) for r in reports] == [("Signature1", True), ("Signature2", True)]
    assert _pdfsig(pdf, tmp_path, nss_db).count("Signature is Valid.") == 2


def _own_bed(pki: TestPKI, directory: Path) -> FormatsBed:
    """Loopback services of this test's own, so it may shut them down."""
    services = start_services(pki)
    identities = {"rsa": services.issue("rsa")}
    token = build_formats_token(directory / "softhsm", list(identities.values()))
    return FormatsBed(services, identities, token, services.write_anchors(directory / "a"),
                      directory)


async def test_pades_b_lt_validates_offline(pki: TestPKI, tmp_path: Path) -> None:
    bed = _own_bed(pki, tmp_path)
    daemon = start_formats_daemon(bed, tmp_path / "agent")
    try:
        kit = _kit(bed, tsa=True)

        async def prepare(chosen: dict[str, Any]) -> PendingSignature:
            return await kit.async_prepare_pdf(sample_pdf(), chosen, level="B-LT")

        pending, answer = await _sign_on_server(daemon, bed, "rsa", prepare)
        fetched = len(bed.services.requests)
        pdf = await kit.async_finish(pending, answer)
        # finishing B-LT fetched the signer's and the TSA's status from the services
        assert any("/ocsp" in r or "/crl" in r for r in bed.services.requests[fetched:])
    finally:
        daemon.stop()
        bed.services.close()  # from here on, nothing is reachable
    reader = PdfFileReader(BytesIO(pdf))
    dss = DocumentSecurityStore.read_dss(reader)
    ocsps = [o.get_object().data for o in dss.ocsps]
    crls = [c.get_object().data for c in dss.crls]
    assert ocsps or crls
    [sig] = reader.embedded_signatures
    root, inter = _anchors(bed)

    def load(cert: x509.Certificate) -> Any:
        return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))

    # hard-fail without the DSS data: the revocation status cannot be had offline...
    bare = ValidationContext(trust_roots=[load(root)], other_certs=[load(inter)],
                             allow_fetching=False, revocation_mode="hard-fail",
                             ocsps=[], crls=[])
    status = await async_validate_pdf_signature(sig, bare, ts_validation_context=bare)
    assert not status.trusted
    # ...with it, it can
    offline = ValidationContext(trust_roots=[load(root)], other_certs=[load(inter)],
                                allow_fetching=False, revocation_mode="hard-fail",
                                ocsps=ocsps, crls=crls)
    status = await async_validate_pdf_signature(sig, offline, ts_validation_context=offline)
    assert status.intact and status.valid and status.trusted and status.bottom_line
    assert status.timestamp_validity is not None and status.timestamp_validity.trusted
    [mine] = await async_verify_pdf(pdf, [root])
    assert mine.level == "B-LT" and mine.revocation_checked and mine.ok
    [tampered] = await async_verify_pdf(_tampered(pdf), [root])
    assert not tampered.intact and not tampered.ok


async def test_cades_b_lt_validates_offline(pki: TestPKI, tmp_path: Path) -> None:
    """Detached CAdES B-LT: the signer's and the TSA's paths and revocation data in the
    SignedData (EN 319 122-1 §5.5), enough for pyHanko's validator with every service shut
    down and no intermediate configured; openssl verifies the signature too."""
    bed = _own_bed(pki, tmp_path)
    daemon = start_formats_daemon(bed, tmp_path / "agent")
    document = "Müqavilə 118: 3 400,00 AZN\n".encode()
    try:
        kit = _kit(bed, tsa=True)

        async def prepare(chosen: dict[str, Any]) -> PendingSignature:
            return await kit.async_prepare_cades(document, chosen, level="B-LT")

        pending, answer = await _sign_on_server(daemon, bed, "rsa", prepare)
        assert pending.level == "B-LT"
        fetched = len(bed.services.requests)
        der = await kit.async_finish(pending, answer)
        assert any("/ocsp" in r or "/crl" in r for r in bed.services.requests[fetched:])
    finally:
        daemon.stop()
        bed.services.close()  # from here on, nothing is reachable
    done = _openssl_cms(der, document, tmp_path, bed)
    assert done.returncode == 0 and "Verification successful" in done.stderr, done.stderr
    signed_data = cms.ContentInfo.load(der)["content"]
    assert signed_data["encap_content_info"]["content"].native is None  # detached
    revocation = list(signed_data["crls"] or [])
    ocsps = [r.chosen["other_rev_info"] for r in revocation if r.name == "other"]
    crls = [r.chosen for r in revocation if r.name == "crl"]
    assert ocsps or crls
    if ocsps:
        assert signed_data["version"].native == "v5"
    root, inter = _anchors(bed)
    carried = {c.chosen.dump() for c in signed_data["certificates"]}
    assert inter.public_bytes(Encoding.DER) in carried
    trust = [asn1_x509.Certificate.load(root.public_bytes(Encoding.DER))]
    # hard-fail without the embedded revocation data: not trusted offline...
    bare = ValidationContext(trust_roots=trust, allow_fetching=False,
                             revocation_mode="hard-fail", ocsps=[], crls=[])
    status = await async_validate_detached_cms(document, signed_data,
                                               signer_validation_context=bare,
                                               ts_validation_context=bare)
    assert status.intact and status.valid and not status.trusted
    # ...with it, trusted, and so is the time-stamp
    offline = ValidationContext(trust_roots=trust, allow_fetching=False,
                                revocation_mode="hard-fail", ocsps=ocsps, crls=crls)
    status = await async_validate_detached_cms(document, signed_data,
                                               signer_validation_context=offline,
                                               ts_validation_context=offline)
    assert status.intact and status.valid and status.trusted
    assert status.timestamp_validity is not None and status.timestamp_validity.trusted
    # over another document it does not hold
    other = await async_validate_detached_cms(document + b" ", signed_data,
                                              signer_validation_context=offline)
    assert not other.intact


async def test_b_lt_refuses_a_revoked_signer(formats_daemon: Daemon,
                                             formats_bed: FormatsBed) -> None:
    """The services report the "revoked" identity revoked (OCSP and CRL): no validation
    data can vouch for it, so finishing B-LT fails rather than embed a useless DSS."""
    kit = _kit(formats_bed, tsa=True)

    async def prepare(chosen: dict[str, Any]) -> PendingSignature:
        return await kit.async_prepare_pdf(sample_pdf(), chosen, level="B-LT")

    pending, answer = await _sign_on_server(formats_daemon, formats_bed, "revoked", prepare)
    with pytest.raises(ValidationDataError):
        await kit.async_finish(pending, answer)

    async def prepare_cades(chosen: dict[str, Any]) -> PendingSignature:
        return await kit.async_prepare_cades(b"a contract", chosen, level="B-LT")

    cades, cades_answer = await _sign_on_server(formats_daemon, formats_bed, "revoked",
                                                prepare_cades)
    with pytest.raises(ValidationDataError):  # the same for detached CAdES
        await kit.async_finish(cades, cades_answer)
    # the same signature is fine at B-T, which makes no claim about revocation
    b_t = DocumentSigner(trust_roots=kit.trust_roots, intermediates=kit.intermediates,
                         tsa_url=kit.tsa_url)
    assert (await b_t.async_finish(
        PendingSignature(**{**pending.__dict__, "level": "B-T"}), answer)).startswith(
        sample_pdf())


async def test_a_tsa_answering_garbage_is_found_before_the_pin(
        formats_daemon: Daemon, formats_bed: FormatsBed) -> None:
    kit = DocumentSigner(trust_roots=_anchors(formats_bed)[:1],
                         tsa_url=formats_bed.services.url("/tsa-garbage"))
    async with formats_daemon.client(ORIGIN) as page:
        chosen = await page.call("certificates.select", {
            "purpose": "sign", "filter": {"subjectSerialNumber": formats_bed.serial("rsa")}})
    with pytest.raises(TimestampError):
        await kit.async_prepare_pdf(sample_pdf(), chosen, level="B-T")


def _openssl_cms(signature: bytes, document: bytes, tmp: Path, bed: FormatsBed
                 ) -> subprocess.CompletedProcess[str]:
    (tmp / "sig.der").write_bytes(signature)
    (tmp / "doc.bin").write_bytes(document)
    return run_tool(["openssl", "cms", "-verify", "-binary", "-inform", "DER",
                     "-in", str(tmp / "sig.der"), "-content", str(tmp / "doc.bin"),
                     "-CAfile", str(bed.anchors[0]), "-certfile", str(bed.anchors[1]),
                     "-purpose", "any", "-out", str(tmp / "out.bin")])


@pytest.mark.parametrize(("identity", "level"), [("rsa", "B-B"), ("ec", "B-B"),
                                                 ("rsa", "B-T")])
async def test_cades_detached(formats_daemon: Daemon, formats_bed: FormatsBed,
                              tmp_path: Path, identity: str, level: str) -> None:
    kit = _kit(formats_bed, tsa=level == "B-T")
    document = "Müqavilə 117: 1 250,00 AZN\n".encode()

    async def prepare(chosen: dict[str, Any]) -> PendingSignature:
        return await kit.async_prepare_cades(document, chosen, level=level)

    pending, answer = await _sign_on_server(formats_daemon, formats_bed, identity, prepare)
    assert pending.message_digest == hashlib.sha256(document).digest()
    der = await kit.async_finish(pending, answer)
    done = _openssl_cms(der, document, tmp_path, formats_bed)
    assert done.returncode == 0, done.stderr
    assert "Verification successful" in done.stderr
    assert (tmp_path / "out.bin").read_bytes() == document
    # another document: openssl refuses
    assert _openssl_cms(der, document + b" ", tmp_path, formats_bed).returncode != 0
    signed_data = cms.ContentInfo.load(der)["content"]
    assert signed_data["encap_content_info"]["content"].native is None  # detached
    context = trust_context(formats_bed)
    status = await async_validate_detached_cms(document, signed_data,
                                               signer_validation_context=context)
    assert status.intact and status.valid and status.trusted
    assert (status.timestamp_validity is not None) == (level == "B-T")
    if level == "B-T":
        assert status.timestamp_validity is not None and status.timestamp_validity.trusted


async def test_a_signature_over_another_hash_is_not_assembled(
        formats_daemon: Daemon, formats_bed: FormatsBed) -> None:
    kit = _kit(formats_bed)

    async def prepare(chosen: dict[str, Any]) -> PendingSignature:
        return await kit.async_prepare_pdf(sample_pdf(), chosen)

    pending, answer = await _sign_on_server(formats_daemon, formats_bed, "rsa", prepare,
                                            tamper_hash=True)
    with pytest.raises(SignatureMismatch):
        await kit.async_finish(pending, answer)


async def test_a_signature_by_another_key_is_refused(formats_daemon: Daemon,
                                                     formats_bed: FormatsBed) -> None:
    kit = _kit(formats_bed)

    async def prepare(chosen: dict[str, Any]) -> PendingSignature:
        return await kit.async_prepare_cades(b"document", chosen)

    # prepared for the RSA key, signed by the "revoked" RSA identity's key
    pending, answer = await _sign_on_server(formats_daemon, formats_bed, "rsa", prepare,
                                            other="revoked")
    with pytest.raises(CertificateMismatch):
        await kit.async_finish(pending, answer)
    # the raw signature alone (no certificate to compare): it does not verify
    with pytest.raises(SignatureMismatch):
        await kit.async_finish(pending, base64.b64decode(answer["signature"]))


async def test_bad_requests_fail_before_the_agent_is_asked(formats_daemon: Daemon,
                                                           formats_bed: FormatsBed) -> None:
    kit = _kit(formats_bed)
    async with formats_daemon.client(ORIGIN) as page:
        chosen = await page.call("certificates.select", {
            "purpose": "sign", "filter": {"subjectSerialNumber": formats_bed.serial("ec")}})
    with pytest.raises(UnsupportedAlgorithm):  # an EC key cannot do PSS
        await kit.async_prepare_pdf(sample_pdf(), chosen, scheme="RSASSA-PSS")
    with pytest.raises(UnsupportedLevel):  # B-T without a TSA configured
        await kit.async_prepare_pdf(sample_pdf(), chosen, level="B-T")
    with pytest.raises(UnsupportedLevel):  # CAdES B-LT too: it is time-stamped
        await kit.async_prepare_cades(b"a contract", chosen, level="B-LT")
    with pytest.raises(UnsupportedLevel):
        await kit.async_prepare_cades(b"a contract", chosen, level="B-LTA")
    pending = await kit.async_prepare_pdf(sample_pdf(), chosen)
    damaged = bytearray(pending.to_bytes())
    damaged[20] ^= 0xFF
    with pytest.raises(InvalidPendingState):
        PendingSignature.from_bytes(bytes(damaged))
    expired = DocumentSigner(trust_roots=kit.trust_roots, max_age=0.0)
    await asyncio.sleep(0.01)
    with pytest.raises(InvalidPendingState):
        await expired.async_finish(pending, b"\x00" * 64)


def test_sync_entry_points_for_portals_without_an_event_loop(
        formats_daemon: Daemon, formats_bed: FormatsBed, tmp_path: Path) -> None:
    """Flask/Django style: prepare and finish are plain calls, no event loop around."""
    kit = _kit(formats_bed)
    document = b"synchronous portal"

    async def page() -> tuple[PendingSignature, dict[str, Any]]:
        async with formats_daemon.client(ORIGIN) as client:
            chosen = await client.call("certificates.select", {
                "purpose": "sign", "filter": {"subjectSerialNumber": formats_bed.serial("ec")}})
            # the server's synchronous view, on a thread of its own
            pending = await asyncio.to_thread(kit.prepare_cades, document, chosen)
            answer = await client.call("sign.hash", pending.sign_hash_params(chosen["handle"]))
        return pending, answer

    pending, answer = asyncio.run(page())
    der = kit.finish(pending, answer)
    done = _openssl_cms(der, document, tmp_path, formats_bed)
    assert done.returncode == 0, done.stderr
