"""``document.upload`` parameters and result, and the two wire forms uploads give the
document members (kept apart: the large-documents work owns this file).

On a WebSocket connection a page may send a large document as raw bytes in binary frames
instead of base64 in the request (docs/protocol.md, "Uploads"): ``document.upload``
announces the size and returns an id, the bytes follow, and the signing call names the
upload (``{"upload": id}``) where the base64 document would be. The answer then carries the
signed document the same way back: ``{"binary": N, "prefix": M}`` in the text answer, its N
bytes in the binary frame right after it.
"""

from __future__ import annotations

from pydantic import Field

from agent.protocol.base import WireModel

UPLOAD_ID_PATTERN = r"^u-[A-Za-z0-9_-]{22}$"
# A JavaScript number is exact up to 2**53 - 1; the agent's own limit comes on top
# (``[server] max_document_bytes``, answered TOO_LARGE with that limit).
MAX_WIRE_SIZE = 2**53 - 1


class DocumentUploadParams(WireModel):
    size: int = Field(
        ge=1, le=MAX_WIRE_SIZE, strict=True,
        description="The document's size in bytes: exactly that many bytes follow in binary "
                    "frames. At most `[server] max_document_bytes` (else TOO_LARGE with the "
                    "limit).")


class DocumentUploadResult(WireModel):
    upload: str = Field(
        pattern=UPLOAD_ID_PATTERN,
        description="The upload's id: name it in one signing call as `{\"upload\": id}` in "
                    "place of the base64 document, on this connection.")


class UploadReference(WireModel):
    """A document member that names a complete upload of this connection."""

    upload: str = Field(pattern=UPLOAD_ID_PATTERN)


class BinaryDocument(WireModel):
    """A result's document sent as the binary frame that follows the text answer."""

    binary: int = Field(ge=0, description="Bytes in the binary frame that follows (0: none).")
    prefix: int | None = Field(
        None, ge=1,
        description="The document is the first `prefix` bytes of the uploaded document "
                    "followed by the `binary` bytes (an incremental update).")
