"""signature.extend of CMS (CAdES) and XML (XAdES) signatures through a running agent:
CAdES T → LT → LTA → a renewed LTA, checked by OpenSSL and pyHanko (offline, on the
revocation data the signature carries); XAdES B-T → B-LT → B-LTA → a renewed B-LTA,
checked by xmlsec1 (and xadesjs up to B-LT).  The format work is the CMS and XML
helpers' (agent/formats/cades_extend.py, xades_extend.py); this checks it end to end
through the method, its dialog and its document worker."""

from __future__ import annotations

import base64
import importlib.util
from pathlib import Path
from typing import Any

import pki_services
import pytest
from cms_checks import archive_tokens, openssl_verify, pyhanko_validate, signed_data
from daemon import Daemon, b64, unb64
from lxml import etree
from pki_services import ORIGIN, FormatsBed, select_handle, trust_context
from test_signature_extend import extend, extend_daemon, extend_dialogs
from xades_checks import assert_xadesjs, assert_xmlsec

from agent.formats.xades_ltv import XADES141

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon, pytest.mark.verifiers]

formats_bed = pki_services.formats_bed
__all__ = ["extend_daemon"]  # the fixture, imported for this module's own daemon


def _present(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


async def sign_cms(daemon: Daemon, bed: FormatsBed, data: bytes, level: str) -> bytes:
    async with daemon.client(ORIGIN) as client:
        handle = await select_handle(client, bed.serial("rsa"))
        result = await client.call("sign.cms", {
            "handle": handle, "hashAlgorithm": "SHA-256", "data": b64(data), "level": level,
            "tsaUrl": bed.services.url("/tsa")}, timeout=60)
    return unb64(result["cms"])


def embedded_revocation(der: bytes) -> tuple[list[Any], list[Any]]:
    """The OCSP responses and CRLs a B-LT CMS carries (RFC 5940 other revocation info)."""
    crls, ocsps = [], []
    for choice in signed_data(der)["crls"] or []:
        if choice.name == "crl":
            crls.append(choice.chosen)
        elif choice.chosen["other_rev_info_format"].native == "ocsp_response":
            ocsps.append(choice.chosen["other_rev_info"])
    return ocsps, crls


async def test_cms_t_to_lt_to_lta_and_renewed(extend_daemon: Daemon, formats_bed: FormatsBed,
                                              tmp_path: Path) -> None:
    assert _present("agent.formats.cades_extend"), \
        "agent/formats/cades_extend.py (the CMS work) is not there"
    data = "Müqavilə № 117".encode() * 50
    signed = await sign_cms(extend_daemon, formats_bed, data, "T")
    mark = extend_daemon.transcript_mark()
    lt = await extend(extend_daemon, formats_bed, "cms", signed, "LT")
    assert openssl_verify(formats_bed, lt, data, tmp_path, "lt")
    ocsps, crls = embedded_revocation(lt)
    assert ocsps or crls
    # Offline, on what the signature carries: pyHanko with fetching off and hard-fail.
    offline = trust_context(formats_bed, allow_fetching=False, revocation_mode="hard-fail",
                            ocsps=ocsps, crls=crls)
    await pyhanko_validate(lt, data, 0, offline, offline)
    lta = await extend(extend_daemon, formats_bed, "cms", lt, "LTA", data=b64(data))
    assert len(archive_tokens(lta, 0)) == 1
    assert openssl_verify(formats_bed, lta, data, tmp_path, "lta")
    renewed = await extend(extend_daemon, formats_bed, "cms", lta, "LTA", data=b64(data))
    assert len(archive_tokens(renewed, 0)) == 2
    assert openssl_verify(formats_bed, renewed, data, tmp_path, "renewed")
    ocsps, crls = embedded_revocation(renewed)
    offline = trust_context(formats_bed, allow_fetching=False, revocation_mode="hard-fail",
                            ocsps=ocsps, crls=crls)
    await pyhanko_validate(renewed, data, 0, offline, offline)
    shown = extend_dialogs(extend_daemon, mark)
    assert [d["level"] for d in shown] == ["LT", "LTA", "LTA"]
    assert shown[1]["previews"][0]["kind"] == "text"  # the content, as the page sent it


def archive_stamps(xml: bytes) -> int:
    return len(list(etree.fromstring(xml).iter(f"{{{XADES141}}}ArchiveTimeStamp")))


async def test_xml_b_t_to_b_lt_to_b_lta_and_renewed(extend_daemon: Daemon,
                                                    formats_bed: FormatsBed,
                                                    tmp_path: Path) -> None:
    assert _present("agent.formats.xades_extend"), \
        "agent/formats/xades_extend.py (the XML work) is not there"
    document = ("<?xml version='1.0' encoding='UTF-8'?>"
                "<Sened><Ad>Müqavilə</Ad><Nomre>117</Nomre></Sened>").encode()
    async with extend_daemon.client(ORIGIN) as client:
        handle = await select_handle(client, formats_bed.serial("rsa"))
        result = await client.call("sign.xml", {
            "handle": handle, "xml": b64(document), "level": "B-T", "mode": "enveloped",
            "tsaUrl": formats_bed.services.url("/tsa")}, timeout=60)
    signed = unb64(result["xml"])
    cert = formats_bed.identities["rsa"].cert
    mark = extend_daemon.transcript_mark()
    lt = await extend(extend_daemon, formats_bed, "xml", signed, "B-LT")
    assert b"RevocationValues" in lt and b"CertificateValues" in lt
    assert archive_stamps(lt) == 0
    assert_xmlsec(formats_bed, lt, tmp_path)
    assert_xadesjs(lt, tmp_path, cert)
    lta = await extend(extend_daemon, formats_bed, "xml", lt, "B-LTA")
    assert archive_stamps(lta) == 1
    renewed = await extend(extend_daemon, formats_bed, "xml", lta, "B-LTA")
    assert archive_stamps(renewed) == 2
    # xadesjs reads xadesv141:ArchiveTimeStamp as a malformed XAdES 1.3.2 element
    # (XMLJS0009), so the archive levels are checked by xmlsec1 alone.
    assert_xmlsec(formats_bed, renewed, tmp_path)
    shown = extend_dialogs(extend_daemon, mark)
    assert [(d["format"], d["level"]) for d in shown] == [
        ("xml", "B-LT"), ("xml", "B-LTA"), ("xml", "B-LTA")]
    assert "Müqavilə" in base64.b64decode(shown[0]["previews"][0]["data_b64"]).decode()
