"""CAdES B-LT: a time-stamped detached signature plus the data that validates it later.

ETSI EN 319 122-1 §5.5 lets the validation data sit in the SignedData itself: every
certificate of the signer's and the time-stamping authority's paths in ``certificates``,
CRLs in ``crls``, OCSP responses there too as ``otherRevocationInfo``
(id-ri-ocsp-response, RFC 5940). pyHanko collects this data (its certificate validator,
hard-fail, fetching from the addresses in the certificates) but embeds it only into a
PDF's DSS; the few lines that put it into the CMS are written here with asn1crypto.
"""

from __future__ import annotations

from typing import Any

from asn1crypto import cms
from pyhanko.sign.general import extract_certificate_info
from pyhanko.sign.validation.generic_cms import extract_tst_data_iter
from pyhanko_certvalidator import CertificateValidator, ValidationContext

from .errors import ValidationDataError


async def _paths(signed_data: cms.SignedData, context: ValidationContext) -> list[Any]:
    """Validate the signer's certificate and each signature time-stamp's: with a
    hard-fail context this fetches (and caches in ``context``) their revocation data."""
    paths = []
    for data in (signed_data, *extract_tst_data_iter(signed_data["signer_infos"][0],
                                                     signed=False)):
        info = extract_certificate_info(data)
        validator = CertificateValidator(info.signer_cert, intermediate_certs=info.other_certs,
                                         validation_context=context)
        paths.append(await validator.async_validate_usage(key_usage=set()))
    return paths


async def add_validation_data(content: cms.ContentInfo,
                              context: ValidationContext) -> cms.ContentInfo:
    """``content`` (a B-T detached SignedData) with its validation data added. None of it
    is signed: the signature and its time-stamp stay valid."""
    signed = content["content"]
    try:
        paths = await _paths(signed, context)
    except Exception as exc:  # path building, OCSP/CRL fetching, a revoked certificate
        raise ValidationDataError(
            f"no validation data for the signer or the time-stamp ({type(exc).__name__}: "
            f"{exc})") from None
    certificates = list(signed["certificates"] or [])
    known = {c.chosen.dump() for c in certificates}
    for path in paths:
        for cert in path.iter_certs(include_root=True):
            if cert.dump() not in known:
                known.add(cert.dump())
                certificates.append(cms.CertificateChoices(name="certificate", value=cert))
    revocation = [cms.RevocationInfoChoice(name="crl", value=c) for c in context.crls]
    revocation += [cms.RevocationInfoChoice(name="other", value=cms.OtherRevocationInfoFormat(
        {"other_rev_info_format": "ocsp_response", "other_rev_info": o}))
        for o in context.ocsps]
    if not revocation:
        raise ValidationDataError("no OCSP response or CRL could be had for the signer")
    signed["certificates"] = certificates
    signed["crls"] = revocation
    if any(r.name == "other" for r in revocation):
        signed["version"] = "v5"  # RFC 5652 §5.1: other revocation info makes it version 5
    return cms.ContentInfo({"content_type": "signed_data", "content": signed})
