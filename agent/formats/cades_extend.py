"""A CAdES signature raised to a higher baseline level without its key (issue 14 §2):
``extend_cades_here`` is what ``signature.extend`` runs in a document worker for CMS.

* "T": a signature time-stamp for every SignerInfo that has none;
* "LT": that, plus the validation data of every signer and of the TSAs of their
  signature time-stamps (``cades.validation_data_of``, embedded as B-LT does);
* "LTA": that, plus an archive-time-stamp-v3 per SignerInfo (``cades_archive``).  On a
  signature that has archive time-stamps already this is the renewal: the validation data
  of the last archive time-stamp's TSA is added, then a new archive time-stamp covers it
  (before that TSA's certificate expires, the signature stays provable).

Every signer is extended: each SignerInfo is a signature of its own (EN 319 122-1).
"""

from __future__ import annotations

import hashlib

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509

from agent.errors import Unsupported
from agent.formats import cades_archive as archive
from agent.formats import cades_signers as signers
from agent.formats.cades import embed_validation_data, validation_data_of
from agent.formats.cades_order import keep_order
from agent.formats.job import KeylessJob
from agent.formats.signer_adapter import checked_digest_name
from agent.formats.timestamps import GuardedTimeStamper

LEVELS = ("T", "LT", "LTA")


async def add_archive_time_stamp(content: cms.ContentInfo, index: int, content_hash: bytes,
                                 md: str, stamper: GuardedTimeStamper) -> cms.ContentInfo:
    """An archive-time-stamp-v3 on SignerInfo ``index``; ``content_hash`` is the signed
    content's hash with ``md`` (the time-stamp's and the hash index's algorithm)."""
    # Encoded and read back: the index and the imprint are over the bytes as they will
    # be, in their encoded order.
    content = keep_order(cms.ContentInfo.load(keep_order(content).dump()))
    signed = content["content"]
    signer_info = signed["signer_infos"][index]
    index_value = archive.hash_index(signed, signer_info, md)
    imprint = archive.archive_imprint(signed, signer_info, content_hash, index_value, md)
    token = await stamper.async_timestamp(imprint, md)
    archive.add_unsigned(signer_info, archive.ARCHIVE_TIME_STAMP_V3,
                         archive.with_hash_index(token, index_value))
    return keep_order(content)


def _signing_certificate(signed: cms.SignedData,
                         signer_info: cms.SignerInfo) -> asn1_x509.Certificate:
    sid = signer_info["sid"]
    for choice in signed["certificates"] or []:
        if choice.name != "certificate":
            continue
        cert = choice.chosen
        if sid.name == "issuer_and_serial_number":
            if (cert.issuer == sid.chosen["issuer"]
                    and cert.serial_number == sid.chosen["serial_number"].native):
                return cert
        elif cert.key_identifier == sid.chosen.native:
            return cert
    raise signers.refused("the signature does not carry its signer's certificate",
                          "NO_SIGNER_CERTIFICATE")


def _signature_timestamp(signer_info: cms.SignerInfo) -> cms.ContentInfo | None:
    for attribute in signer_info["unsigned_attrs"] or []:
        if attribute["type"].native == "signature_time_stamp_token":
            token: cms.ContentInfo = attribute["values"][0]
            return token
    return None


def _content_hash(existing: signers.ExistingSignature, data_digest: bytes | None,
                  digest_algorithm: str | None) -> tuple[bytes, str]:
    """The signed content's hash for the archive time-stamp, checked against a signer's
    message-digest (a wrong one would make an archive time-stamp that proves nothing)."""
    if data_digest is not None:
        if digest_algorithm is None:
            raise signers.refused("give the hash's algorithm", "DIGEST_ALGORITHM")
        md = checked_digest_name(digest_algorithm)
        return signers.check_covered_content(existing, None, data_digest, md), md
    first = existing.signer_infos[0]["digest_algorithm"]["algorithm"].native
    md = checked_digest_name(digest_algorithm or first)
    return signers.check_covered_content(existing, None, None, md), md


async def extend_cades_here(job: KeylessJob, signature: bytes, level: str,
                            data_digest: bytes | None,
                            digest_algorithm: str | None) -> bytes:
    """The signature at ``level`` ("T", "LT", "LTA"); ``data_digest`` (with
    ``digest_algorithm``) is the detached content's hash, needed for "LTA" only (an
    attached signature carries its content)."""
    if level not in LEVELS:
        raise Unsupported(f"a CAdES signature cannot be extended to {level}")
    if job.tsa_url is None:
        raise Unsupported("extending a signature needs a time-stamping service")
    existing = signers.load_signature(signature)
    content_hash, md = (_content_hash(existing, data_digest, digest_algorithm)
                        if level == "LTA" else (b"", "sha256"))
    content = existing.content
    async with job.network.session() as session:
        stamper = GuardedTimeStamper(job.tsa_url, job.network, session)
        signed = content["content"]
        for signer_info in signed["signer_infos"]:
            if _signature_timestamp(signer_info) is None:
                algorithm = checked_digest_name(
                    signer_info["digest_algorithm"]["algorithm"].native)
                value: bytes = signer_info["signature"].native
                token = await stamper.async_timestamp(
                    hashlib.new(algorithm, value).digest(), algorithm)
                archive.add_unsigned(signer_info, "signature_time_stamp_token", token)
        if level == "T":
            return bytes(keep_order(content).dump())
        infos = list(signed["signer_infos"])
        tokens = []
        for signer_info in infos:
            last_archive = archive.archive_time_stamps(signer_info)[-1:]
            if level == "LTA" and last_archive:
                tokens += last_archive  # the renewal: data for the last archive TSA
            else:
                tokens.append(_signature_timestamp(signer_info))
        certificates = [_signing_certificate(signed, i) for i in infos]
        helpers = signers.as_crypto_certificates(signed)
        validation = await validation_data_of(job.anchors, job.network, session,
                                              certificates, helpers, tokens)
        content = embed_validation_data(content, validation)
        if level == "LTA":
            for position in range(len(infos)):
                content = await add_archive_time_stamp(content, position, content_hash, md,
                                                       stamper)
    return bytes(keep_order(content).dump())
