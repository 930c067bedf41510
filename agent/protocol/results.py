"""Results of every method, the agent's notifications, and the error object."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import ConfigDict, Field

from agent.protocol.base import WireModel
from agent.protocol.enums import HashAlgorithm, Scheme
from agent.protocol.fields import B64Bytes


class AgentInfoResult(WireModel):
    """An origin without any grant gets name, version and protocol only."""

    name: str
    version: str
    protocol: int
    origin: str | None = None
    transport: Literal["wss", "ws", "extension"] | None = None
    features: list[str] | None = Field(None, description="Methods this agent serves.")
    formats: dict[str, list[str]] | None = Field(
        None, description="Signature formats and their levels, e.g. {\"pdf\": [\"B-B\"]}.")
    digest_algorithms: dict[str, list[str]] | None = Field(
        None, description="The `digestAlgorithm` choices per format, e.g. "
                          "{\"pdf\": [\"SHA-256\", \"SHA-384\", \"SHA-512\"]}.")


# --- certificates -------------------------------------------------------------------------

class TokenSummary(WireModel):
    label: str
    manufacturer: str
    model: str
    serial: str


class Algorithm(WireModel):
    """A scheme and hash this certificate's key can sign with on its token."""

    scheme: Scheme
    hash_algorithm: HashAlgorithm = Field(alias="hash")


class CertificateInfo(WireModel):
    handle: str
    certificate: B64Bytes = Field(description="The certificate, DER.")
    chain: list[B64Bytes] = Field(
        description="Issuer certificates (DER) from the issuer up, as far as known.")
    token: TokenSummary
    algorithms: list[Algorithm]


class CertificatesListResult(WireModel):
    certificates: list[CertificateInfo]


# --- signing ------------------------------------------------------------------------------

class SignHashResult(WireModel):
    signature: B64Bytes
    scheme: Scheme
    hash_algorithm: HashAlgorithm
    certificate: B64Bytes


class SignHashesResult(WireModel):
    signatures: list[B64Bytes] = Field(description="In the order of the request's hashes.")
    scheme: Scheme
    hash_algorithm: HashAlgorithm
    certificate: B64Bytes


class SignCmsResult(WireModel):
    cms: B64Bytes = Field(description="CAdES baseline SignedData, DER.")


class SignPdfResult(WireModel):
    pdf: B64Bytes = Field(description="The signed PDF (PAdES baseline).")


class SignXmlResult(WireModel):
    xml: B64Bytes = Field(description="The signed XML document (XAdES baseline).")


# --- authentication -----------------------------------------------------------------------

class AuthAlgorithm(StrEnum):
    """JOSE names (RFC 7518); ES* signatures are raw r‖s as in JWS."""

    RS256 = "RS256"
    RS384 = "RS384"
    RS512 = "RS512"
    PS256 = "PS256"
    PS384 = "PS384"
    PS512 = "PS512"
    ES256 = "ES256"
    ES384 = "ES384"
    ES512 = "ES512"


class AuthToken(WireModel):
    format: Literal["imza-auth:1"] = "imza-auth:1"
    certificate: B64Bytes
    chain: list[B64Bytes]
    algorithm: AuthAlgorithm
    signature: B64Bytes


class WebEidAuthToken(WireModel):
    """The Web eID authentication token, format ``web-eid:1.0``, field for field as its
    public specification names them; signed over ``H(origin) ‖ H(challenge string)`` with
    the algorithm's own hash ``H`` (docs/protocol.md, "auth.login")."""

    unverified_certificate: B64Bytes = Field(description="The authentication certificate, DER.")
    algorithm: AuthAlgorithm
    signature: B64Bytes
    format: Literal["web-eid:1.0"] = "web-eid:1.0"
    app_version: str = Field(description="A URL naming the agent and its version.")


class AuthLoginResult(WireModel):
    token: AuthToken | WebEidAuthToken = Field(
        discriminator="format", description="In the format the request asked for.")


# --- tokens -------------------------------------------------------------------------------

class TokenState(WireModel):
    label: str
    serial: str
    present: bool


class TokenList(WireModel):
    """Result of ``tokens.subscribe`` and params of the ``tokens.changed`` notification."""

    tokens: list[TokenState]


# --- errors -------------------------------------------------------------------------------

class ErrorData(WireModel):
    """``reason`` always; other members depend on the error (``detail``, ``unlock``…)."""

    model_config = ConfigDict(extra="allow")

    reason: str


class ErrorObject(WireModel):
    code: int
    message: str
    data: ErrorData | None = None
