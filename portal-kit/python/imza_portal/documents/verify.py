"""A portal's check of a signed PDF, with pyHanko's validator against the portal's own
trust roots: every signature, what it covers, whether its certificate chains to a root,
its time-stamp, and — when the file carries validation data (B-LT) — whether that data
alone, with no network, proves the certificate was not revoked."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from io import BytesIO
from typing import Any

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.errors import NoDSSFoundError
from pyhanko_certvalidator import ValidationContext

from .errors import InvalidDocument

MAX_SIGNATURES = 20


@dataclass(frozen=True)
class SignatureReport:
    field: str
    signer: str  # RFC 4514 subject
    signer_serial_number: str  # the subject's serialNumber attribute, "" if none
    intact: bool  # the covered bytes hash to the signed digest
    valid: bool  # the signature value verifies
    trusted: bool  # the certificate chains to one of the trust roots
    whole_document: bool  # nothing but permitted updates (DSS, time-stamps) follows it
    timestamp: dt.datetime | None  # from a trusted TSA token (B-T and up)
    revocation_checked: bool  # trusted by the file's own OCSP/CRL data, offline (B-LT)
    level: str  # "B-B", "B-T" or "B-LT": what the checks above prove
    problem: str | None  # pyHanko's reason when not trusted / not ok
    ok: bool  # pyHanko's bottom line for this signature

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["timestamp"] = self.timestamp.isoformat() if self.timestamp else None
        return data


def _asn1(cert: x509.Certificate) -> Any:
    return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))


def _serial(subject: Any) -> str:
    value = subject.native.get("serial_number")
    return str(value) if value is not None else ""


async def async_verify_pdf(pdf: bytes, trust_roots: Sequence[x509.Certificate],
                           intermediates: Sequence[x509.Certificate] = ()
                           ) -> list[SignatureReport]:
    """One report per signature, in file order. Never fetches anything: revocation is
    judged on the data the file carries, which is what a B-LT signature promises."""
    try:
        reader = PdfFileReader(BytesIO(pdf), strict=False)
        signatures = list(reader.embedded_regular_signatures)
    except Exception as exc:  # pyHanko's PdfReadError and parser surprises
        raise InvalidDocument(f"not a readable PDF ({type(exc).__name__})") from None
    if len(signatures) > MAX_SIGNATURES:
        raise InvalidDocument(f"more than {MAX_SIGNATURES} signatures")
    roots = [_asn1(c) for c in trust_roots]
    helpers = [_asn1(c) for c in intermediates]
    try:
        dss: DocumentSecurityStore | None = DocumentSecurityStore.read_dss(reader)
    except NoDSSFoundError:
        dss = None
    reports = []
    for embedded in signatures:
        offline = ValidationContext(trust_roots=roots, other_certs=helpers,
                                    allow_fetching=False,
                                    revocation_mode="soft-fail")
        status = await async_validate_pdf_signature(embedded, offline,
                                                    ts_validation_context=offline)
        revocation_checked = False
        if dss is not None and status.trusted:
            strict = dss.as_validation_context({
                "trust_roots": roots, "other_certs": helpers, "allow_fetching": False,
                "revocation_mode": "hard-fail"})
            strict_status = await async_validate_pdf_signature(
                embedded, strict, ts_validation_context=strict)
            revocation_checked = bool(strict_status.trusted and strict_status.bottom_line)
        ts = status.timestamp_validity
        timestamp = ts.timestamp if ts is not None and ts.trusted and ts.valid else None
        level = ("B-LT" if revocation_checked and timestamp is not None
                 else "B-T" if timestamp is not None else "B-B")
        indic = status.trust_problem_indic
        coverage = getattr(status.coverage, "name", "")
        reports.append(SignatureReport(
            field=str(embedded.field_name),
            signer=status.signing_cert.subject.human_friendly,
            signer_serial_number=_serial(status.signing_cert.subject),
            intact=bool(status.intact), valid=bool(status.valid),
            trusted=bool(status.trusted),
            whole_document=coverage in ("ENTIRE_FILE", "ENTIRE_REVISION")
            and bool(status.docmdp_ok is not False),
            timestamp=timestamp, revocation_checked=revocation_checked, level=level,
            problem=getattr(indic, "name", None) if indic is not None else None,
            ok=bool(status.bottom_line)))
    return reports
