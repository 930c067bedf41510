"""The certificate checks of a login: a path to a configured anchor, validity at the
verification time, and key usage for authentication."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from .errors import ErrorCode, LoginError
from .name_constraints import check_name_constraints

MAX_PATH = 6  # certificates on a path, the end entity and the anchor included
# The critical extensions every verifier of the kit accepts (SCHEMA.md, the set the JDK's
# PKIX validator recognises); RFC 5280 4.2: a certificate with any other critical one
# must be rejected.
RECOGNISED_CRITICAL = frozenset({
    ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE, ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME, ExtensionOID.NAME_CONSTRAINTS,
    ExtensionOID.CERTIFICATE_POLICIES, ExtensionOID.POLICY_MAPPINGS,
    ExtensionOID.POLICY_CONSTRAINTS, ExtensionOID.INHIBIT_ANY_POLICY})


def unrecognised_critical(cert: x509.Certificate) -> bool:
    return any(e.critical and e.oid not in RECOGNISED_CRITICAL for e in cert.extensions)


def issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    """``issuer``'s name and key made ``child`` (the signature is checked)."""
    if child.issuer != issuer.subject:
        return False
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def may_issue(candidate: x509.Certificate, below: Sequence[x509.Certificate]) -> bool:
    """Whether ``candidate``, taken from the token's chain, may be the CA over ``below``
    (the path so far: the end entity, then the CAs under ``candidate``), as RFC 5280 6.1.4
    has it: basicConstraints cA, keyCertSign when a keyUsage is present, no more CAs under
    it (self-issued ones aside) than its pathLenConstraint allows, and no critical
    extension outside ``RECOGNISED_CRITICAL``."""
    if unrecognised_critical(candidate):
        return False
    try:
        constraints = candidate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not constraints.ca:
        return False
    try:
        usage = candidate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.key_cert_sign:
        return False
    cas_below = sum(1 for ca in below[1:] if ca.subject != ca.issuer)
    return constraints.path_length is None or cas_below <= constraints.path_length


def build_path(cert: x509.Certificate, chain: Sequence[x509.Certificate],
               anchors: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """``[cert, issuer, ..., anchor]``; CERT_UNTRUSTED when there is none. Issuers from
    ``chain`` must be allowed to issue (``may_issue``); the anchor is trusted as
    configured (its own extensions are not judged). The path found must then meet the
    name constraints of its CAs (CERT_UNTRUSTED, no other path is sought: the Java kit
    leaves them to the JDK's validator over the path its search found)."""

    def extend(path: list[x509.Certificate]) -> list[x509.Certificate] | None:
        current = path[-1]
        if current in anchors:  # the chain carried an anchor itself
            return path
        for anchor in anchors:
            if len(path) < MAX_PATH and issued_by(current, anchor):
                return [*path, anchor]
        if len(path) >= MAX_PATH - 1:
            return None
        for candidate in chain:
            if (candidate not in path and may_issue(candidate, path)
                    and issued_by(current, candidate)):
                found = extend([*path, candidate])
                if found is not None:
                    return found
        return None

    # The end entity's extensions are judged unless it is an anchor itself (pinned).
    if cert not in anchors and unrecognised_critical(cert):
        raise LoginError(ErrorCode.CERT_UNTRUSTED,
                         f"{cert.subject.rfc4514_string()} has a critical extension no "
                         "verifier of the kit recognises")
    path = extend([cert])
    if path is None:
        raise LoginError(ErrorCode.CERT_UNTRUSTED,
                         f"no path from {cert.subject.rfc4514_string()} to a trusted root")
    check_name_constraints(path)
    return path


def check_validity(path: Sequence[x509.Certificate], now: dt.datetime) -> None:
    """The end entity first, then up the path to the anchor."""
    for cert in path:
        if now < cert.not_valid_before_utc:
            raise LoginError(ErrorCode.CERT_NOT_YET_VALID,
                             f"{cert.subject.rfc4514_string()} is valid only from "
                             f"{cert.not_valid_before_utc.isoformat()}")
        if now > cert.not_valid_after_utc:
            raise LoginError(ErrorCode.CERT_EXPIRED,
                             f"{cert.subject.rfc4514_string()} expired on "
                             f"{cert.not_valid_after_utc.isoformat()}")


def check_authentication_usage(cert: x509.Certificate) -> None:
    """keyUsage, when present, must allow digitalSignature; extendedKeyUsage, when present,
    must list clientAuth (absent extensions do not restrict, RFC 5280 4.2.1.3/4.2.1.12)."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.digital_signature:
        raise LoginError(ErrorCode.CERT_NOT_FOR_AUTH,
                         "the certificate's key usage does not allow digitalSignature "
                         "(a signing certificate?)")
    try:
        extended = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if ExtendedKeyUsageOID.CLIENT_AUTH not in extended:
        raise LoginError(ErrorCode.CERT_NOT_FOR_AUTH,
                         "the certificate's extended key usage lacks clientAuth")
