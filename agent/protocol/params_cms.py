"""``sign.cms`` parameters (kept apart: the CMS work owns this file)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from agent.protocol.base import WireModel
from agent.protocol.enums import HashAlgorithm
from agent.protocol.fields import B64Bytes, B64Document, Handle, TsaUrl
from agent.protocol.params import TSA_URL_HELP, Display, _check_digest


class CadesLevel(StrEnum):
    B = "B"
    T = "T"
    LT = "LT"


class SignCmsParams(WireModel):
    handle: Handle
    hash_algorithm: HashAlgorithm
    data: B64Document | None = Field(None, description="The content; or give `hash`.")
    hash: B64Bytes | None = Field(None, validate_default=True,
                                  description="Hash of the content; or give `data`.")
    detached: Literal[True] = Field(
        True, description="Only detached signatures are produced in protocol 1.")
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
            if not has_data and "data" in info.data:
                raise ValueError("give either data or hash")
            return None
        return _check_digest(value, info)
