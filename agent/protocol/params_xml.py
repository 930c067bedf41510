"""``sign.xml`` parameters (kept apart: the XML work owns this file)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from agent.protocol.base import WireModel
from agent.protocol.enums import HashAlgorithm
from agent.protocol.fields import B64Document, Handle, TsaUrl
from agent.protocol.params import TSA_URL_HELP, Display


class XadesLevel(StrEnum):
    B_B = "B-B"
    B_T = "B-T"


class XmlMode(StrEnum):
    ENVELOPED = "enveloped"
    DETACHED = "detached"


class SignXmlParams(WireModel):
    handle: Handle
    xml: B64Document
    level: XadesLevel
    mode: XmlMode
    tsa_url: TsaUrl | None = Field(None, description=TSA_URL_HELP)
    display: Display | None = None
    digest_algorithm: HashAlgorithm | None = Field(
        None, description="The signature's digest; absent: as strong as the key (P-384: "
                          "SHA-384, P-521: SHA-512, else SHA-256). `agent.info` "
                          "`digestAlgorithms` lists the choices.")
