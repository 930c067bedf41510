"""What can go wrong between ``prepare`` and ``finish``, as types a portal can map to its
own messages. Every message is safe to log and to show: it never carries key material,
and the PIN never reaches the server at all."""

from __future__ import annotations


class DocumentSigningError(Exception):
    """Base class: the portal could not prepare, finish or check a signature."""

    code = "DOCUMENT_SIGNING"


class InvalidDocument(DocumentSigningError):
    """The PDF cannot be read or cannot take a signature (broken, encrypted, or its
    certification forbids further signatures)."""

    code = "INVALID_DOCUMENT"


class UnsupportedAlgorithm(DocumentSigningError):
    """The hash, the scheme or the certificate's key type is not one this kit signs with,
    or the key cannot sign with the pair the portal asked for."""

    code = "UNSUPPORTED_ALGORITHM"


class InvalidCertificate(DocumentSigningError):
    """The certificate from ``certificates.select`` is not a parseable X.509 certificate."""

    code = "INVALID_CERTIFICATE"


class InvalidPendingState(DocumentSigningError):
    """The state kept between prepare and finish is damaged, of another version, or has
    expired."""

    code = "INVALID_PENDING_STATE"


class CertificateMismatch(DocumentSigningError):
    """``sign.hash`` answered with another certificate than the one the signature was
    prepared for (the user picked another key, or the answer belongs elsewhere)."""

    code = "CERTIFICATE_MISMATCH"


class SignatureMismatch(DocumentSigningError):
    """The agent's raw signature does not verify over the prepared attributes with the
    prepared certificate's key."""

    code = "SIGNATURE_MISMATCH"


class TimestampError(DocumentSigningError):
    """The time-stamping service could not be reached or gave an unusable answer."""

    code = "TIMESTAMP_FAILED"


class ValidationDataError(DocumentSigningError):
    """B-LT: the certificate's path to the portal's trust roots, or its revocation status
    (OCSP/CRL), could not be established, so no validation data can be embedded."""

    code = "VALIDATION_DATA_FAILED"


class UnsupportedLevel(DocumentSigningError):
    """A level this kit does not make for that format (CAdES: B-B and B-T only), or one
    that needs a setting the signer lacks (B-T and B-LT need a TSA URL)."""

    code = "UNSUPPORTED_LEVEL"
