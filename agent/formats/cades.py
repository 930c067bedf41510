"""CAdES baseline signatures (ETSI EN 319 122-1): detached CMS SignedData.

* B-B: signed attributes content-type, message-digest, signing-time and
  signing-certificate-v2 (pyHanko's CAdES attribute set);
* B-T: plus a signature time-stamp (RFC 3161) over the signature value, as an unsigned
  attribute;
* B-LT: plus the validation data — every certificate of the signer's and the TSA's paths
  in ``SignedData.certificates``, CRLs in ``SignedData.crls`` and OCSP responses there
  as ``otherRevocationInfo`` (id-ri-ocsp-response, RFC 5940), as EN 319 122-1 §5.5
  allows.  pyHanko has no non-PDF B-LT, so this part is ours, with asn1crypto.

The TSA and the revocation services are asked *before* the PIN dialog, so a dead service
fails the request without making the user sign for nothing; B-LT's embedded OCSP and CRLs
are then fetched again *after* the time-stamp, for the certificate that signed the real
token (a trial token's TSA may not be the one that answers next).
"""

from __future__ import annotations

import logging
from typing import Any

from asn1crypto import cms

from agent.errors import NetworkError
from agent.formats.job import FormatJob
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


async def build_cades_here(job: FormatJob, data_digest: bytes, digest_algorithm: str,
                           level: str) -> bytes:
    """``build_cades`` in this process: what a document worker runs."""
    md = checked_digest_name(digest_algorithm)
    signer = JobSigner(job)
    async with job.network.session() as session:
        stamper = None
        if level in ("T", "LT"):
            assert job.tsa_url is not None
            stamper = GuardedTimeStamper(job.tsa_url, job.network, session)
            trial = await stamper.preflight(md)
            if level == "LT":
                # Before the user is asked: a dead responder costs no PIN entry.  What
                # this gathers is thrown away — it predates the signature.
                await validation_data_for(job, session, trial)
        content = await signer.async_sign(
            data_digest, md, use_pades=True, is_pdf_sig=False, timestamper=stamper,
            encap_content_info={"content_type": "data"})
        validation = None
        if level == "LT":
            # After the time-stamp, for the TSA that signed *this* token (one URL may be
            # served by several TSA certificates): OCSP responses newer than the
            # signature, and none missing.
            validation = await validation_data_for(job, session, signature_timestamp(content))
    if validation is not None:
        content = embed_validation_data(content, validation)
    der: bytes = content.dump()
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
    tsa = token_signer(token)
    if not tsa:
        # A token whose signer is not among its certificates: its data cannot be had.
        log.warning("time-stamp token carries no certificate of its signer")
        raise NetworkError("validation data (OCSP/CRL) could not be gathered",
                           service="REVOCATION")
    extra = [*job.chain, *as_crypto(token_certificates(token))]
    context = validation_context(job.anchors, extra, session, job.network, hard_fail=True)

    async def issuer_ocsp(cert: Any, path: Any) -> Any:
        return await ocsp_from_issuer_responder(
            cert, path,
            lambda ocsps: validation_context(job.anchors, extra, session, job.network,
                                             hard_fail=True, ocsps=ocsps),
            session, job.network)

    return await collect_validation_data(context, [to_asn1(job.certificate), *tsa],
                                         issuer_ocsp=issuer_ocsp)


def embed_validation_data(content: cms.ContentInfo,
                          data: ValidationData) -> cms.ContentInfo:
    """Add certificates, CRLs and OCSP responses to an existing SignedData; none of it is
    signed, so the signature stays valid."""
    signed = content["content"]
    known = {c.chosen.dump() for c in signed["certificates"]}
    certs = list(signed["certificates"])
    for cert in data.certificates:
        if cert.dump() not in known:
            known.add(cert.dump())
            certs.append(cms.CertificateChoices(name="certificate", value=cert))
    revocation = [cms.RevocationInfoChoice(name="crl", value=c) for c in data.crls]
    revocation += [cms.RevocationInfoChoice(name="other", value=cms.OtherRevocationInfoFormat(
        {"other_rev_info_format": "ocsp_response", "other_rev_info": o}))
        for o in data.ocsps]
    signed["certificates"] = certs
    if revocation:
        signed["crls"] = revocation
        if data.ocsps:
            signed["version"] = "v5"  # RFC 5652 §5.1: other revocation info → version 5
    return cms.ContentInfo({"content_type": "signed_data", "content": signed})
