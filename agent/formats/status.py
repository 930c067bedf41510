"""The signer's certificate status, checked before the user is asked to sign.

``[formats] revocation``:

* ``off`` — no check beyond the validity dates the core always checks;
* ``warn`` — build a path to the configured trust anchors and ask OCSP, then the CRL;
  a revoked or expired certificate is refused, an unknown status only logged;
* ``enforce`` — as ``warn``, but a certificate without a path to a trust anchor is
  CERTIFICATE_INVALID and a status nobody could tell is NETWORK.
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
    PathBuildingError,
    PathValidationError,
    RevokedError,
)

from agent.errors import CertificateInvalid, NetworkError
from agent.formats.network import NetworkSettings
from agent.formats.revocation import Anchors, to_asn1, validation_context

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
    async with settings.session() as session:
        context = validation_context(anchors, chain, session, settings, hard_fail=enforce)
        validator = CertificateValidator(to_asn1(cert), validation_context=context)
        try:
            await validator.async_validate_path()
        except RevokedError:
            raise CertificateInvalid("the signer's certificate is revoked",
                                     detail="REVOKED") from None
        except ExpiredError:
            raise CertificateInvalid(detail="EXPIRED") from None
        except NotYetValidError:
            raise CertificateInvalid(detail="NOT_YET_VALID") from None
        except InsufficientRevinfoError:
            if enforce:
                raise NetworkError("the signer's revocation status could not be obtained",
                                   service="REVOCATION") from None
            log.warning("signer revocation status unknown; signing anyway (warn mode)")
        except PathBuildingError:
            if enforce:
                raise CertificateInvalid("no path to a trust anchor",
                                         detail="UNTRUSTED") from None
            log.warning("signer certificate has no path to a trust anchor (warn mode)")
        except PathValidationError as exc:
            if enforce:
                raise CertificateInvalid("the certificate path is not valid",
                                         detail="INVALID_PATH") from None
            log.warning("signer certificate path invalid (%s); warn mode", type(exc).__name__)
