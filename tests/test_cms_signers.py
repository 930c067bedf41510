"""Issue 14 §1: several signers in one CMS through sign.cms — a parallel signature added
to an existing one (detached or attached) and a countersignature of a chosen signer —
made by the running agent with two SoftHSM identities, against the loopback TSA/OCSP/CRL,
and checked by OpenSSL, pyHanko's validator and PKI.js."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from pathlib import Path

import cms_checks as checks
import pki_services
import pytest
from asn1crypto import cms
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from daemon import Daemon, b64, unb64
from pki_services import (
    ORIGIN,
    FormatsBed,
    Issued,
    pin_dialogs,
    run_tool,
    select_handle,
    trust_context,
)

from agent.errors import Unsupported
from agent.formats.anchors import Anchors
from agent.formats.cades import build_cades_here
from agent.formats.cades_signers import (
    MAX_SIGNER_INFOS,
    check_covered_content,
    countersignature_digest,
    load_signature,
)
from agent.formats.job import FormatJob
from agent.formats.network import NetworkSettings

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon, pytest.mark.verifiers]

formats_bed = pki_services.formats_bed
formats_daemon = pki_services.formats_daemon

DATA = "Müqavilə № 2026/44: iki tərəfin imzası".encode()


async def _sign(daemon: Daemon, bed: FormatsBed, identity: str, params: dict) -> bytes:
    async with daemon.client(ORIGIN) as client:
        handle = await select_handle(client, bed.serial(identity))
        result = await client.call("sign.cms", {"handle": handle, **params})
    return unb64(result["cms"])


_FIRST: dict[int, bytes] = {}


async def _first(daemon: Daemon, bed: FormatsBed) -> bytes:
    """The existing signature: the RSA identity's B-B over DATA (made once per daemon)."""
    if id(daemon) not in _FIRST:
        _FIRST[id(daemon)] = await _sign(daemon, bed, "rsa", {
            "data": b64(DATA), "hashAlgorithm": "SHA-256", "level": "B"})
    return _FIRST[id(daemon)]


def _subject_cn(bed: FormatsBed, identity: str) -> str:
    return f"Formatlar {identity}"


async def test_parallel_signature_over_detached_data(formats_daemon: Daemon,
                                                     formats_bed: FormatsBed,
                                                     tmp_path: Path) -> None:
    first = await _first(formats_daemon, formats_bed)
    mark = formats_daemon.transcript_mark()
    # Another algorithm than the first signer's: the agent checks the data with the first
    # signer's own (sha256) and signs with sha384.
    both = await _sign(formats_daemon, formats_bed, "ec", {
        "signature": b64(first), "data": b64(DATA), "hashAlgorithm": "SHA-384",
        "level": "B"})
    assert len(pin_dialogs(formats_daemon, mark)) == 1
    infos = checks.signed_data(both)["signer_infos"]
    assert len(infos) == 2
    # The existing signer is untouched, byte for byte.
    assert infos[0].dump() == checks.signed_data(first)["signer_infos"][0].dump()
    assert infos[1]["digest_algorithm"]["algorithm"].native == "sha384"
    assert {a["algorithm"].native for a in checks.signed_data(both)["digest_algorithms"]} \
        == {"sha256", "sha384"}
    subjects = checks.openssl_verify(formats_bed, both, DATA, tmp_path)
    assert len(subjects) == 2
    assert any(_subject_cn(formats_bed, "rsa") in s for s in subjects)
    assert any(_subject_cn(formats_bed, "ec") in s for s in subjects)
    assert checks.openssl_signer_count(both, tmp_path) == 2
    context = trust_context(formats_bed)
    for index in (0, 1):
        await checks.pyhanko_validate(both, DATA, index, context)
    verdict = checks.pkijs_verify(both, formats_bed, tmp_path, DATA)
    assert len(verdict["signers"]) == 2
    for entry in verdict["signers"]:
        checks.assert_pkijs_signer_ok(entry)
    # PKI.js rejects the same signature over other data (it can say no).
    tampered = checks.pkijs_verify(both, formats_bed, tmp_path, DATA + b".")
    assert not any(e["verified"] for e in tampered["signers"])


