"""Independent checks of CMS signatures with several signers (tests/test_cms_signers.py,
tests/test_cades_lta.py): OpenSSL, pyHanko's validator, PKI.js (tests/e2e), and an
archive-time-stamp-v3 imprint recomputed here from ETSI EN 319 122-1 §5.5.3 (not with the
agent's code)."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms, tsp
from asn1crypto import x509 as asn1_x509
from pki_services import FormatsBed, run_tool
from pyhanko.sign.validation.generic_cms import (
    async_validate_detached_cms,
    validate_tst_signed_data,
)
from pyhanko.sign.validation.status import TimestampSignatureStatus
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.sig_validate import (
    DefaultSignatureValidator,
    SignatureValidationContext,
)

E2E = Path(__file__).parent / "e2e"
PKIJS_VERIFY = E2E / "pkijs_verify.mjs"
ATS_V3 = "0.4.0.1733.2.4"
ATS_HASH_INDEX_V3 = "0.4.0.1733.2.5"


def signed_data(der: bytes) -> cms.SignedData:
    return cms.ContentInfo.load(der)["content"]


def openssl_verify(bed: FormatsBed, der: bytes, data: bytes | None, tmp: Path,
                   name: str = "sig") -> list[str]:
    """``openssl cms -verify`` (every SignerInfo); the subjects of the signers' certificates
    it wrote with ``-signer``."""
    sig, out, signers = tmp / f"{name}.der", tmp / f"{name}.out", tmp / f"{name}-signers.pem"
    sig.write_bytes(der)
    argv = ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(sig),
            "-CAfile", str(bed.anchors[0]), "-certfile", str(bed.anchors[1]),
            "-purpose", "any", "-out", str(out), "-signer", str(signers)]
    if data is not None:
        (tmp / f"{name}.data").write_bytes(data)
        argv += ["-content", str(tmp / f"{name}.data")]
    done = run_tool(argv)
    assert done.returncode == 0, done.stderr
    assert "Verification successful" in done.stderr, done.stderr
    if data is not None:
        assert out.read_bytes() == data
    bundle = tmp / f"{name}-signers.p7b"
    done = run_tool(["openssl", "crl2pkcs7", "-nocrl", "-certfile", str(signers),
                     "-out", str(bundle)])
    assert done.returncode == 0, done.stderr
    subjects = run_tool(["openssl", "pkcs7", "-print_certs", "-noout", "-in", str(bundle)])
    assert subjects.returncode == 0, subjects.stderr
    return [line for line in subjects.stdout.splitlines() if line.startswith("subject=")]


def openssl_signer_count(der: bytes, tmp: Path) -> int:
    """How many SignerInfos ``openssl cms -cmsout -print`` lists."""
    (tmp / "print.der").write_bytes(der)
    done = run_tool(["openssl", "cms", "-cmsout", "-print", "-inform", "DER",
                     "-in", str(tmp / "print.der")])
    assert done.returncode == 0, done.stderr
    return done.stdout.count("signatureAlgorithm:")


def single_signer(der: bytes, index: int) -> cms.SignedData:
    """The SignedData with only SignerInfo ``index``: pyHanko validates one signer."""
    content = signed_data(der)  # a fresh parse: the caller's copy is not changed
    content["signer_infos"] = [content["signer_infos"][index]]
    return content


async def pyhanko_validate(der: bytes, data: bytes, index: int,
                           context: ValidationContext,
                           ts_context: ValidationContext | None = None) -> Any:
    status = await async_validate_detached_cms(
        data, single_signer(der, index), signer_validation_context=context,
        ts_validation_context=ts_context)
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()
    return status


def _certificate_for(signed: cms.SignedData, sid: cms.SignerIdentifier
                     ) -> asn1_x509.Certificate:
    for choice in signed["certificates"]:
        cert = choice.chosen
        if (cert.issuer == sid.chosen["issuer"]
                and cert.serial_number == sid.chosen["serial_number"].native):
            return cert
    raise AssertionError("no certificate for the SignerInfo")


async def pyhanko_countersignature(der: bytes, parent: int, context: ValidationContext
                                   ) -> asn1_x509.Certificate:
    """A countersignature checked with pyHanko's primitives (its validator has no
    countersignature support): the message-digest over the countersigned signature value,
    no content-type (RFC 5652 §11.4), the raw signature, the signer's path."""
    signed = signed_data(der)
    info = signed["signer_infos"][parent]
    [attribute] = [a for a in info["unsigned_attrs"] if a["type"].native == "counter_signature"]
    [counter] = list(attribute["values"])
    md = counter["digest_algorithm"]["algorithm"].native
    attrs = {a["type"].native: a["values"][0] for a in counter["signed_attrs"]}
    assert "content_type" not in attrs
    assert {"message_digest", "signing_time", "signing_certificate_v2"} <= set(attrs)
    assert attrs["message_digest"].native == hashlib.new(md, info["signature"].native).digest()
    cert = _certificate_for(signed, counter["sid"])
    tbs = b"\x31" + counter["signed_attrs"].dump()[1:]
    DefaultSignatureValidator().validate_signature(
        counter["signature"].native, tbs, cert.public_key, counter["signature_algorithm"],
        context=SignatureValidationContext(contextual_md_algorithm=md))
    others = [c.chosen for c in signed["certificates"]]
    await CertificateValidator(cert, intermediate_certs=others,
                               validation_context=context).async_validate_usage(set())
    return cert


