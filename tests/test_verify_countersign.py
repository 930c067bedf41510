"""XAdES countersignatures (xades:CounterSignature, EN 319 132-1 §5.2.7) reported as
entries of their own: the main signature is made by a running agent with a SoftHSM key,
the countersignature over its ds:SignatureValue by signxml with a key of the test PKI
(the agent makes no XML countersignatures); each verdict compared with xmlsec1's."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pki_services
import pytest
from daemon import Daemon, b64
from lxml import etree
from pki_services import DIRECT_ENV, FormatsBed, Issued
from signxml import methods
from signxml.xades import XAdESSigner
from test_verify_more import _call, _flip_signature_value
from xades_checks import xmlsec

from agent.config import FormatsConfig
from agent.protocol.params_verify import SignatureReport, SignatureVerifyResult
from agent.verify.service import verify_signature

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon, pytest.mark.verifiers]

formats_bed = pki_services.formats_bed
formats_daemon = pki_services.formats_daemon

DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
XML = ('<?xml version="1.0" encoding="UTF-8"?>\n'
       '<Qaimə nömrə="121"><Məbləğ valyuta="AZN">940.00</Məbləğ></Qaimə>').encode()
VALUE_ID = "main-signature-value"


@pytest.fixture(autouse=True)
def _direct(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in DIRECT_ENV.items():
        monkeypatch.setenv(name, value)
    yield


class _Utf8Signer(XAdESSigner):
    """signxml re-parses what it serialised as ASCII, which breaks non-ASCII element
    names (``<Qaimə>``); UTF-8 keeps them (as the agent's own signer does)."""

    def _tostring(self, xml_node: Any, **kwargs: Any) -> bytes:
        kwargs.setdefault("encoding", "utf-8")
        text: bytes = etree.tostring(xml_node, **kwargs)
        return text


def countersign(xml: bytes, signer: Issued) -> bytes:
    """The document's signature countersigned: an Id on its ds:SignatureValue (outside
    SignedInfo, so the signature is unchanged; a B-B one, whose value no time-stamp
    covers), a detached XAdES signature by signxml over it, placed in the signature's
    UnsignedSignatureProperties/xades:CounterSignature."""
    root = etree.fromstring(xml)
    signature = next(root.iter(f"{{{DS}}}Signature"))
    signature.find(f"{{{DS}}}SignatureValue").set("Id", VALUE_ID)
    counter = _Utf8Signer(method=methods.detached, signature_algorithm="rsa-sha256",
                          digest_algorithm="sha256").sign(
        root, key=signer.key, cert=[signer.cert], reference_uri=[f"#{VALUE_ID}"])
    qualifying = next(signature.iter(f"{{{XADES}}}QualifyingProperties"))
    unsigned = qualifying.find(f"{{{XADES}}}UnsignedProperties")
    if unsigned is None:
        unsigned = etree.SubElement(qualifying, f"{{{XADES}}}UnsignedProperties")
    props = unsigned.find(f"{{{XADES}}}UnsignedSignatureProperties")
    if props is None:
        props = etree.SubElement(unsigned, f"{{{XADES}}}UnsignedSignatureProperties")
    etree.SubElement(props, f"{{{XADES}}}CounterSignature").append(counter)
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out


@pytest.fixture(scope="module")
def countersigned(formats_daemon: Daemon, formats_bed: FormatsBed) -> tuple[bytes, Issued]:
    main = asyncio.run(_call(formats_daemon, formats_bed, "rsa", "sign.xml", {
        "xml": b64(XML), "level": "B-B", "mode": "enveloped"}, "xml"))
    counter_signer = formats_bed.services.issue("countersigner")
    return countersign(main, counter_signer), counter_signer


async def _verify(bed: FormatsBed, xml: bytes) -> SignatureVerifyResult:
    config = FormatsConfig(trust_anchors=bed.anchors,
                           network_timeout=pki_services.NETWORK_TIMEOUT,
                           page_tsa_private_addresses=True)
    return await verify_signature(config, xml, None, None)


def _verdicts(result: SignatureVerifyResult) -> list[tuple[str, str | None]]:
    return [(s.indication.value, s.sub_indication) for s in result.signatures]


def _xmlsec_ok(bed: FormatsBed, xml: bytes, tmp: Path, index: int) -> bool:
    done = xmlsec(bed, xml, tmp, index, (f"{DS}:SignatureValue",))
    return done.returncode == 0 and "OK" in done.stdout + done.stderr


def _counter_entry(report: SignatureReport, signer: Issued) -> None:
    assert report.field_name == "xades:CounterSignature of signature 1"
    assert report.signer is not None
    assert report.signer.serial == format(signer.cert.serial_number, "X")
    if "countersigns" in SignatureReport.model_fields:
        assert report.model_dump().get("countersigns") == 1


async def test_countersignature_is_an_entry_of_its_own(
        countersigned: tuple[bytes, Issued], formats_bed: FormatsBed, tmp_path: Path) -> None:
    xml, signer = countersigned
    result = await _verify(formats_bed, xml)
    assert _verdicts(result) == [("TOTAL-PASSED", None), ("TOTAL-PASSED", None)], \
        [s.message for s in result.signatures]
    main, counter = result.signatures
    assert main.signer is not None and counter.signer is not None
    assert main.signer.serial != counter.signer.serial
    assert main.field_name is None
    _counter_entry(counter, signer)
    assert _xmlsec_ok(formats_bed, xml, tmp_path, 1)
    assert _xmlsec_ok(formats_bed, xml, tmp_path, 2)


async def test_a_broken_countersignature_does_not_hide_the_main_signature(
        countersigned: tuple[bytes, Issued], formats_bed: FormatsBed, tmp_path: Path) -> None:
    xml, signer = countersigned
    broken = _flip_signature_value(xml, 1)  # the countersignature's own value
    result = await _verify(formats_bed, broken)
    assert _verdicts(result) == [("TOTAL-PASSED", None),
                                 ("TOTAL-FAILED", "SIG_CRYPTO_FAILURE")], \
        [s.message for s in result.signatures]
    _counter_entry(result.signatures[1], signer)
    assert _xmlsec_ok(formats_bed, broken, tmp_path, 1)
    assert not _xmlsec_ok(formats_bed, broken, tmp_path, 2)


async def test_a_changed_main_signature_value_fails_both(
        countersigned: tuple[bytes, Issued], formats_bed: FormatsBed, tmp_path: Path) -> None:
    """The main signature's value changed: it fails, and so does the countersignature
    (its reference covers that value) — each with its own reason."""
    xml, _signer = countersigned
    broken = _flip_signature_value(xml, 0)
    result = await _verify(formats_bed, broken)
    assert _verdicts(result) == [("TOTAL-FAILED", "SIG_CRYPTO_FAILURE"),
                                 ("TOTAL-FAILED", "HASH_FAILURE")], \
        [s.message for s in result.signatures]
    assert not _xmlsec_ok(formats_bed, broken, tmp_path, 1)
    assert not _xmlsec_ok(formats_bed, broken, tmp_path, 2)


async def test_countersignatures_count_against_the_setting(
        countersigned: tuple[bytes, Issued], formats_bed: FormatsBed) -> None:
    from types import SimpleNamespace

    from agent.errors import Unsupported
    from agent.formats.anchors import Anchors
    from agent.formats.document_caps import StructureCaps
    from agent.formats.job import KeylessJob
    from agent.formats.network import NetworkSettings
    from agent.verify.xml_verify import verify_xml

    pki = formats_bed.services.pki
    job = KeylessJob(anchors=Anchors(roots=[pki.root.cert], others=[pki.intermediate.cert]),
                     network=NetworkSettings(timeout=5.0))
    one = SimpleNamespace(**{**vars(StructureCaps()), "verified_signatures": 1})
    with pytest.raises(Unsupported, match="countersignatures"):
        await verify_xml(job, countersigned[0], None, one)  # type: ignore[arg-type]
    two: Any = SimpleNamespace(**{**vars(StructureCaps()), "verified_signatures": 2})
    assert len(await verify_xml(job, countersigned[0], None, two)) == 2
