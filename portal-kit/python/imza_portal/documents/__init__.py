"""Signing where the document stays on the server (the ``documents`` extra: pyHanko).

The portal prepares a PAdES or CAdES signature, the page asks the agent for ``sign.hash``
over the hash the portal gives it, and the portal finishes the signature (B-B, B-T with a
time-stamp, B-LT with validation data embedded). See DOCUMENTS.md for the sequence.
"""

from .errors import (
    CertificateMismatch,
    DocumentSigningError,
    InvalidCertificate,
    InvalidDocument,
    InvalidPendingState,
    SignatureMismatch,
    TimestampError,
    UnsupportedAlgorithm,
    UnsupportedLevel,
    ValidationDataError,
)
from .pending import PendingSignature
from .signer import DocumentSigner, SelectedCertificate
from .verify import SignatureReport, async_verify_pdf

__all__ = [
    "CertificateMismatch",
    "DocumentSigner",
    "DocumentSigningError",
    "InvalidCertificate",
    "InvalidDocument",
    "InvalidPendingState",
    "PendingSignature",
    "SelectedCertificate",
    "SignatureMismatch",
    "SignatureReport",
    "TimestampError",
    "UnsupportedAlgorithm",
    "UnsupportedLevel",
    "ValidationDataError",
    "async_verify_pdf",
]
