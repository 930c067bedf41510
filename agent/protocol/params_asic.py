"""``sign.asic`` parameters and result (kept apart: the ASiC work owns this file)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, field_validator, model_validator

from agent.container_names import MAX_NAME_CHARS, name_problem
from agent.protocol.base import WireModel
from agent.protocol.enums import HashAlgorithm
from agent.protocol.fields import B64Bytes, B64Document, Handle, TsaUrl
from agent.protocol.params import TSA_URL_HELP, Display

# The protocol's own bound on ``files``; ``[documents] max_container_files`` is the
# installation's (at most this).
MAX_FILES = 10_000
MAX_MIME_CHARS = 255
# RFC 6838's type/subtype names (no parameters): it is written into the signature.
MIME_TYPE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$"


class AsicSignatureFormat(StrEnum):
    XADES = "xades"
    CADES = "cades"


class AsicLevel(StrEnum):
    B_B = "B-B"
    B_T = "B-T"
    B_LT = "B-LT"
    B_LTA = "B-LTA"


class AsicFile(WireModel):
    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS,
                      description="The file's path in the container: relative, '/'-separated, "
                                  "no '..' or '.' segment, not under META-INF/, unique.")
    data: B64Document
    mime_type: str | None = Field(
        None, min_length=3, max_length=MAX_MIME_CHARS, pattern=MIME_TYPE_PATTERN,
        description="The file's media type; absent: guessed from the name "
                    "(else application/octet-stream).")

    @field_validator("name")
    @classmethod
    def _relative_name(cls, value: str) -> str:
        problem = name_problem(value)
        if problem is not None:
            raise ValueError(f"the file name {problem}")
        return value


class SignAsicParams(WireModel):
    handle: Handle
    files: list[AsicFile] | None = Field(
        None, min_length=1, max_length=MAX_FILES,
        description="The files of a new container (at most `[documents] "
                    "max_container_files`); or give `container`.")
    container: B64Document | None = Field(
        None, description="An existing ASiC-E container: one more signature is added to it, "
                          "over all its files; every existing entry is kept byte for byte.")
    signature_format: AsicSignatureFormat = Field(
        description="xades: META-INF/signatures<N>.xml; cades: META-INF/signature<N>.p7s "
                    "over META-INF/ASiCManifest<N>.xml.")
    level: AsicLevel = Field(description="`agent.info` `formats.asic` lists the levels "
                                         "this installation produces.")
    tsa_url: TsaUrl | None = Field(None, description=TSA_URL_HELP)
    display: Display | None = None
    digest_algorithm: HashAlgorithm | None = Field(
        None, description="The signature's and the references' digest; absent: as strong as "
                          "the key (P-384: SHA-384, P-521: SHA-512, else SHA-256).")

    @field_validator("files")
    @classmethod
    def _unique_names(cls, value: list[AsicFile] | None) -> list[AsicFile] | None:
        if value is not None:
            seen: set[str] = set()
            for item in value:
                # Case-folded: two names one file system would merge are one name.
                key = item.name.casefold()
                if key in seen:
                    raise ValueError("two files have the same name")
                seen.add(key)
        return value

    @model_validator(mode="after")
    def _files_or_container(self) -> SignAsicParams:
        if (self.files is None) == (self.container is None):
            raise ValueError("give either files (a new container) or container (one more "
                             "signature), not both")
        return self


class SignAsicResult(WireModel):
    container: B64Bytes = Field(description="The signed ASiC-E container (ZIP).")