async def test_parallel_time_stamped_signature_over_a_hash(formats_daemon: Daemon,
                                                           formats_bed: FormatsBed,
                                                           tmp_path: Path) -> None:
    first = await _first(formats_daemon, formats_bed)
    both = await _sign(formats_daemon, formats_bed, "ec", {
        "signature": b64(first), "hash": b64(hashlib.sha256(DATA).digest()),
        "hashAlgorithm": "SHA-256", "level": "T",
        "tsaUrl": formats_bed.services.url("/tsa")})
    checks.openssl_verify(formats_bed, both, DATA, tmp_path)
    context = trust_context(formats_bed)
    status = await checks.pyhanko_validate(both, DATA, 1, context, ts_context=context)
    assert status.timestamp_validity is not None and status.timestamp_validity.trusted
    verdict = checks.pkijs_verify(both, formats_bed, tmp_path, DATA)
    [stamp] = verdict["signers"][1]["timeStamps"]
    second = checks.signed_data(both)["signer_infos"][1]
    assert stamp["kind"] == "signature-time-stamp" and stamp["verified"] and stamp["chain"], stamp
    assert stamp["imprint"] == hashlib.sha256(second["signature"].native).hexdigest()
    assert verdict["signers"][0]["timeStamps"] == []


async def test_parallel_signature_over_an_attached_signature(formats_daemon: Daemon,
                                                             formats_bed: FormatsBed,
                                                             tmp_path: Path) -> None:
    """Someone else's attached CMS (OpenSSL made it): the data comes from the signature."""
    other = formats_bed.services.issue("attached")
    (tmp_path / "other.pem").write_bytes(other.cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "other.key").write_bytes(other.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (tmp_path / "data.bin").write_bytes(DATA)
    done = run_tool(["openssl", "cms", "-sign", "-nodetach", "-binary", "-outform", "DER",
                     "-in", str(tmp_path / "data.bin"), "-signer", str(tmp_path / "other.pem"),
                     "-inkey", str(tmp_path / "other.key"), "-md", "sha256",
                     "-out", str(tmp_path / "attached.der")])
    assert done.returncode == 0, done.stderr
    attached = (tmp_path / "attached.der").read_bytes()
    both = await _sign(formats_daemon, formats_bed, "ec", {
        "signature": b64(attached), "hashAlgorithm": "SHA-256", "level": "B"})
    content = checks.signed_data(both)
    assert content["encap_content_info"]["content"].native == DATA  # still attached
    assert len(content["signer_infos"]) == 2
    subjects = checks.openssl_verify(formats_bed, both, None, tmp_path)
    assert any("Formatlar attached" in s for s in subjects)
    assert any(_subject_cn(formats_bed, "ec") in s for s in subjects)
    verdict = checks.pkijs_verify(both, formats_bed, tmp_path)
    for entry in verdict["signers"]:
        checks.assert_pkijs_signer_ok(entry)


async def test_countersignature_of_a_chosen_signer(formats_daemon: Daemon,
                                                   formats_bed: FormatsBed,
                                                   tmp_path: Path) -> None:
    first = await _first(formats_daemon, formats_bed)
    mark = formats_daemon.transcript_mark()
    countersigned = await _sign(formats_daemon, formats_bed, "ec", {
        "signature": b64(first), "counterSign": 0, "hashAlgorithm": "SHA-256",
        "level": "LT", "tsaUrl": formats_bed.services.url("/tsa")})
    assert len(pin_dialogs(formats_daemon, mark)) == 1
    signed = checks.signed_data(countersigned)
    # LT: the countersigner's and its TSA's OCSP responses joined the SignedData.
    answered = {c.chosen["other_rev_info"].basic_ocsp_response["tbs_response_data"][
        "responses"][0]["cert_id"]["serial_number"].native
        for c in signed["crls"] if c.name == "other"}
    assert formats_bed.identities["ec"].cert.serial_number in answered
    assert formats_bed.services.tsa.cert.serial_number in answered  # type: ignore[union-attr]
    [info] = signed["signer_infos"]  # no parallel signer: a countersignature
    original = checks.signed_data(first)["signer_infos"][0]
    for field in ("sid", "signed_attrs", "signature"):
        assert info[field].dump() == original[field].dump()
    # The main signature still verifies with OpenSSL (which ignores countersignatures).
    checks.openssl_verify(formats_bed, countersigned, DATA, tmp_path)
    context = trust_context(formats_bed)
    cert = await checks.pyhanko_countersignature(countersigned, 0, context)
    assert "Formatlar ec" in cert.subject.human_friendly
    [attribute] = [a for a in info["unsigned_attrs"] if a["type"].native == "counter_signature"]
    counter = attribute["values"][0]
    [stamp_attr] = [a for a in counter["unsigned_attrs"]
                    if a["type"].native == "signature_time_stamp_token"]
    await checks.pyhanko_timestamp(
        stamp_attr["values"][0], hashlib.sha256(counter["signature"].native).digest(), context)
    verdict = checks.pkijs_verify(countersigned, formats_bed, tmp_path, DATA)
    [main] = verdict["signers"]
    checks.assert_pkijs_signer_ok(main)
    [entry] = main["countersignatures"]
    checks.assert_pkijs_signer_ok(entry)
    assert "Formatlar ec" in entry["subject"]
    [stamp] = entry["timeStamps"]
    assert stamp["verified"] and stamp["imprint"] == hashlib.sha256(
        counter["signature"].native).hexdigest()
    # A second countersignature of the same signer joins the same attribute.
    twice = await _sign(formats_daemon, formats_bed, "rsa", {
        "signature": b64(countersigned), "counterSign": 0, "hashAlgorithm": "SHA-256",
        "level": "B"})
    again = checks.pkijs_verify(twice, formats_bed, tmp_path, DATA)
    assert len(again["signers"][0]["countersignatures"]) == 2
    for entry in again["signers"][0]["countersignatures"]:
        checks.assert_pkijs_signer_ok(entry)


async def test_wrong_data_and_bad_signatures_fail_before_any_dialog(
        formats_daemon: Daemon, formats_bed: FormatsBed) -> None:
    first = await _first(formats_daemon, formats_bed)
    garbage = b"\x30\x82\x01\x00" + b"\x00" * 40
    cases = [
        ({"signature": b64(first), "data": b64(DATA + b"!"), "hashAlgorithm": "SHA-256"},
         "DATA_MISMATCH"),
        ({"signature": b64(first), "hash": b64(hashlib.sha256(b"other").digest()),
          "hashAlgorithm": "SHA-256"}, "DATA_MISMATCH"),
        # No existing signer uses sha512: the hash cannot be checked.
        ({"signature": b64(first), "hash": b64(hashlib.sha512(DATA).digest()),
          "hashAlgorithm": "SHA-512"}, "DIGEST_ALGORITHM"),
        ({"signature": b64(first), "hashAlgorithm": "SHA-256"}, "NO_DATA"),
        ({"signature": b64(garbage), "data": b64(DATA), "hashAlgorithm": "SHA-256"},
         "BAD_SIGNATURE"),
        ({"signature": b64(first), "counterSign": 3, "hashAlgorithm": "SHA-256"},
         "NO_SUCH_SIGNER"),
        ({"signature": b64(_many_signers(first, 65)), "data": b64(DATA),
          "hashAlgorithm": "SHA-256"}, "TOO_MANY_SIGNERS"),
    ]
    async with formats_daemon.client(ORIGIN) as client:
        handle = await select_handle(client, formats_bed.serial("ec"))
        for params, detail in cases:
            mark = formats_daemon.transcript_mark()
            error = await client.error("sign.cms", {"handle": handle, "level": "B", **params})
            assert (error.reason, error.data.get("detail")) == ("UNSUPPORTED", detail), params
            assert pin_dialogs(formats_daemon, mark) == [], detail
    # At the limit (MAX_SIGNER_INFOS) the same signature is read (what the worker runs).
    assert MAX_SIGNER_INFOS == 64
    assert len(load_signature(_many_signers(first, 64)).signer_infos) == 64


def _many_signers(der: bytes, count: int) -> bytes:
    content = cms.ContentInfo.load(der)
    info = content["content"]["signer_infos"][0].dump()
    content["content"]["signer_infos"] = [cms.SignerInfo.load(info) for _ in range(count)]
    return bytes(content.dump())


async def test_countersignature_parameters_are_checked(formats_daemon: Daemon,
                                                       formats_bed: FormatsBed) -> None:
    first = await _first(formats_daemon, formats_bed)
    bad = [
        {"counterSign": 0, "data": b64(DATA)},                     # no signature
        {"counterSign": 0, "signature": b64(first), "data": b64(DATA)},  # data too
        {"counterSign": -1, "signature": b64(first)},
        {"counterSign": 64, "signature": b64(first)},
        {"counterSign": 0, "signature": b64(first), "level": "LTA"},
        {"hashAlgorithm": "SHA-256"},                              # nothing to sign
    ]
    async with formats_daemon.client(ORIGIN) as client:
        handle = await select_handle(client, formats_bed.serial("ec"))
        for params in bad:
            error = await client.error("sign.cms", {"handle": handle, "level": "B",
                                                    "hashAlgorithm": "SHA-256", **params})
            assert error.code == -32602, params


class _ConfirmingKey:
    """``FormatJob.sign`` with a software key whose user takes a while to confirm."""

    def __init__(self, issued: Issued) -> None:
        self.key = issued.key
        self.confirmed_at: dt.datetime | None = None

    async def confirm(self) -> None:
        await asyncio.sleep(2.0)  # reading the dialog, typing the PIN
        self.confirmed_at = dt.datetime.now(dt.UTC)

    async def __call__(self, digest: bytes, digest_algorithm: str, *,
                       ecdsa_raw: bool = False) -> bytes:
        assert self.confirmed_at is not None, "signed before the user confirmed"
        assert isinstance(self.key, ec.EllipticCurvePrivateKey) and not ecdsa_raw
        return self.key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))


