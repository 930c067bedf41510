"""The demo portal's PDF counter: it checks every signed PDF on the server, and offers the
third way to sign one, where the document never goes to the browser.

1. ``prepare``: the page sent the certificate it got from ``certificates.select``; the
   server adds a signature field and an empty placeholder to ITS document, and answers
   only the hash (with its algorithm and scheme) the page passes to ``sign.hash``;
2. the page asks the agent for ``sign.hash`` with the handle it holds;
3. ``finish``: the server checks the raw signature, assembles the PAdES signature (with a
   time-stamp from B-T on, validation data at B-LT), validates the result against its own
   anchors and keeps the file for download.

Both halves are the portal kit's (``imza_portal.documents``); what stays here is the
portal's policy: which document, which level, which anchors.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from cryptography import x509

from imza_portal.documents import (
    DocumentSigner,
    DocumentSigningError,
    PendingSignature,
    SignatureReport,
    async_verify_pdf,
)

from .verify import Rejected

MAX_KEPT = 8  # signed files a session keeps for download; older ones are dropped
DOCUMENT_NAME = "arayis.pdf"


def _run_verify(pdf: bytes, anchors: list[x509.Certificate]) -> list[SignatureReport]:
    # The portal serves requests on threads without an event loop of their own.
    return asyncio.run(async_verify_pdf(pdf, anchors))


class PdfDesk:
    """Pending and finished server-side signatures of one session."""

    def __init__(self) -> None:
        self.pending: dict[str, bytes] = {}  # id -> PendingSignature.to_bytes()
        self.signed: OrderedDict[str, bytes] = OrderedDict()  # id -> signed PDF
        self.lock = threading.Lock()

    def keep(self, pdf: bytes) -> str:
        doc_id = secrets.token_urlsafe(16)
        with self.lock:
            self.signed[doc_id] = pdf
            while len(self.signed) > MAX_KEPT:
                self.signed.popitem(last=False)
        return doc_id

    def download(self, doc_id: str) -> bytes | None:
        with self.lock:
            return self.signed.get(doc_id)


def verify_report(pdf: bytes, anchors: list[x509.Certificate],
                  original: bytes) -> dict[str, Any]:
    """What the page shows after any PDF signing: pyHanko's verdict per signature, and
    whether the signed file is an update of the document this portal handed out."""
    try:
        reports = _run_verify(pdf, anchors)
    except DocumentSigningError as exc:
        raise Rejected(str(exc), exc.code) from None
    same = pdf.startswith(original.rstrip(b"\r\n"))
    return {"signatures": [r.as_json() for r in reports], "sameDocument": same,
            "ok": same and bool(reports) and all(r.ok and r.whole_document for r in reports),
            "sha256": hashlib.sha256(pdf).hexdigest()}


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise Rejected(f"{what} is missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Rejected(f"{what} is not base64") from None


def prepare(desk: PdfDesk, body: dict[str, Any], *, document: bytes, level: str,
            signer: DocumentSigner) -> dict[str, Any]:
    selected = {"certificate": body.get("certificate"), "chain": body.get("chain") or [],
                "algorithms": body.get("algorithms")}
    try:
        pending = signer.prepare_pdf(document, selected, level=level, reason="DEMO",
                                     field_name="Signature1")
    except DocumentSigningError as exc:
        raise Rejected(str(exc), exc.code) from None
    doc_id = secrets.token_urlsafe(16)
    with desk.lock:
        desk.pending[doc_id] = pending.to_bytes()
    return {"documentId": doc_id, "documentName": DOCUMENT_NAME, "level": level,
            **pending.sign_hash_params()}


def finish(desk: PdfDesk, body: dict[str, Any], *, signer: DocumentSigner,
           anchors: list[x509.Certificate], original: bytes,
           record: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    with desk.lock:  # single use: taken out before anything is checked
        kept = desk.pending.pop(str(body.get("documentId")), None)
    if kept is None:
        raise Rejected("unknown or already used document")
    answer = {"signature": body.get("signature"), "certificate": body.get("certificate"),
              "scheme": body.get("scheme"), "hashAlgorithm": body.get("hashAlgorithm")}
    _b64(answer["signature"], "the signature")
    try:
        pending = PendingSignature.from_bytes(kept)
        signed = signer.finish(pending, {k: v for k, v in answer.items() if v is not None})
    except DocumentSigningError as exc:
        raise Rejected(str(exc), exc.code) from None
    verdict = verify_report(signed, anchors, original)
    doc_id = desk.keep(signed)
    result = {"documentId": doc_id, "download": f"/signed/{doc_id}.pdf",
              "level": pending.level, "verification": verdict}
    record({"way": "server", "level": pending.level, "sha256": verdict["sha256"],
            "ok": verdict["ok"]})
    return result


def verify_uploaded(body: dict[str, Any], *, anchors: list[x509.Certificate],
                    original: bytes, record: Callable[[dict[str, Any]], None]
                    ) -> dict[str, Any]:
    """The page signed with ``sign.pdf`` in the browser: the server checks the result."""
    pdf = _b64(body.get("pdf"), "the PDF")
    verdict = verify_report(pdf, anchors, original)
    record({"way": "browser", "sha256": verdict["sha256"], "ok": verdict["ok"]})
    return {"verification": verdict}
