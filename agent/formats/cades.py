"""CAdES baseline signatures (ETSI EN 319 122-1): detached CMS SignedData.

* B-B: signed attributes content-type, message-digest, signing-time and
  signing-certificate-v2 (pyHanko's CAdES attribute set);
* B-T: plus a signature time-stamp (RFC 3161) over the signature value, as an unsigned
  attribute;
* B-LT: plus the validation data — every certificate of the signer's and the TSA's paths
  in ``SignedData.certificates``, CRLs in ``SignedData.crls`` and OCSP responses there
  as ``otherRevocationInfo`` (id-ri-ocsp-response, RFC 5940), as EN 319 122-1 §5.5
  allows.  pyHanko has no non-PDF B-LT, so this part is ours, with asn1crypto;
* B-LTA: plus an archive-time-stamp-v3 (``cades_archive``).

Given an existing signature (``signature``), the new SignerInfo is added to it as a
parallel signer or, with ``counter_sign``, as a countersignature (``cades_signers``).

The TSA and the revocation services are asked *before* the PIN dialog, so a dead service
fails the request without making the user sign for nothing; B-LT's embedded OCSP and CRLs
are then fetched again *after* the time-stamp, for the certificate that signed the real
token (a trial token's TSA may not be the one that answers next).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509

from agent.errors import NetworkError
from agent.formats import cades_signers as signers
from agent.formats.anchors import Anchors
from agent.formats.cades_order import keep_order
from agent.formats.job import FormatJob
from agent.formats.network import NetworkSettings
from agent.formats.revocation import (
    ValidationData,
    as_crypto,
    collect_validation_data,
    ocsp_from_issuer_responder,
    to_asn1,
    validation_context,
)
from agent.formats.signer_adapter import JobSigner, checked_digest_name
from agent.formats.timestamps import GuardedTimeStamper, token_certificates, token_signer

log = logging.getLogger(__name__)

TIME_STAMPED = ("T", "LT", "LTA")
WITH_VALIDATION_DATA = ("LT", "LTA")


async def build_cades_here(job: FormatJob, data_digest: bytes | None, digest_algorithm: str,
                           level: str, *, signature: bytes | None = None,
                           data: bytes | None = None,
                           counter_sign: int | None = None) -> bytes:
    """``build_cades`` in this process: what a document worker runs.

    ``signature``: a page's SignedData to add a parallel signer to (over ``data`` or
    ``data_digest``, or its own content when attached) or, with ``counter_sign``, to
    countersign signer ``counter_sign`` of."""
    md = checked_digest_name(digest_algorithm)
    existing = signers.load_signature(signature) if signature is not None else None
    content_type = "data"
    if existing is not None:
        content_type = existing.content_type
        if counter_sign is not None:
            data_digest = signers.countersignature_digest(existing, counter_sign, md)
        else:
            data_digest = signers.check_covered_content(existing, data, data_digest, md)
    assert data_digest is not None  # sign.cms gives one unless it gives a signature
    signer = JobSigner(job)
    async with job.network.session() as session:
        stamper = None
        if level in TIME_STAMPED:
            assert job.tsa_url is not None
            stamper = GuardedTimeStamper(job.tsa_url, job.network, session)
            trial = await stamper.preflight(md)
            if level in WITH_VALIDATION_DATA:
                # Before the user is asked: a dead responder costs no PIN entry.  What
                # this gathers is thrown away — it predates the signature.
                await validation_data_for(job, session, trial)
        if counter_sign is not None:
            # The signed attributes are built here, not in pyHanko's async_sign (no
            # content-type in a countersignature); JobSigner.signed_attrs has the user
            # confirm first, so the signing-time is the time they signed (D3).
            attributes = await signer.signed_attrs(data_digest, md, use_pades=True,
                                                   is_pdf_sig=False)
            content = await signer.async_sign_prescribed_attributes(
                md, signers.without_content_type(attributes), timestamper=stamper)
        else:
            content = await signer.async_sign(
                data_digest, md, use_pades=True, is_pdf_sig=False, timestamper=stamper,
                encap_content_info={"content_type": content_type})
        validation = None
        if level in WITH_VALIDATION_DATA:
            # After the time-stamp, for the TSA that signed *this* token (one URL may be
            # served by several TSA certificates): OCSP responses newer than the
            # signature, and none missing.
            validation = await validation_data_for(job, session, signature_timestamp(content))
        # Where the new SignerInfo ends up: after the existing ones (a countersignature
        # is inside one of them).
        new_index = len(existing.signer_infos) if existing is not None else 0
        if existing is not None:
            content = (signers.add_countersignature(existing, counter_sign, content)
                       if counter_sign is not None else signers.add_parallel(existing, content))
        if validation is not None:
            content = embed_validation_data(content, validation)
        if level == "LTA":
            from agent.formats.cades_extend import add_archive_time_stamp

            assert counter_sign is None  # the params refuse LTA for a countersignature
            assert stamper is not None
            content = await add_archive_time_stamp(content, new_index, data_digest, md,
                                                   stamper)
    der: bytes = keep_order(content).dump()
    return der


def signature_timestamp(content: cms.ContentInfo) -> cms.ContentInfo:
    """The signature time-stamp token in the first SignerInfo's unsigned attributes."""
    return signer_info_timestamp(content["content"]["signer_infos"][0])


