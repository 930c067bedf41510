"""The demo portal's check of a signed declaration: a detached CAdES signature (``sign.cms``)
over the document the portal composed and kept.

The cryptography, the certificate path and the signing-certificate attribute are checked
by pyHanko's validator, not by code of ours: a relying party should lean on a well-kept,
audited CMS/AdES implementation (ASN.1 parsing, signed attributes, path building, key
usage, time-stamp tokens are easy to get subtly wrong). What stays ours is the portal's
own policy: which CAs it trusts, which document it expects, what level it asked for.

Like verify.py, nothing here comes from the agent: copy both files together.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.sign.general import SignedDataCerts, extract_certificate_info
from pyhanko.sign.validation import async_validate_detached_cms
from pyhanko.sign.validation.settings import KeyUsageConstraints
from pyhanko.sign.validation.status import StandardCMSSignatureStatus
from pyhanko_certvalidator import ValidationContext

from .verify import Rejected

MAX_CMS = 1024 * 1024  # a CAdES-B-LT with a long chain is tens of kB; more is abuse

# A declaration is a legally binding statement: only a qualified-signature style
# (nonRepudiation) key may make one, never the authentication key used to log in.
SIGNING_USAGE = KeyUsageConstraints(key_usage={"non_repudiation"}, match_all_key_usages=True)


@dataclass(frozen=True)
class SignedDeclaration:
    """What the portal learnt from an accepted signature."""

    signer: x509.Certificate
    signing_time: dt.datetime | None  # the signer's claim (signed attribute), not proof
    timestamp: dt.datetime | None  # from a TSA's token (level T), which is proof


def _signed_data(cms_b64: object) -> cms.SignedData:
    if not isinstance(cms_b64, str):
        raise Rejected("the signature (cms) is missing")
    if len(cms_b64) > MAX_CMS * 4 // 3 + 4:
        raise Rejected("the signature is too large")
    try:
        info = cms.ContentInfo.load(base64.b64decode(cms_b64, validate=True))
        if info["content_type"].native != "signed_data":
            raise ValueError
        signed: cms.SignedData = info["content"]
        if len(signed["signer_infos"]) != 1:
            raise Rejected("exactly one signer expected")
        signed.native  # noqa: B018 - parses everything now, so bad DER fails here, not later
    except (ValueError, TypeError, binascii.Error):
        raise Rejected("the signature is not a CMS SignedData") from None
    if signed["encap_content_info"]["content"].native is not None:
        raise Rejected("the signature must be detached")  # what we ask the agent for
    return signed


def validation_context(anchors: Sequence[x509.Certificate],
                       signed: cms.SignedData | None = None) -> ValidationContext:
    """Trust exactly the portal's anchors. Intermediates may come from the CMS itself.

    Revocation: soft-fail without fetching suits the demo CA, which publishes no CRL or
    OCSP; a production portal sets ``allow_fetching=True, revocation_mode="hard-fail"``.
    """
    others: list[asn1_x509.Certificate] = []
    if signed is not None:
        info: SignedDataCerts = extract_certificate_info(signed)
        others = list(info.other_certs)
    roots = [asn1_x509.Certificate.load(a.public_bytes(Encoding.DER)) for a in anchors]
    return ValidationContext(trust_roots=roots, other_certs=others, allow_fetching=False,
                             revocation_mode="soft-fail")


def _has_non_repudiation(cert: asn1_x509.Certificate) -> bool:
    usage = cert.key_usage_value
    return usage is not None and "non_repudiation" in usage.native


async def _validate(document: bytes, signed: cms.SignedData,
                    anchors: Sequence[x509.Certificate]) -> StandardCMSSignatureStatus:
    context = validation_context(anchors, signed)
    return await async_validate_detached_cms(document, signed,
                                             signer_validation_context=context,
                                             key_usage_settings=SIGNING_USAGE)


def verify_declaration_cms(cms_b64: object, *, document: bytes,
                           anchors: Sequence[x509.Certificate],
                           require_timestamp: bool = False) -> SignedDeclaration:
    """Accept ``cms_b64`` only as an intact, valid, trusted signature over ``document``
    (the bytes the portal composed and kept, never anything the browser sends) by a
    nonRepudiation certificate. Messages of ``Rejected`` are safe to show."""
    signed = _signed_data(cms_b64)
    try:
        # The portal serves requests on threads without an event loop of their own.
        status = asyncio.run(_validate(document, signed, anchors))
    except Exception as exc:  # pyHanko's SignatureValidationError and ASN.1 surprises
        raise Rejected(f"the signature cannot be validated ({type(exc).__name__})") from None
    if not status.intact:
        # message-digest ≠ hash of what we issued: signed over some other document
        raise Rejected("the signature is not over the declaration this portal issued")
    if not status.valid:
        raise Rejected("the signature does not verify")
    if not _has_non_repudiation(status.signing_cert):
        raise Rejected("the certificate is not a signing (nonRepudiation) certificate")
    if not status.trusted:
        indication = status.trust_problem_indic
        reason = getattr(indication, "name", None) or "unknown"
        if reason == "NO_CERTIFICATE_CHAIN_FOUND":
            raise Rejected("the certificate is not issued by a CA this portal trusts")
        raise Rejected(f"the certificate is not acceptable ({reason})")
    timestamp = status.timestamp_validity
    if require_timestamp and timestamp is None:
        raise Rejected("a signature time-stamp (CAdES-B-T) is required")
    if timestamp is not None and not (timestamp.intact and timestamp.valid
                                      and timestamp.trusted):
        raise Rejected("the signature time-stamp is not valid or not trusted")
    if not status.bottom_line:  # anything pyHanko objects to that the above did not name
        raise Rejected("the signature is not acceptable")
    return SignedDeclaration(
        signer=x509.load_der_x509_certificate(status.signing_cert.dump()),
        signing_time=status.signer_reported_dt,
        timestamp=timestamp.timestamp if timestamp is not None else None)
