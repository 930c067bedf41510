"""sign.xml through a running agent with SoftHSM keys; checked by xmlsec1 (and the
time-stamps by openssl ts), by signxml's XAdES verifier and by xadesjs."""

from __future__ import annotations

import base64
from pathlib import Path

import pki_services
import pytest
from cryptography import x509
from daemon import Daemon, b64, unb64
from lxml import etree
from pki_services import (
    ORIGIN,
    FormatsBed,
    pin_dialogs,
    run_tool,
    select_handle,
)
from signxml.xades import XAdESSignatureConfiguration, XAdESVerifier
from xades_checks import XADES141, assert_archive_stamp, assert_xadesjs

from agent.formats.xades_ltv import signature_level

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon, pytest.mark.verifiers]

# Fixtures shared by the format tests.
formats_bed = pki_services.formats_bed
formats_daemon = pki_services.formats_daemon

DOCUMENT = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Qaimə nömrə="117"><Məbləğ valyuta="AZN">1250.00</Məbləğ></Qaimə>').encode()
DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"


def _xmlsec(bed: FormatsBed, xml: bytes, tmp: Path, name: str = "signed.xml") -> str:
    path = tmp / name
    path.write_bytes(xml)
    done = run_tool(["xmlsec1", "--verify", "--trusted-pem", str(bed.anchors[0]),
                     "--untrusted-pem", str(bed.anchors[1]),
                     "--id-attr:Id", f"{XADES}:SignedProperties",
                     "--id-attr:Id", f"{DS}:KeyInfo", str(path)], cwd=tmp)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stderr


async def _sign(daemon: Daemon, bed: FormatsBed, identity: str, params: dict) -> bytes:
    async with daemon.client(ORIGIN) as client:
        handle = await select_handle(client, bed.serial(identity))
        result = await client.call("sign.xml", {"handle": handle, "xml": b64(DOCUMENT),
                                                **params})
    return unb64(result["xml"])


