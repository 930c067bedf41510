"""Issue 14 §2 for CAdES: B-LTA (an archive-time-stamp-v3 with its ats-hash-index-v3,
ETSI EN 319 122-1 §5.5.3) through sign.cms on the running agent, and the keyless
extension B → T → LT → LTA → renewed LTA that ``signature.extend`` runs in a document
worker (``extend_cades_here``, run here in-process against the loopback TSA/OCSP/CRL).

Checked by OpenSSL (cms -verify, ts -verify against an imprint we recompute from the
standard), pyHanko's validator (offline: no fetching, hard-fail revocation on the embedded
data) and PKI.js (every signer and time-stamp, the archive ones over our recomputed
input)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import cms_checks as checks
import pki_services
import pytest
from asn1crypto import cms
from daemon import Daemon, b64, unb64
from pki_services import ORIGIN, FormatsBed, select_handle, trust_context

from agent.errors import Unsupported
from agent.formats.anchors import Anchors
from agent.formats.cades_extend import extend_cades_here
from agent.formats.job import KeylessJob
from agent.formats.network import NetworkSettings

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon, pytest.mark.verifiers]

formats_bed = pki_services.formats_bed
formats_daemon = pki_services.formats_daemon

DATA = "e-Yazışma: resmî yazı № 2026-0117, arşiv imzası".encode()


@pytest.fixture(autouse=True)
def _direct(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The loopback services are reached directly whatever proxy this machine has.
    for name, value in pki_services.DIRECT_ENV.items():
        monkeypatch.setenv(name, value)
    yield


async def _sign(daemon: Daemon, bed: FormatsBed, identity: str, params: dict) -> bytes:
    async with daemon.client(ORIGIN) as client:
        handle = await select_handle(client, bed.serial(identity))
        result = await client.call("sign.cms", {"handle": handle, **params})
    return unb64(result["cms"])


def _keyless(bed: FormatsBed) -> KeylessJob:
    pki = bed.services.pki
    return KeylessJob(anchors=Anchors(roots=[pki.root.cert], others=[pki.intermediate.cert]),
                      network=NetworkSettings(timeout=5.0), tsa_url=bed.services.url("/tsa"))


def _offline(bed: FormatsBed, der: bytes) -> object:
    """pyHanko's context with no fetching and hard-fail revocation: only what the
    signature embeds can make it pass."""
    signed = checks.signed_data(der)
    crls = signed["crls"] or []
    return trust_context(
        bed, allow_fetching=False, revocation_mode="hard-fail",
        ocsps=[c.chosen["other_rev_info"] for c in crls if c.name == "other"],
        crls=[c.chosen for c in crls if c.name == "crl"])


async def _check_archive(bed: FormatsBed, der: bytes, tmp: Path, *, index: int = 0
                         ) -> list[bytes]:
    """Every archive time-stamp of signer ``index`` checked against the imprint input we
    recompute; the inputs, oldest first."""
    tokens = checks.archive_tokens(der, index)
    assert tokens
    inputs = []
    for position, token in enumerate(tokens):
        stamped = checks.recomputed_archive_input(der, index, DATA, token,
                                                  newest=position == len(tokens) - 1)
        md, imprint = checks.token_imprint(token)
        assert imprint == hashlib.new(md, stamped).digest()
        checks.openssl_ts_verify(bed, token, imprint, tmp)
        await checks.pyhanko_timestamp(token, imprint, trust_context(bed))
        inputs.append(stamped)
    return inputs


async def test_sign_cms_b_lta(formats_daemon: Daemon, formats_bed: FormatsBed,
                              tmp_path: Path) -> None:
    der = await _sign(formats_daemon, formats_bed, "ec", {
        "data": b64(DATA), "hashAlgorithm": "SHA-256", "level": "LTA",
        "tsaUrl": formats_bed.services.url("/tsa")})
    checks.openssl_verify(formats_bed, der, DATA, tmp_path)
    info = checks.signed_data(der)["signer_infos"][0]
    kinds = [a["type"].dotted for a in info["unsigned_attrs"]]
    assert kinds == ["1.2.840.113549.1.9.16.2.14", checks.ATS_V3]  # in the order added
    inputs = await _check_archive(formats_bed, der, tmp_path)
    offline = _offline(formats_bed, der)
    status = await checks.pyhanko_validate(der, DATA, 0, offline, ts_context=offline)
    assert status.timestamp_validity is not None and status.timestamp_validity.trusted
    verdict = checks.pkijs_verify(der, formats_bed, tmp_path, DATA, inputs)
    [signer] = verdict["signers"]
    checks.assert_pkijs_signer_ok(signer)
    assert [s["kind"] for s in signer["timeStamps"]] == ["signature-time-stamp",
                                                          "archive-time-stamp-v3"]
    for stamp in signer["timeStamps"]:
        checks.assert_pkijs_signer_ok(stamp)
    # PKI.js says no to an archive time-stamp over anything else.
    wrong = checks.pkijs_verify(der, formats_bed, tmp_path, DATA, [inputs[0] + b"x"])
    assert not wrong["signers"][0]["timeStamps"][1]["verified"]


async def test_extend_b_to_t_lt_lta_and_renew(formats_daemon: Daemon,
                                              formats_bed: FormatsBed,
                                              tmp_path: Path) -> None:
    """Two signers (a parallel signature), extended together without any key."""
    first = await _sign(formats_daemon, formats_bed, "rsa", {
        "data": b64(DATA), "hashAlgorithm": "SHA-256", "level": "B"})
    signature = await _sign(formats_daemon, formats_bed, "ec", {
        "signature": b64(first), "data": b64(DATA), "hashAlgorithm": "SHA-384", "level": "B"})
    job = _keyless(formats_bed)
    digest = hashlib.sha256(DATA).digest()

    t = await extend_cades_here(job, signature, "T", None, None)
    for index in (0, 1):
        await checks.pyhanko_validate(t, DATA, index, trust_context(formats_bed),
                                      ts_context=trust_context(formats_bed))
    assert checks.signed_data(t)["crls"].native is None
    with pytest.raises(AssertionError):  # offline, B-T has nothing to check revocation with
        offline_t = _offline(formats_bed, t)
        await checks.pyhanko_validate(t, DATA, 1, offline_t, ts_context=offline_t)

    lt = await extend_cades_here(job, t, "LT", None, None)
    offline = _offline(formats_bed, lt)
    for index in (0, 1):
        status = await checks.pyhanko_validate(lt, DATA, index, offline, ts_context=offline)
        assert status.timestamp_validity is not None and status.timestamp_validity.trusted
    # B-LT's data does not touch what was signed or stamped before.
    for before, after in zip(checks.signed_data(t)["signer_infos"],
                             checks.signed_data(lt)["signer_infos"], strict=True):
        assert before.dump() == after.dump()

    lta = await extend_cades_here(job, lt, "LTA", digest, "sha256")
    for index in (0, 1):
        assert len(checks.archive_tokens(lta, index)) == 1
        await _check_archive(formats_bed, lta, tmp_path, index=index)

    renewed = await extend_cades_here(job, lta, "LTA", digest, "sha256")
    before = len(checks.signed_data(lta)["crls"])
    assert len(checks.signed_data(renewed)["crls"]) > before  # the last TSA's fresh data
    inputs: list[bytes] = []
    for index in (0, 1):
        assert len(checks.archive_tokens(renewed, index)) == 2
        inputs += await _check_archive(formats_bed, renewed, tmp_path, index=index)
    checks.openssl_verify(formats_bed, renewed, DATA, tmp_path)
    offline = _offline(formats_bed, renewed)
    for index in (0, 1):
        await checks.pyhanko_validate(renewed, DATA, index, offline, ts_context=offline)
    verdict = checks.pkijs_verify(renewed, formats_bed, tmp_path, DATA, inputs)
    for signer in verdict["signers"]:
        checks.assert_pkijs_signer_ok(signer)
        assert [s["kind"] for s in signer["timeStamps"]] == [
            "signature-time-stamp", "archive-time-stamp-v3", "archive-time-stamp-v3"]
        for stamp in signer["timeStamps"]:
            checks.assert_pkijs_signer_ok(stamp)


async def test_extend_refuses_what_it_cannot_archive(formats_daemon: Daemon,
                                                     formats_bed: FormatsBed) -> None:
    signature = await _sign(formats_daemon, formats_bed, "rsa", {
        "data": b64(DATA), "hashAlgorithm": "SHA-256", "level": "B"})
    job = _keyless(formats_bed)
    cases = [
        ((signature, "LTA", None, None), "NO_DATA"),  # detached: the archive needs the data
        ((signature, "LTA", hashlib.sha256(b"other").digest(), "sha256"), "DATA_MISMATCH"),
        ((b"\x30\x03\x02\x01\x01", "T", None, None), "BAD_SIGNATURE"),
    ]
    for args, detail in cases:
        with pytest.raises(Unsupported) as raised:
            await extend_cades_here(job, *args)
        assert raised.value.data.get("detail") == detail, args
    with pytest.raises(Unsupported):
        await extend_cades_here(job, signature, "B", None, None)


def test_archive_index_algorithm_follows_the_time_stamp() -> None:
    """A sha384 archive time-stamp names its hash index algorithm (sha256 is DER's
    default and left out)."""
    from agent.formats.cades_archive import ATSHashIndexV3, hash_index

    content = cms.SignedData({
        "version": "v1", "digest_algorithms": [], "encap_content_info": {"content_type": "data"},
        "certificates": [], "signer_infos": []})
    info = cms.SignerInfo({
        "version": "v1", "sid": {"subject_key_identifier": b"k"},
        "digest_algorithm": {"algorithm": "sha256"},
        "signature_algorithm": {"algorithm": "sha256_ecdsa"}, "signature": b"s"})
    assert hash_index(content, info, "sha256").dump()[2:4] != b"\x30\x0d"
    sha384 = ATSHashIndexV3.load(hash_index(content, info, "sha384").dump())
    assert sha384["hash_ind_algorithm"]["algorithm"].native == "sha384"