async def test_countersignature_signing_time_is_after_the_confirmation(
        formats_daemon: Daemon, formats_bed: FormatsBed) -> None:
    """D3 on the countersignature path (what the document worker runs, in-process)."""
    first = await _first(formats_daemon, formats_bed)
    issued = formats_bed.identities["ec"]
    pki = formats_bed.services.pki
    sign = _ConfirmingKey(issued)
    job = FormatJob(sign=sign, certificate=issued.cert, chain=[pki.intermediate.cert],
                    anchors=Anchors(roots=[pki.root.cert], others=[pki.intermediate.cert]),
                    network=NetworkSettings(timeout=5.0), tsa_url=None)
    der = await build_cades_here(job, None, "sha256", "B", signature=first, counter_sign=0)
    info = checks.signed_data(der)["signer_infos"][0]
    [attribute] = [a for a in info["unsigned_attrs"] if a["type"].native == "counter_signature"]
    signed = {a["type"].native: a["values"][0].native
              for a in attribute["values"][0]["signed_attrs"]}
    assert sign.confirmed_at is not None
    assert signed["signing_time"] >= sign.confirmed_at.replace(microsecond=0)


async def test_mangled_signatures_are_refused_as_unsupported(formats_daemon: Daemon,
                                                             formats_bed: FormatsBed) -> None:
    """Whatever a page does to a signature's bytes, reading it and checking the data
    either works or is UNSUPPORTED — never another error (in-process: what the worker
    runs)."""
    import random

    first = await _first(formats_daemon, formats_bed)
    chooser = random.Random(14)
    refused = 0
    for _ in range(300):
        mangled = bytearray(first)
        for _ in range(chooser.randint(1, 4)):
            mangled[chooser.randrange(len(mangled))] = chooser.randrange(256)
        try:
            existing = load_signature(bytes(mangled))
            check_covered_content(existing, DATA, None, "sha256")
            countersignature_digest(existing, 0, "sha256")
        except Unsupported:
            refused += 1
    assert refused > 0  # the mangling did reach something the reader checks