class _Utf8Verifier(XAdESVerifier):
    """signxml re-parses ASCII-serialised XML, which non-ASCII element names break."""

    def _tostring(self, xml_node, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("encoding", "utf-8")
        return etree.tostring(xml_node, **kwargs)


def _signxml_verify(bed: FormatsBed, xml: bytes, identity: str) -> None:
    """signxml's own XAdES check: the three references and the signing certificate
    digest in SignedProperties match the certificate we expect."""
    config = XAdESSignatureConfiguration(expect_references=3)
    results = _Utf8Verifier().verify(xml, x509_cert=bed.identities[identity].cert,
                                     expect_config=config)
    assert len(results) == 3


async def test_enveloped_b_b_rsa_and_ec(formats_daemon: Daemon, formats_bed: FormatsBed,
                                        tmp_path: Path) -> None:
    for identity in ("rsa", "ec"):
        mark = formats_daemon.transcript_mark()
        xml = await _sign(formats_daemon, formats_bed, identity,
                          {"level": "B-B", "mode": "enveloped"})
        assert len(pin_dialogs(formats_daemon, mark)) == 1
        _xmlsec(formats_bed, xml, tmp_path)
        root = etree.fromstring(xml)
        assert root.tag == "Qaimə" and root.find(f"{{{DS}}}Signature") is not None
        assert root.find(f".//{{{XADES}}}SigningCertificateV2") is not None
        assert root.find(f".//{{{XADES}}}SigningTime") is not None
        _signxml_verify(formats_bed, xml, identity)


async def test_detached_b_b_references_the_document(formats_daemon: Daemon,
                                                     formats_bed: FormatsBed,
                                                     tmp_path: Path) -> None:
    xml = await _sign(formats_daemon, formats_bed, "rsa", {
        "level": "B-B", "mode": "detached", "display": {"documentName": "qaime-117.xml"}})
    signature = etree.fromstring(xml)
    assert signature.tag == f"{{{DS}}}Signature"
    uris = [r.get("URI") for r in signature.iter(f"{{{DS}}}Reference")]
    assert "qaime-117.xml" in uris
    (tmp_path / "qaime-117.xml").write_bytes(DOCUMENT)
    _xmlsec(formats_bed, xml, tmp_path, "qaime-117.sig.xml")


async def test_enveloped_b_t_signature_timestamp(formats_daemon: Daemon,
                                                 formats_bed: FormatsBed,
                                                 tmp_path: Path) -> None:
    xml = await _sign(formats_daemon, formats_bed, "ec", {
        "level": "B-T", "mode": "enveloped", "tsaUrl": formats_bed.services.url("/tsa")})
    _xmlsec(formats_bed, xml, tmp_path)
    root = etree.fromstring(xml)
    value = root.find(f".//{{{DS}}}SignatureValue")
    stamp = root.find(f".//{{{XADES}}}SignatureTimeStamp/{{{XADES}}}EncapsulatedTimeStamp")
    assert value is not None and stamp is not None
    (tmp_path / "token.der").write_bytes(base64.b64decode(stamp.text or ""))
    (tmp_path / "value.c14n").write_bytes(
        etree.tostring(value, method="c14n", exclusive=True, with_comments=False))
    tsa = formats_bed.services.tsa
    assert tsa is not None
    from cryptography.hazmat.primitives.serialization import Encoding

    chain = tmp_path / "untrusted.pem"
    chain.write_bytes(formats_bed.anchors[1].read_bytes()
                      + x509.load_der_x509_certificate(tsa.der).public_bytes(Encoding.PEM))
    done = run_tool(["openssl", "ts", "-verify", "-token_in", "-in", str(tmp_path / "token.der"),
                     "-data", str(tmp_path / "value.c14n"), "-CAfile",
                     str(formats_bed.anchors[0]), "-untrusted", str(chain)])
    assert done.returncode == 0 and "Verification: OK" in done.stdout, done.stdout + done.stderr


async def test_doctype_refused_without_dialog(formats_daemon: Daemon,
                                              formats_bed: FormatsBed) -> None:
    mark = formats_daemon.transcript_mark()
    evil = b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>'
    async with formats_daemon.client(ORIGIN) as client:
        handle = await select_handle(client, formats_bed.serial("rsa"))
        error = await client.error("sign.xml", {"handle": handle, "xml": b64(evil),
                                                "level": "B-B", "mode": "enveloped"})
    assert error.reason == "UNSUPPORTED"
    assert pin_dialogs(formats_daemon, mark) == []


async def test_enveloped_b_lt_and_b_lta(formats_daemon: Daemon, formats_bed: FormatsBed,
                                        tmp_path: Path) -> None:
    for identity, level in (("rsa", "B-LT"), ("ec", "B-LTA")):
        mark = formats_daemon.transcript_mark()
        xml = await _sign(formats_daemon, formats_bed, identity, {
            "level": level, "mode": "enveloped", "tsaUrl": formats_bed.services.url("/tsa")})
        assert len(pin_dialogs(formats_daemon, mark)) == 1
        signature = etree.fromstring(xml).find(f"{{{DS}}}Signature")
        assert signature is not None and signature_level(signature) == level
        _xmlsec(formats_bed, xml, tmp_path)
        _signxml_verify(formats_bed, xml, identity)
        assert_xadesjs(xml, tmp_path, formats_bed.identities[identity].cert)
        if level == "B-LTA":
            assert signature.find(f".//{{{XADES141}}}TimeStampValidationData") is not None
            assert_archive_stamp(formats_bed, xml, tmp_path, 1)


async def test_detached_b_lta_covers_the_document(formats_daemon: Daemon,
                                                  formats_bed: FormatsBed,
                                                  tmp_path: Path) -> None:
    xml = await _sign(formats_daemon, formats_bed, "rsa", {
        "level": "B-LTA", "mode": "detached", "tsaUrl": formats_bed.services.url("/tsa"),
        "display": {"documentName": "qaime-117.xml"}})
    (tmp_path / "qaime-117.xml").write_bytes(DOCUMENT)
    _xmlsec(formats_bed, xml, tmp_path, "qaime-117.sig.xml")
    assert signature_level(etree.fromstring(xml)) == "B-LTA"
    assert_archive_stamp(formats_bed, xml, tmp_path, 1)
