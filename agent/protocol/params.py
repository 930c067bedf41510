"""Request parameters of every method, as the portal sends them."""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from typing import Annotated

from pydantic import (
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from agent.protocol.base import WireModel
from agent.protocol.enums import EcdsaEncoding, HashAlgorithm, Scheme
from agent.protocol.fields import (
    CHALLENGE_MAX_CHARS,
    CHALLENGE_MIN_BYTES,
    CHALLENGE_MIN_CHARS,
    B64Bytes,
    B64Document,
    Challenge,
    DisplayText,
    Handle,
    Oid,
    PdfFieldName,
    ShortText,
    SignedText,
    TsaUrl,
)

MAX_HASHES = 1000


class NoParams(WireModel):
    """For methods without parameters: ``params`` absent or ``{}``."""


# --- certificates -------------------------------------------------------------------------

class Purpose(StrEnum):
    SIGN = "sign"
    AUTH = "auth"


class KeyUsage(StrEnum):
    """RFC 5280 §4.2.1.3 bit names."""

    DIGITAL_SIGNATURE = "digitalSignature"
    NON_REPUDIATION = "nonRepudiation"
    KEY_ENCIPHERMENT = "keyEncipherment"
    DATA_ENCIPHERMENT = "dataEncipherment"
    KEY_AGREEMENT = "keyAgreement"
    KEY_CERT_SIGN = "keyCertSign"
    CRL_SIGN = "cRLSign"
    ENCIPHER_ONLY = "encipherOnly"
    DECIPHER_ONLY = "decipherOnly"


class CertificateFilter(WireModel):
    """Every given criterion must hold (AND); list criteria need all listed values."""

    issuer: str | None = Field(
        None, min_length=1, max_length=512,
        description="Case-insensitive substring of the issuer name (RFC 4514 string).")
    subject_serial_number: str | None = Field(
        None, min_length=1, max_length=128,
        description="Exact value of the subject's serialNumber attribute (2.5.4.5).")
    key_usage: list[KeyUsage] | None = Field(None, min_length=1, max_length=9)
    extended_key_usage: list[Oid] | None = Field(None, min_length=1, max_length=32)
    include_expired: bool = False


class CertificatesSelectParams(WireModel):
    purpose: Purpose
    filter: CertificateFilter = Field(default_factory=CertificateFilter)


class CertificatesListParams(CertificatesSelectParams):
    pass


# --- signing ------------------------------------------------------------------------------

class Display(WireModel):
    """What the confirmation dialog shows besides the origin and the certificate."""

    text: DisplayText | None = None
    document_name: ShortText | None = None


class _SignWithKey(WireModel):
    handle: Handle
    hash_algorithm: HashAlgorithm


def _check_digest(value: bytes, info: ValidationInfo) -> bytes:
    alg = info.data.get("hash_algorithm")
    if isinstance(alg, HashAlgorithm) and len(value) != alg.digest_size:
        raise ValueError(f"a {alg.value} hash is {alg.digest_size} bytes, got {len(value)}")
    return value


class SignHashParams(_SignWithKey):
    scheme: Scheme | None = Field(
        None, description="Default: RSASSA-PKCS1-v1_5 for RSA keys, ECDSA for EC keys.")
    ecdsa_encoding: EcdsaEncoding = Field(
        EcdsaEncoding.DER, description="ECDSA only: DER SEQUENCE or raw r‖s (IEEE P1363).")
    display: Display | None = None
    hash: B64Bytes

    _hash_length = field_validator("hash")(_check_digest)


class SignHashesParams(_SignWithKey):
    scheme: Scheme | None = None
    ecdsa_encoding: EcdsaEncoding = EcdsaEncoding.DER
    display: Display | None = None
    hashes: list[B64Bytes] = Field(min_length=1, max_length=MAX_HASHES)

    @field_validator("hashes")
    @classmethod
    def _hash_lengths(cls, value: list[bytes], info: ValidationInfo) -> list[bytes]:
        alg = info.data.get("hash_algorithm")
        if isinstance(alg, HashAlgorithm):
            bad = [i for i, h in enumerate(value) if len(h) != alg.digest_size]
            if bad:
                shown = ", ".join(map(str, bad[:5])) + (", …" if len(bad) > 5 else "")
                raise ValueError(f"a {alg.value} hash is {alg.digest_size} bytes; "
                                 f"wrong length at index {shown}")
        return value


TSA_URL_HELP = (
    "Time-stamping service for levels with a timestamp, used when the administrator "
    "configured none for this origin or issuer; with neither, those levels are UNSUPPORTED.")


class PadesLevel(StrEnum):
    B_B = "B-B"
    B_T = "B-T"
    B_LT = "B-LT"
    B_LTA = "B-LTA"


MAX_PAGE_POINTS = 14400  # PDF's largest page side (ISO 32000-1 annex C: 200 inches)
MAX_PAGE_NUMBER = 100_000

PdfCoordinate = Annotated[float, Field(ge=0, le=MAX_PAGE_POINTS, strict=True,
                                       allow_inf_nan=False)]


class PdfStamp(WireModel):
    """A visible signature: a box on one page showing the signer's name (from the
    certificate), the signing time and ``text``."""

    page: int = Field(
        1, strict=True, ge=-MAX_PAGE_NUMBER, le=MAX_PAGE_NUMBER,
        description="1-based page number; negative counts from the end (-1 = last page).")
    box: tuple[PdfCoordinate, PdfCoordinate, PdfCoordinate, PdfCoordinate] = Field(
        description="[x1, y1, x2, y2] in PDF points (1/72 inch) in the page's default user "
                    "space: lower-left and upper-right corners.")
    text: SignedText | None = Field(None, description="An extra line under the time.")

    @field_validator("page")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("pages are numbered from 1 (or from -1 at the end)")
        return value

    @field_validator("box")
    @classmethod
    def _ordered(cls, value: tuple[float, float, float, float]
                 ) -> tuple[float, float, float, float]:
        x1, y1, x2, y2 = value
        if not (x1 < x2 and y1 < y2):
            raise ValueError("must be [x1, y1, x2, y2] with x1 < x2 and y1 < y2")
        return value


class SignPdfParams(WireModel):
    handle: Handle
    pdf: B64Document
    level: PadesLevel
    reason: SignedText | None = None
    location: SignedText | None = None
    field_name: PdfFieldName | None = None
    stamp: PdfStamp | None = Field(
        None, description="Make the signature visible; absent: an invisible signature.")
    tsa_url: TsaUrl | None = Field(None, description=TSA_URL_HELP)
    display: Display | None = None
    digest_algorithm: HashAlgorithm | None = Field(
        None, description="The signature's digest; absent: as strong as the key (P-384: "
                          "SHA-384, P-521: SHA-512, else SHA-256). `agent.info` "
                          "`digestAlgorithms` lists the choices.")



# --- authentication -----------------------------------------------------------------------

class LoginTokenFormat(StrEnum):
    IMZA_AUTH_1 = "imza-auth:1"
    WEB_EID_1_0 = "web-eid:1.0"


# Web eID's own app takes nonces of 44 to 128 characters (32 random bytes in standard
# base64 are 44); the same bounds here, so a nonce one accepts the other accepts too.
WEB_EID_NONCE_MIN_CHARS = 44
WEB_EID_NONCE_MAX_CHARS = CHALLENGE_MAX_CHARS
_IMZA_CHALLENGE: TypeAdapter[bytes] = TypeAdapter(Challenge)


def _imza_challenge(value: str) -> bytes:
    try:
        return _IMZA_CHALLENGE.validate_python(value)
    except ValidationError as exc:
        raise ValueError(str(exc.errors()[0]["msg"]).removeprefix("Value error, ")) from None


def _check_web_eid_nonce(value: str) -> None:
    if not WEB_EID_NONCE_MIN_CHARS <= len(value) <= WEB_EID_NONCE_MAX_CHARS:
        raise ValueError(f"a web-eid:1.0 challenge is {WEB_EID_NONCE_MIN_CHARS} to "
                         f"{WEB_EID_NONCE_MAX_CHARS} characters of standard base64")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a web-eid:1.0 challenge is standard base64 (alphabet A-Z a-z 0-9 "
                         "+ /, '=' padding)") from None
    if len(raw) < CHALLENGE_MIN_BYTES:
        raise ValueError(f"must carry at least {CHALLENGE_MIN_BYTES} bytes of randomness")


LoginChallenge = Annotated[str, WithJsonSchema({
    "type": "string", "pattern": "^[A-Za-z0-9+/_-]+={0,2}$",
    "minLength": CHALLENGE_MIN_CHARS, "maxLength": CHALLENGE_MAX_CHARS})]


class AuthLoginParams(WireModel):
    """The challenge's alphabet and length depend on ``format``."""

    # Declared first: pydantic validates in this order, and the challenge check needs it.
    format: LoginTokenFormat = Field(
        LoginTokenFormat.IMZA_AUTH_1,
        description="The token to build: the agent's own, or one Web eID's validation "
                    "libraries accept unchanged.")
    challenge: LoginChallenge = Field(description=(
        "The relying party's fresh nonce, at least 32 bytes decoded. imza-auth:1: base64url, "
        "43-128 characters, '=' padding optional. web-eid:1.0: standard base64, 44-128 "
        "characters."))

    @field_validator("challenge", mode="before")
    @classmethod
    def _challenge_fits_format(cls, value: object, info: ValidationInfo) -> str:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        token_format = info.data.get("format")
        if token_format is LoginTokenFormat.WEB_EID_1_0:
            _check_web_eid_nonce(value)
        elif token_format is LoginTokenFormat.IMZA_AUTH_1:
            _imza_challenge(value)
        # An invalid ``format`` is reported on its own; the challenge cannot be judged.
        return value

    @property
    def challenge_bytes(self) -> bytes:
        """imza-auth:1 signs the decoded challenge (docs/protocol.md, "auth.login")."""
        return _imza_challenge(self.challenge)


# The methods that carry a document, and the wire name of the member that holds it. Their
# frames may be as large as ``[server] max_document_frame_bytes``; every other method's
# are bounded by ``max_frame_bytes``; the document's decoded size by ``max_document_bytes``
# (agent/transport/document_frames.py).
DOCUMENT_FIELDS: dict[str, str] = {"sign.pdf": "pdf", "sign.cms": "data",
                                   "signature.extend": "signature",
                                   "signature.verify": "signature"}
# Further members of a document method whose decoded sizes count with its document's
# against max_document_bytes (the detached content of a signature to verify).
DOCUMENT_EXTRA_FIELDS: dict[str, tuple[str, ...]] = {"signature.verify": ("data",)}
