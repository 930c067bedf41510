"""Archive time-stamps checked, not only counted (B-LTA, EN 319 102-1 §5.5/§5.6).

Each archive time-stamp's imprint is recomputed with the code that builds it (CAdES:
agent/formats/cades_archive.py's ``archive_imprint`` with the ats-hash-index-v3 the token
carries; XAdES: agent/formats/xades_ltv.py's ``archive_input`` / ASiC-E's
``archive_digest`` over the signature as it stood before that time-stamp), and the token
is validated by pyHanko (``validate_tst_signed_data``: imprint, signature, TSA path).

Verdicts (documented in docs/formats.md "Verification"), applied only to a signature
that otherwise passed:

* the imprint does not match (the signature, its validation data or — CAdES — an entry
  its hash index names was changed or removed after archiving): TOTAL-FAILED
  HASH_FAILURE;
* a token that cannot be read: TOTAL-FAILED FORMAT_FAILURE;
* a token whose own signature is invalid, or (XAdES) whose input uses a transform the
  archive code does not process: INDETERMINATE NO_POE (it proves nothing, but says
  nothing against the signature either);
* a token whose TSA path does not validate: INDETERMINATE with that path's
  sub-indication (e.g. NO_CERTIFICATE_CHAIN_FOUND)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from asn1crypto import algos, cms, core
from pyhanko.sign.ades.report import AdESFailure, AdESIndeterminate, AdESSubIndic
from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
from pyhanko_certvalidator import ValidationContext

from agent.formats.job import KeylessJob
from agent.formats.revocation import SessionFetcherBackend, to_asn1
from agent.verify.common import Verdict, revinfo_policy

Imprint = Callable[[str], bytes]


async def check_token(token: cms.ContentInfo, context: ValidationContext, imprint: Imprint,
                      what: str) -> dt.datetime | Verdict:
    """The validated time of a time-stamp token over ``imprint`` (a function of the
    token's hash algorithm), or the verdict its failure earns."""
    try:
        signed = token["content"]
    except (ValueError, TypeError, KeyError):
        return Verdict.of(AdESFailure.FORMAT_FAILURE, f"the {what} is unreadable")
    return await check_signed_token(signed, context, imprint, what)


async def check_signed_token(signed: cms.SignedData, context: ValidationContext,
                             imprint: Imprint, what: str) -> dt.datetime | Verdict:
    """``check_token`` of a token's SignedData (as CAdES and PAdES hold them)."""
    try:
        _ = signed["encap_content_info"]["content"].parsed.native  # parse now
    except (ValueError, TypeError, KeyError, AttributeError):
        return Verdict.of(AdESFailure.FORMAT_FAILURE, f"the {what} is unreadable")
    try:
        status = await validate_tst_signed_data(signed, context, imprint)
    except Exception as exc:  # pyHanko's validation errors carry their sub-indication
        subindic: AdESSubIndic = getattr(exc, "ades_subindication", None) \
            or AdESFailure.FORMAT_FAILURE
        return Verdict.of(subindic, f"{what}: {exc}")
    if not status.get("intact"):
        return Verdict.of(AdESFailure.HASH_FAILURE, f"the {what} does not cover this "
                          "signature as it is (changed after it was time-stamped)")
    if not status.get("valid"):
        return Verdict.of(AdESIndeterminate.NO_POE, f"the {what}'s signature is invalid")
    problem = status.get("trust_problem_indic")
    if problem is not None:
        return Verdict.of(problem, f"the {what}'s certificate is not trusted")
    moment: dt.datetime = status["timestamp"]
    return moment


def token_digest_algorithm(token: cms.ContentInfo) -> str | None:
    try:
        info = token["content"]["encap_content_info"]["content"].parsed
        return str(info["message_imprint"]["hash_algorithm"]["algorithm"].native)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def constant_imprint(imprint: bytes) -> Imprint:
    """The imprint of a token whose input was hashed with the token's own algorithm."""
    def value(_md: str) -> bytes:
        return imprint
    return value


def token_context(job: KeylessJob, session: Any, certs: list[Any], crls: list[Any],
                  ocsps: list[Any]) -> ValidationContext:
    """pyHanko's context for a TSA's path now: the configured roots, what the signature
    carries, status fetched over the verification's guarded session."""
    return ValidationContext(
        trust_roots=[to_asn1(c) for c in job.anchors.roots],
        other_certs=[*(to_asn1(c) for c in job.anchors.others), *certs],
        crls=crls, ocsps=ocsps, allow_fetching=True, revinfo_policy=revinfo_policy(),
        fetcher_backend=SessionFetcherBackend(session, job.network))


# --- CAdES archive-time-stamp-v3 -----------------------------------------------------------

class _AnyList(core.SequenceOf):  # type: ignore[misc]  # asn1crypto is untyped
    _child_spec = core.Any


class _Hashes(core.SequenceOf):  # type: ignore[misc]
    _child_spec = core.OctetString


def stored_hash_index(token: cms.ContentInfo) -> tuple[Any, str, list[list[bytes]]] | None:
    """The ats-hash-index-v3 the token carries: its value (to hash as it is encoded),
    its algorithm and its three lists (certificates, CRLs, unsigned attribute values).

    Read by hand: with the DEFAULT algorithm (SHA-256) left out, the first SEQUENCE is
    the certificates' list, which asn1crypto's spec (matching fields by tag) would take
    for the AlgorithmIdentifier (see agent/formats/cades_archive.py)."""
    from agent.formats.cades_archive import ATS_HASH_INDEX_V3

    try:
        token_signer = token["content"]["signer_infos"][0]
        values = [a["values"][0] for a in token_signer["unsigned_attrs"] or ()
                  if a["type"].dotted == ATS_HASH_INDEX_V3]
        if len(values) != 1:
            return None
        raw = values[0].dump()
        parts = list(_AnyList.load(raw))
        md = "sha256"
        if len(parts) == 4:  # the algorithm is there: an OID opens it
            md = str(algos.DigestAlgorithm.load(parts[0].dump())["algorithm"].native)
            parts = parts[1:]
        if len(parts) != 3:
            return None
        lists = [[bytes(h.native) for h in _Hashes.load(p.dump())] for p in parts]
    except (ValueError, TypeError, KeyError, IndexError):
        return None
    return core.Any.load(raw), md, lists


def missing_from_index(signed: cms.SignedData, signer_info: cms.SignerInfo, md: str,
                       lists: list[list[bytes]]) -> str | None:
    """What the hash index names that the signature no longer holds (None: all there)."""
    import hashlib

    def digest(data: bytes) -> bytes:
        return hashlib.new(md, data).digest()

    present = [
        {digest(c.dump()) for c in signed["certificates"] or ()},
        {digest(c.dump()) for c in signed["crls"] or ()},
        {digest(a["type"].dump() + v.dump()) for a in signer_info["unsigned_attrs"] or ()
         for v in a["values"]}]
    names = ("a certificate", "revocation data", "an unsigned attribute")
    for name, wanted, there in zip(names, lists, present, strict=True):
        if any(h not in there for h in wanted):
            return f"{name} the archive time-stamp protects was changed or removed"
    return None


async def check_cades_archive(signed: cms.SignedData, signer_info: cms.SignerInfo,
                              content: bytes, context: ValidationContext
                              ) -> list[dt.datetime] | Verdict:
    """Every archive-time-stamp-v3 of ``signer_info`` (oldest first): their times, or
    the verdict of the first that fails.  ``content``: the signed content."""
    import hashlib

    from agent.formats.cades_archive import archive_imprint, archive_time_stamps

    times: list[dt.datetime] = []
    for token in archive_time_stamps(signer_info):
        token = cms.ContentInfo.load(token.dump())
        stored = stored_hash_index(token)
        md = token_digest_algorithm(token)
        if stored is None or md is None or md not in hashlib.algorithms_available:
            return Verdict.of(AdESFailure.FORMAT_FAILURE,
                              "an archive time-stamp or its hash index is unreadable")
        index, index_md, lists = stored
        missing = missing_from_index(signed, signer_info, index_md, lists)
        if missing is not None:
            return Verdict.of(AdESFailure.HASH_FAILURE, missing)
        imprint = archive_imprint(signed, signer_info, hashlib.new(md, content).digest(),
                                  index, md)
        result = await check_token(token, context, constant_imprint(imprint), "archive time-stamp")
        if isinstance(result, Verdict):
            return result
        times.append(result)
    return times
