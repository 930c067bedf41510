"""CAdES (detached or enveloping CMS) verification with pyHanko's AdES processes:
``ades_with_time_validation`` when the signature carries a signature time-stamp (B-T and
up: the time-stamp is the proof of existence an expired or later-revoked certificate is
judged at), ``ades_basic_validation`` otherwise (B-B)."""

from __future__ import annotations

import hashlib
from typing import Any

from asn1crypto import cms
from pyhanko.sign.validation.ades import ades_basic_validation, ades_with_time_validation
from pyhanko.sign.validation.generic_cms import extract_tst_data_iter, message_imprint_checker

from agent.errors import Unsupported
from agent.formats.job import KeylessJob
from agent.verify.archive import check_cades_archive, token_context
from agent.verify.common import (
    ARCHIVE_TIMESTAMP_V2,
    ARCHIVE_TIMESTAMP_V3,
    CERTIFICATE_VALUES,
    FAILED,
    PASSED,
    REVOCATION_VALUES,
    SignatureFacts,
    Verdict,
    certificate_facts,
    chain_facts,
    embedded_revocation,
    revocation_facts,
    validation_spec,
    verdict_of,
)
from agent.verify.past import Material, judge_at_archive, needs_past_validation


def load_signed_data(der: bytes) -> cms.SignedData:
    try:
        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native != "signed_data":
            raise Unsupported("the file is not a CMS SignedData")
        signed: cms.SignedData = info["content"]
        for info in signed["signer_infos"]:  # parse now: a malformed one is refused here
            # (not the unsigned attributes: asn1crypto cannot render ones it does not
            # know, such as CAdES archive-time-stamp-v3, and pyHanko reads them by type)
            _ = (info["sid"].native, info["digest_algorithm"].native,
                 info["signed_attrs"].native, info["signature"].native)
    except (ValueError, TypeError, KeyError) as exc:
        raise Unsupported("the file is not a readable CMS signature") from exc
    return signed


def _has_attr(signer_info: cms.SignerInfo, dotted: set[str]) -> bool:
    return any(a["type"].dotted in dotted for a in signer_info["unsigned_attrs"] or ())


def cades_level(signer_info: cms.SignerInfo, signed: cms.SignedData) -> str:
    """The baseline level the structure shows (EN 319 122-1 §6): B-LT needs validation data
    next to the time-stamp, B-LTA an archive time-stamp."""
    try:
        next(extract_tst_data_iter(signer_info, signed=False))
    except StopIteration:
        return "B-B"
    if _has_attr(signer_info, {ARCHIVE_TIMESTAMP_V3, ARCHIVE_TIMESTAMP_V2}):
        return "B-LTA"
    if len(signed["crls"] or ()) or _has_attr(signer_info, {REVOCATION_VALUES,
                                                               CERTIFICATE_VALUES}):
        return "B-LT"
    return "B-T"


def _one_signer(der: bytes, index: int) -> cms.SignedData:
    """A SignedData with only the ``index``-th SignerInfo: pyHanko validates the first."""
    signed: cms.SignedData = cms.ContentInfo.load(der)["content"]
    if len(signed["signer_infos"]) > 1:
        signed["signer_infos"] = [signed["signer_infos"][index]]
    return signed


def _claimed_time(signer_info: cms.SignerInfo) -> Any:
    for attr in signer_info["signed_attrs"] or ():
        if attr["type"].native == "signing_time":
            return attr["values"][0].native
    return None


async def verify_cms(job: KeylessJob, signature: bytes, data: bytes | None,
                     limit: int) -> list[SignatureFacts]:
    """``limit``: ``[documents] max_verified_signatures`` (each SignerInfo costs path
    building and fetches)."""
    signed = load_signed_data(signature)
    content = signed["encap_content_info"]["content"]
    if data is None and content.native is None:
        raise Unsupported("the signature is detached: give the signed data too")
    if data is not None and content.native is not None:
        raise Unsupported("the signature carries its content: give no detached data")
    count = len(signed["signer_infos"])
    if count == 0 or count > limit:
        raise Unsupported(f"a CMS signature with {count} signers is not verified")
    # Each archive time-stamp costs a validation of its own: bounded as well.
    for info in signed["signer_infos"]:
        stamps = sum(len(a["values"]) for a in info["unsigned_attrs"] or ()
                     if a["type"].dotted == ARCHIVE_TIMESTAMP_V3)
        if stamps > limit:
            raise Unsupported(f"a signer with more than {limit} archive time-stamps is not "
                              "verified")
    reports = []
    async with job.network.session() as session:
        for index in range(count):
            reports.append(await _verify_signer(job, session, signature, index, data))
    return reports


