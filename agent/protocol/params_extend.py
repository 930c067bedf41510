"""``signature.extend`` parameters and result (kept apart: the extend work owns this file).

A signature is raised to a higher baseline level without its key: a time-stamp,
validation data, an archive time-stamp — or, asked for LTA again, a new archive
time-stamp over everything before it."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from agent.protocol.base import WireModel
from agent.protocol.fields import B64Bytes, B64Document, TsaUrl
from agent.protocol.params import TSA_URL_HELP, Display


class ExtendFormat(StrEnum):
    CMS = "cms"
    PDF = "pdf"
    XML = "xml"


class ExtendLevel(StrEnum):
    T = "T"
    LT = "LT"
    LTA = "LTA"
    B_T = "B-T"
    B_LT = "B-LT"
    B_LTA = "B-LTA"


# Which levels each format names: CAdES its own way, PAdES and XAdES with "B-".
LEVELS_OF: dict[ExtendFormat, tuple[ExtendLevel, ...]] = {
    ExtendFormat.CMS: (ExtendLevel.T, ExtendLevel.LT, ExtendLevel.LTA),
    ExtendFormat.PDF: (ExtendLevel.B_T, ExtendLevel.B_LT, ExtendLevel.B_LTA),
    ExtendFormat.XML: (ExtendLevel.B_T, ExtendLevel.B_LT, ExtendLevel.B_LTA),
}


class SignatureExtendParams(WireModel):
    format: ExtendFormat
    signature: B64Document = Field(
        description="The CMS (DER), the signed PDF, or the XML document with its XAdES "
                    "signature(s).")
    data: B64Document | None = Field(
        None, description="The detached content of a detached CMS or XAdES signature, "
                          "when the level needs it (an archive time-stamp covers it).")
    level: ExtendLevel = Field(
        description="cms: T, LT, LTA; pdf and xml: B-T, B-LT, B-LTA. LTA asked of an LTA "
                    "signature adds a new archive time-stamp.")
    tsa_url: TsaUrl | None = Field(None, description=TSA_URL_HELP)
    display: Display | None = None

    @model_validator(mode="after")
    def _level_of_format(self) -> SignatureExtendParams:
        allowed = LEVELS_OF[self.format]
        if self.level not in allowed:
            names = ", ".join(level.value for level in allowed)
            raise ValueError(f"level {self.level.value} is not one of {self.format.value}'s "
                             f"levels ({names})")
        if self.data is not None and self.format is ExtendFormat.PDF:
            raise ValueError("a PDF carries its content: data is for cms and xml only")
        return self


class SignatureExtendResult(WireModel):
    signature: B64Bytes = Field(
        description="The extended signature, in the format it was given in.")
