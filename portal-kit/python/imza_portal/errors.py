"""The typed errors of login verification: the same codes in every language of the kit
(portal-kit/vectors/SCHEMA.md), so a portal maps each to its own message."""

from __future__ import annotations

from enum import Enum


class ErrorCode(str, Enum):  # noqa: UP042 - StrEnum is 3.11; the kit runs on 3.10
    """Listed in the order the verifier checks them; the first failing check wins."""

    MALFORMED = "MALFORMED"
    UNSUPPORTED_FORMAT = "UNSUPPORTED_FORMAT"
    CHALLENGE_UNKNOWN = "CHALLENGE_UNKNOWN"
    CHALLENGE_USED = "CHALLENGE_USED"
    CHALLENGE_EXPIRED = "CHALLENGE_EXPIRED"
    ALGORITHM_MISMATCH = "ALGORITHM_MISMATCH"
    SIGNATURE_INVALID = "SIGNATURE_INVALID"
    CERT_UNTRUSTED = "CERT_UNTRUSTED"
    CERT_EXPIRED = "CERT_EXPIRED"
    CERT_NOT_YET_VALID = "CERT_NOT_YET_VALID"
    CERT_NOT_FOR_AUTH = "CERT_NOT_FOR_AUTH"
    CERT_REVOKED = "CERT_REVOKED"
    REVOCATION_UNKNOWN = "REVOCATION_UNKNOWN"


class LoginError(Exception):
    """A login token was refused. ``code`` is for the program (map it to a message for
    the user); ``message`` is for the portal's log and never contains secrets."""

    def __init__(self, code: ErrorCode | str, message: str) -> None:
        self.code = ErrorCode(code)
        self.message = message
        super().__init__(f"{self.code.value}: {message}")