async def pyhanko_timestamp(token: cms.ContentInfo, imprint: bytes,
                            context: ValidationContext) -> None:
    """A time-stamp token over ``imprint`` checked by pyHanko's TST validation."""
    found = await validate_tst_signed_data(token["content"], context, lambda _md: imprint)
    status = TimestampSignatureStatus(**found)
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()


def pkijs_verify(der: bytes, bed: FormatsBed, tmp: Path, data: bytes | None = None,
                 ats_inputs: list[bytes] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    """PKI.js on every SignerInfo, countersignature and time-stamp; ``ats_inputs``: the
    archive time-stamps' imprint inputs, in the order of the tokens."""
    if shutil.which("node") is None or not (E2E / "node_modules" / "pkijs").is_dir():
        pytest.fail("node and PKI.js are needed: (cd tests/e2e && npm ci)", pytrace=False)
    (tmp / "pkijs.der").write_bytes(der)
    argv = ["node", str(PKIJS_VERIFY), str(tmp / "pkijs.der"), str(bed.anchors[0])]
    if data is not None:
        (tmp / "pkijs.data").write_bytes(data)
        argv += ["--data", str(tmp / "pkijs.data")]
    for number, stamped in enumerate(ats_inputs):
        (tmp / f"ats-{number}.bin").write_bytes(stamped)
        argv += ["--ats", str(tmp / f"ats-{number}.bin")]
    done = run_tool(argv, cwd=E2E)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def assert_pkijs_signer_ok(entry: dict[str, Any]) -> None:
    assert entry["verified"] and entry["chain"], entry


# --- the archive-time-stamp-v3 imprint, from the standard ------------------------------------

def recomputed_archive_input(der: bytes, index: int, content: bytes, token: cms.ContentInfo,
                             *, newest: bool) -> bytes:
    """The input of an archive-time-stamp-v3's message imprint, recomputed from EN 319
    122-1 §5.5.3 (not with the agent's code): eContentType, the content's hash, the
    SignerInfo's fields, and the ATSHashIndexV3 in the token — whose entries are checked
    against the signature as a verifier does: every certificate and CRL hash it lists is
    in the SignedData (all of them for the ``newest`` token), and its attribute-value
    hashes are those of the unsigned attributes before this token."""
    signed = signed_data(der)
    info = signed["signer_infos"][index]
    [index_attr] = [a for a in token["content"]["signer_infos"][0]["unsigned_attrs"]
                    if a["type"].dotted == ATS_HASH_INDEX_V3]
    raw_index = index_attr["values"][0].dump()
    parsed = _parse_index(raw_index)

    def h(data: bytes) -> bytes:
        return hashlib.new(parsed["md"], data).digest()

    certificates = [h(c.dump()) for c in signed["certificates"]]
    crls = [h(c.dump()) for c in signed["crls"] or []]
    assert set(parsed["certificates"]) <= set(certificates)
    assert set(parsed["crls"]) <= set(crls)
    if newest:
        assert parsed["certificates"] == certificates and parsed["crls"] == crls
    before = []
    for attribute in info["unsigned_attrs"]:
        if (attribute["type"].dotted == ATS_V3
                and attribute["values"][0].dump() == token.dump()):
            break
        before += [h(attribute["type"].dump() + v.dump()) for v in attribute["values"]]
    assert parsed["values"] == before
    md = token_imprint(token)[0]
    parts = [signed["encap_content_info"]["content_type"].dump(),
             hashlib.new(md, content).digest()]
    parts += [info[name].dump() for name in ("version", "sid", "digest_algorithm",
                                             "signed_attrs", "signature_algorithm",
                                             "signature")]
    parts.append(raw_index)
    return b"".join(parts)


def openssl_ts_verify(bed: FormatsBed, token: cms.ContentInfo, imprint: bytes,
                      tmp: Path) -> None:
    """``openssl ts -verify`` of a time-stamp token against a digest we computed."""
    (tmp / "ts.der").write_bytes(token.dump())
    chain = tmp / "ts-untrusted.pem"
    pems = [bed.anchors[1].read_bytes()]
    for choice in token["content"]["certificates"]:
        der = choice.chosen.dump()
        pems.append(b"-----BEGIN CERTIFICATE-----\n"
                    + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n")
    chain.write_bytes(b"".join(pems))
    done = run_tool(["openssl", "ts", "-verify", "-token_in", "-in", str(tmp / "ts.der"),
                     "-digest", imprint.hex(), "-CAfile", str(bed.anchors[0]),
                     "-untrusted", str(chain)])
    assert done.returncode == 0 and "Verification: OK" in done.stdout, \
        done.stdout + done.stderr


def _children(body: bytes) -> list[tuple[int, bytes, bytes]]:
    """(tag, encoding, contents) of each TLV in ``body``: a plain DER walk."""
    from asn1crypto import parser

    out, pointer = [], 0
    while pointer < len(body):
        size = parser.peek(body[pointer:])
        _, _, tag, header, contents, _ = parser.parse(body[pointer:pointer + size])
        out.append((tag, header + contents, contents))
        pointer += size
    return out


def _parse_index(raw: bytes) -> dict[str, Any]:
    """ATSHashIndexV3 read as plain DER (not with the agent's class)."""
    from asn1crypto import algos

    [(tag, _, body)] = _children(raw)
    assert tag == 16
    items = _children(body)
    md = "sha256"  # the DEFAULT
    if len(items) == 4:
        md = algos.DigestAlgorithm.load(items[0][1])["algorithm"].native
        items = items[1:]
    assert len(items) == 3

    def octets(item: tuple[int, bytes, bytes]) -> list[bytes]:
        assert item[0] == 16
        hashes = _children(item[2])
        assert all(tag == 4 for tag, _, _ in hashes)
        return [contents for _, _, contents in hashes]

    return {"md": md, "certificates": octets(items[0]), "crls": octets(items[1]),
            "values": octets(items[2])}


def archive_tokens(der: bytes, index: int) -> list[cms.ContentInfo]:
    info = signed_data(der)["signer_infos"][index]
    return [cms.ContentInfo.load(v.dump()) for a in info["unsigned_attrs"] or []
            if a["type"].dotted == ATS_V3 for v in a["values"]]


def token_imprint(token: cms.ContentInfo) -> tuple[str, bytes]:
    info = token["content"]["encap_content_info"]["content"].parsed
    if not isinstance(info, tsp.TSTInfo):
        info = tsp.TSTInfo.load(info.dump())
    imprint = info["message_imprint"]
    return imprint["hash_algorithm"]["algorithm"].native, imprint["hashed_message"].native