def signer_info_timestamp(signer_info: cms.SignerInfo) -> cms.ContentInfo:
    """The signature time-stamp token among a SignerInfo's unsigned attributes."""
    for attribute in signer_info["unsigned_attrs"] or []:
        if attribute["type"].native == "signature_time_stamp_token":
            token: cms.ContentInfo = attribute["values"][0]
            return token
    raise NetworkError("the time-stamping service failed", service="TSA")


async def validation_data_for(job: FormatJob, session: Any,
                              token: cms.ContentInfo) -> ValidationData:
    """The signer's and the token's TSA's validation data, each asked for anew (a fresh
    context caches nothing from an earlier call)."""
    return await validation_data_of(job.anchors, job.network, session,
                                    [to_asn1(job.certificate)], job.chain, [token])


async def validation_data_of(anchors: Anchors, network: NetworkSettings, session: Any,
                             certificates: Sequence[asn1_x509.Certificate],
                             helpers: Sequence[x509.Certificate],
                             tokens: Sequence[cms.ContentInfo]) -> ValidationData:
    """The validation data of ``certificates`` and of the TSAs that signed ``tokens``
    (``helpers``: other certificates to build their paths with)."""
    tsas: list[asn1_x509.Certificate] = []
    extra = list(helpers)
    for token in tokens:
        tsa = token_signer(token)
        if not tsa:
            # A token whose signer is not among its certificates: its data cannot be had.
            log.warning("time-stamp token carries no certificate of its signer")
            raise NetworkError("validation data (OCSP/CRL) could not be gathered",
                               service="REVOCATION")
        tsas += tsa
        extra += as_crypto(token_certificates(token))
    context = validation_context(anchors, extra, session, network, hard_fail=True)

    async def issuer_ocsp(cert: Any, path: Any) -> Any:
        return await ocsp_from_issuer_responder(
            cert, path,
            lambda ocsps: validation_context(anchors, extra, session, network,
                                             hard_fail=True, ocsps=ocsps),
            session, network)

    return await collect_validation_data(context, [*certificates, *tsas],
                                         issuer_ocsp=issuer_ocsp)


def embed_validation_data(content: cms.ContentInfo,
                          data: ValidationData) -> cms.ContentInfo:
    """Add certificates, CRLs and OCSP responses to an existing SignedData; none of it is
    signed, so the signature stays valid.  What is there already keeps its encoding and
    place (an archive time-stamp's hash index names it)."""
    signed = keep_order(content)["content"]  # before anything re-encodes (and sorts) it
    certs = list(signed["certificates"] or [])
    known = {c.chosen.dump() for c in certs}
    for cert in data.certificates:
        if cert.dump() not in known:
            known.add(cert.dump())
            certs.append(cms.CertificateChoices(name="certificate", value=cert))
    revocation = list(signed["crls"] or [])
    present = {r.dump() for r in revocation}
    added = [cms.RevocationInfoChoice(name="crl", value=c) for c in data.crls]
    added += [cms.RevocationInfoChoice(name="other", value=cms.OtherRevocationInfoFormat(
        {"other_rev_info_format": "ocsp_response", "other_rev_info": o}))
        for o in data.ocsps]
    revocation += [r for r in added if r.dump() not in present]
    signed["certificates"] = certs
    if revocation:
        signed["crls"] = revocation
        if any(r.name == "other" for r in revocation):
            signed["version"] = "v5"  # RFC 5652 §5.1: other revocation info → version 5
    return keep_order(cms.ContentInfo({"content_type": "signed_data", "content": signed}))