async def _verify_signer(job: KeylessJob, session: Any, der: bytes, index: int,
                         data: bytes | None) -> SignatureFacts:
    one = _one_signer(der, index)
    signer_info = one["signer_infos"][0]
    level = cades_level(signer_info, one)
    local = embedded_revocation(one)
    spec = validation_spec(job.anchors, job.network, session, local)
    raw_digest = None
    if data is not None:
        md = signer_info["digest_algorithm"]["algorithm"].native
        raw_digest = hashlib.new(md, data).digest()
    claimed = _claimed_time(signer_info)
    if level == "B-B":
        result: Any = await ades_basic_validation(one, spec, raw_digest=raw_digest)
    else:
        result = await ades_with_time_validation(one, spec, raw_digest=raw_digest)
    status = result.api_status
    timestamp = getattr(getattr(status, "timestamp_validity", None), "timestamp", None)
    signer_cert = getattr(status, "signing_cert", None)
    if signer_cert is None:
        signer_cert = _certificate_of(one, signer_info)
    verdict = verdict_of(result.ades_subindic, status, result.failure_msg, claimed)
    facts = SignatureFacts(
        format="cms", level=f"CAdES-{level}", verdict=verdict,
        signer=certificate_facts(signer_cert) if signer_cert is not None else None,
        claimed_signing_time=claimed, timestamp_time=timestamp,
        best_signature_time=getattr(result, "best_signature_time", None),
        chain=chain_facts(getattr(status, "validation_path", None)),
        revocation=revocation_facts(status, local, verdict))
    if level == "B-LTA" and (verdict.indication == PASSED or needs_past_validation(verdict)):
        await _long_term(job, session, one, signer_info, data, facts, status, signer_cert)
    return facts


async def _long_term(job: KeylessJob, session: Any, signed: cms.SignedData,
                     signer_info: cms.SignerInfo, data: bytes | None, facts: SignatureFacts,
                     status: Any, signer_cert: Any) -> None:
    """A B-LTA signature's archive time-stamps checked now (agent/verify/archive.py): one
    that fails decides a passing signature's verdict (and any that fails outright, a
    signature's that did not pass); when all hold and the signature did not pass at the
    current time for a reason time can cure, it is judged at the POE the oldest gives
    (agent/verify/past.py)."""
    content = data if data is not None else attached_content(signed)
    material = _material(signed)
    context = token_context(job, session, material.certs, material.crls, material.ocsps)
    checked = await check_cades_archive(signed, signer_info, content, context)
    if isinstance(checked, Verdict):
        if facts.verdict.indication == PASSED or checked.indication == FAILED:
            facts.verdict = checked
        return
    intact = bool(getattr(status, "intact", False) and getattr(status, "valid", False))
    if facts.verdict.indication == PASSED or not checked or not intact \
            or signer_cert is None:
        return
    stamp = next(extract_tst_data_iter(signer_info, signed=False), None)
    past = await judge_at_archive(job, session, min(checked), stamp,
                                  message_imprint_checker(signer_info), signer_cert,
                                  facts.claimed_signing_time, material)
    facts.verdict, facts.best_signature_time = past.verdict, past.moment
    facts.timestamp_time = past.timestamp or facts.timestamp_time
    facts.chain = chain_facts(past.path)
    facts.revocation = {**facts.revocation, **past.revocation}


def _material(signed: cms.SignedData) -> Material:
    """The certificates and revocation data a SignedData carries (B-LT puts them in
    ``certificates`` and ``crls``)."""
    certs = [c.chosen for c in signed["certificates"] or () if c.name == "certificate"]
    found = Material(certs=certs)
    for choice in signed["crls"] or ():
        if choice.name == "crl":
            found.crls.append(choice.chosen)
        elif choice.name == "other" and \
                choice.chosen["other_rev_info_format"].native == "ocsp_response":
            found.ocsps.append(choice.chosen["other_rev_info"])
    return found


def attached_content(signed: cms.SignedData) -> bytes:
    """An attached signature's content (as agent/formats/cades_signers.py reads it)."""
    econtent = signed["encap_content_info"]["content"]
    value = econtent.native if isinstance(econtent.native, bytes) else econtent.contents
    return bytes(value or b"")


def _certificate_of(signed: cms.SignedData, signer_info: cms.SignerInfo) -> Any:
    """The signer's certificate for the report when pyHanko stopped before finding it."""
    from pyhanko.sign.general import extract_certificate_info

    try:
        return extract_certificate_info(signed).signer_cert
    except Exception:  # the report then names no signer; the verdict says why
        del signer_info
        return None
