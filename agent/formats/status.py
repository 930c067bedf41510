"""The signer's certificate status, checked before the user is asked to sign.

``[formats] revocation``:

* ``off`` — no check beyond the validity dates the core always checks (no network);
* ``warn`` — build a path to the configured trust anchors and ask OCSP, then the CRL;
  a revoked or expired certificate is refused, a status nobody could tell only logged;
* ``enforce`` — as ``warn``, but a certificate without a path to a trust anchor, or one
  naming no OCSP/CRL service whose issuer has no configured responder, is
  CERTIFICATE_INVALID, and a status the services could not tell is NETWORK.

OCSP is asked of the responder configured for the issuing CA (``ocsp_by_issuer``), else
of the one in the certificate's AIA.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from cryptography import x509
from pyhanko_certvalidator import CertificateValidator
from pyhanko_certvalidator.errors import (
    ExpiredError,
    InsufficientRevinfoError,
    NotYetValidError,
    OCSPValidationError,
    PathBuildingError,
    PathValidationError,
    RevokedError,
)
from pyhanko_certvalidator.util import get_declared_revinfo

from agent.errors import CertificateInvalid, NetworkError
from agent.formats.anchors import Anchors
from agent.formats.network import NetworkSettings
from agent.formats.revocation import (
    ocsp_from_issuer_responder,
    to_asn1,
    validation_context,
)

log = logging.getLogger(__name__)


async def check_signer(cert: x509.Certificate, chain: Sequence[x509.Certificate],
                       anchors: Anchors, settings: NetworkSettings, mode: str) -> None:
    """Raise CERTIFICATE_INVALID (``data.detail``) or NETWORK, or return."""
    if mode == "off":
        return
    enforce = mode == "enforce"
    if not anchors.roots:
        if enforce:
            raise CertificateInvalid("no trust anchors are configured", detail="UNTRUSTED")
        log.warning("signer status not checked: no [formats] trust_anchors configured")
        return
    signer = to_asn1(cert)
    async with settings.session() as session:
        # Soft-fail under warn, so an unreachable service for an intermediate does not
        # stop the signer's own status from being asked; what was skipped is logged.
        context = validation_context(anchors, chain, session, settings, hard_fail=enforce)
        try:
            path = await CertificateValidator(signer, validation_context=context
                                              ).async_validate_path()
            from_issuer = await ocsp_from_issuer_responder(
                signer, path,
                lambda ocsps: validation_context(anchors, chain, session, settings,
                                                 hard_fail=True, ocsps=ocsps),
                session, settings)
        except RevokedError:
            raise CertificateInvalid("the signer's certificate is revoked",
                                     detail="REVOKED") from None
        except ExpiredError:
            raise CertificateInvalid(detail="EXPIRED") from None
        except NotYetValidError:
            raise CertificateInvalid(detail="NOT_YET_VALID") from None
        except (InsufficientRevinfoError, OCSPValidationError) as exc:
            if enforce:
                raise NetworkError("the signer's revocation status could not be obtained",
                                   service="REVOCATION") from None
            log.warning("signer revocation status unknown (%s); signing anyway (warn mode)",
                        type(exc).__name__)
            return
        except PathBuildingError:
            if enforce:
                raise CertificateInvalid("no path to a trust anchor",
                                         detail="UNTRUSTED") from None
            log.warning("signer certificate has no path to a trust anchor (warn mode)")
            return
        except PathValidationError as exc:
            if enforce:
                raise CertificateInvalid("the certificate path is not valid",
                                         detail="INVALID_PATH") from None
            log.warning("signer certificate path invalid (%s); warn mode", type(exc).__name__)
            return
        if context.soft_fail_exceptions:
            log.warning("signer revocation status unknown (%s); signing anyway (warn mode)",
                        type(context.soft_fail_exceptions[0]).__name__)
            return
    has_crl, has_ocsp = get_declared_revinfo(signer)
    if from_issuer is None and not (has_crl or has_ocsp):
        # Nothing could have said "revoked": under enforce that is no status at all.
        if enforce:
            raise CertificateInvalid("the signer's certificate names no OCSP or CRL service",
                                     detail="NO_REVOCATION_INFO")
        log.warning("signer certificate names no OCSP or CRL service; signing anyway "
                    "(warn mode)")
