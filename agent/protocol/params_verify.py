"""``signature.verify`` parameters and result (kept apart: the verification work owns
this file).  The result is what a document worker reported, checked against these models
before the page sees it: a worker has read a hostile document."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from agent.protocol.base import WireModel
from agent.protocol.fields import B64Bytes, B64Document

Text = Field(None, max_length=400)


class VerifyFormat(StrEnum):
    CMS = "cms"
    PDF = "pdf"
    XML = "xml"
    ASIC = "asic"


class Indication(StrEnum):
    TOTAL_PASSED = "TOTAL-PASSED"
    INDETERMINATE = "INDETERMINATE"
    TOTAL_FAILED = "TOTAL-FAILED"


class SignatureVerifyParams(WireModel):
    signature: B64Document = Field(
        description="The signed file: a CMS (CAdES) signature, a signed PDF, a signed "
                    "XML document or an ASiC-E container.")
    data: B64Document | None = Field(
        None, description="The signed content of a detached CMS signature.")
    format: VerifyFormat | None = Field(
        None, description="absent: detected from the file (an ASiC-E mimetype entry, a PDF "
                    "header, XML, else DER)")


class SignerFacts(WireModel):
    common_name: str | None = Field(None, max_length=400)
    subject_serial_number: str | None = Field(None, max_length=400)
    subject: str = Field(max_length=2000)
    issuer: str = Field(max_length=2000)
    serial: str = Field(max_length=80, description="hexadecimal")
    not_before: str | None = Field(None, max_length=40)
    not_after: str | None = Field(None, max_length=40)
    certificate: B64Bytes


class ChainEntry(WireModel):
    subject: str = Field(max_length=2000)
    serial: str = Field(max_length=80)
    certificate: B64Bytes


class RevocationFacts(WireModel):
    status: str = Field(max_length=20, description='"good", "revoked" or "unknown"')
    revocation_time: str | None = Field(None, max_length=40)
    ca_revoked: bool | None = None
    embedded_ocsp_responses: int | None = Field(None, ge=0)
    embedded_crls: int | None = Field(None, ge=0)
    fetched_ocsp_responses: int | None = Field(None, ge=0)
    fetched_crls: int | None = Field(None, ge=0)


class SignatureReport(WireModel):
    format: VerifyFormat
    level: str | None = Field(None, max_length=20,
                              description='e.g. "CAdES-B-LT", "PAdES-B-LTA", "XAdES-B-T"')
    indication: Indication
    sub_indication: str | None = Field(None, max_length=60,
                                       pattern=r"^[A-Z][A-Z0-9_]*$")
    message: str | None = Field(None, max_length=400)
    signer: SignerFacts | None = None
    claimed_signing_time: str | None = Field(None, max_length=40)
    timestamp_time: str | None = Field(None, max_length=40)
    best_signature_time: str | None = Field(None, max_length=40)
    chain: list[ChainEntry] = Field(default_factory=list, max_length=10)
    revocation: RevocationFacts | None = None
    field_name: str | None = Field(
        None, max_length=400,
        description="PDF: the signature field; ASiC-E: the signature file in META-INF/")
    coverage: str | None = Field(None, max_length=40)
    countersigns: int | None = Field(
        None, ge=1, le=1000,
        description="a countersignature (XAdES xades:CounterSignature): the number, from 1 "
                    "in this list, of the signature it countersigns")


class SignatureVerifyResult(WireModel):
    format: VerifyFormat
    # The worker's own bound is [documents] max_verified_signatures (at most 1000).
    signatures: list[SignatureReport] = Field(max_length=1000)

    @property
    def all_passed(self) -> bool:
        return bool(self.signatures) and all(
            s.indication is Indication.TOTAL_PASSED for s in self.signatures)
