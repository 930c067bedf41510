"""``sign.cms`` parameters (kept apart: the CMS work owns this file)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from agent.protocol.base import WireModel
from agent.protocol.enums import HashAlgorithm
from agent.protocol.fields import B64Bytes, B64Document, Handle, TsaUrl
from agent.protocol.params import TSA_URL_HELP, Display, _check_digest

# The highest SignerInfo index a page may name for ``counterSign``: the worker refuses a
# signature with more SignerInfos than this anyway (``cades_signers.MAX_SIGNER_INFOS``).
MAX_COUNTER_SIGN_INDEX = 63


class CadesLevel(StrEnum):
    B = "B"
    T = "T"
    LT = "LT"
    LTA = "LTA"


class SignCmsParams(WireModel):
    handle: Handle
    hash_algorithm: HashAlgorithm
    data: B64Document | None = Field(None, description="The content; or give `hash`.")
    signature: B64Document | None = Field(
        None, description="An existing CMS SignedData (DER): the new signature is added to it "
                          "as one more signer (a parallel signature over the same data), or, "
                          "with `counterSign`, as a countersignature of one of its signers.")
    counter_sign: int | None = Field(
        None, ge=0, le=MAX_COUNTER_SIGN_INDEX,
        description="Countersign the SignerInfo with this index (0-based) of `signature`; "
                    "give no `data` or `hash`.")
    hash: B64Bytes | None = Field(None, validate_default=True,
                                  description="Hash of the content; or give `data`.")
    detached: Literal[True] = Field(
        True, description="Only detached signatures are produced in protocol 1 (a parallel "
                          "signature keeps the content of an attached `signature`).")
    level: CadesLevel
    tsa_url: TsaUrl | None = Field(None, description=TSA_URL_HELP)
    display: Display | None = None

    @field_validator("hash")
    @classmethod
    def _one_of_data_or_hash(cls, value: bytes | None, info: ValidationInfo) -> bytes | None:
        has_data = info.data.get("data") is not None
        if value is not None and has_data:
            raise ValueError("give either data or hash, not both")
        if value is None:
            # An existing signature may carry its content (attached) or need none
            # (a countersignature): the worker tells when it is missing.
            has_signature = info.data.get("signature") is not None
            if not has_data and not has_signature and "data" in info.data:
                raise ValueError("give either data or hash")
            return None
        return _check_digest(value, info)

    @model_validator(mode="after")
    def _countersignature_needs_signature_only(self) -> SignCmsParams:
        if self.counter_sign is not None:
            if self.signature is None:
                raise ValueError("counterSign needs the signature to countersign")
            if self.data is not None or self.hash is not None:
                raise ValueError("a countersignature signs a signature value: give no data "
                                 "or hash with counterSign")
            if self.level is CadesLevel.LTA:
                # An archive time-stamp covers the signed content, which a
                # countersignature is not given: extend the signature afterwards.
                raise ValueError("a countersignature goes up to level LT")
        return self
