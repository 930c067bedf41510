"""Server-side PAdES and CAdES: the portal prepares, the agent signs a hash, the portal
finishes. Built on pyHanko's interrupted signing (``PdfSigner.async_digest_doc_for_signing``,
``ExternalSigner``, ``PdfTBSDocument.async_finish_signing``).

    signer = DocumentSigner(trust_roots=[root], tsa_url="https://tsa.example/")
    pending = signer.prepare_pdf(pdf, selected, level="B-T")   # selected: certificates.select
    session["pending"] = pending.to_bytes()
    ...  the page calls sign.hash with pending.sign_hash_params(handle) ...
    signed_pdf = signer.finish(PendingSignature.from_bytes(session.pop("pending")), answer)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import IO, Any, TypeVar

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.fields import SigSeedSubFilter, enumerate_sig_fields
from pyhanko.sign.signers import ExternalSigner, PdfSignatureMetadata, PdfSigner
from pyhanko.sign.signers.pdf_byterange import PreparedByteRangeDigest
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.signers.pdf_signer import PdfTBSDocument
from pyhanko.sign.timestamps.aiohttp_client import HTTPTimeStamper
from pyhanko.sign.validation.dss import async_add_validation_info
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore

from .algorithms import (
    HASHES,
    check_signature,
    choose_scheme,
    digest,
    hash_name,
    placeholder_size,
    signature_mechanism,
)
from .cades_lt import add_validation_data
from .errors import (
    CertificateMismatch,
    DocumentSigningError,
    InvalidCertificate,
    InvalidDocument,
    InvalidPendingState,
    TimestampError,
    UnsupportedLevel,
    ValidationDataError,
)
from .pending import LEVELS, Level, PendingSignature

T = TypeVar("T")
DEFAULT_MAX_AGE = 900.0  # seconds from prepare to finish: the agent's dialogs time out sooner
MAX_CHAIN = 8


@dataclass(frozen=True)
class SelectedCertificate:
    """What ``certificates.select`` answered, as far as the server needs it."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()
    algorithms: tuple[Mapping[str, Any], ...] | None = None

    @classmethod
    def parse(cls, selected: Mapping[str, Any] | bytes | x509.Certificate
              ) -> SelectedCertificate:
        """From the select result (as the page posts it back: base64 ``certificate``,
        ``chain`` and ``algorithms``), a DER certificate, or a certificate object."""
        if isinstance(selected, x509.Certificate):
            return cls(selected)
        if isinstance(selected, bytes):
            return cls(_load_der(selected))
        chain = selected.get("chain") or []
        algorithms = selected.get("algorithms")
        if not isinstance(chain, list) or len(chain) > MAX_CHAIN:
            raise InvalidCertificate("chain must be a list of at most "
                                     f"{MAX_CHAIN} certificates")
        if algorithms is not None and not (
                isinstance(algorithms, list) and all(isinstance(a, Mapping) for a in algorithms)):
            raise InvalidCertificate("algorithms must be a list of {scheme, hash} objects")
        return cls(_load_b64(selected.get("certificate")),
                   tuple(_load_b64(c) for c in chain),
                   tuple(algorithms) if algorithms is not None else None)


def _load_b64(text: Any) -> x509.Certificate:
    if not isinstance(text, str):
        raise InvalidCertificate("the certificate is missing")
    try:
        return _load_der(base64.b64decode(text, validate=True))
    except binascii.Error:
        raise InvalidCertificate("the certificate is not base64") from None


def _load_der(der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        raise InvalidCertificate("not a DER X.509 certificate") from None


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def _asn1(der: bytes) -> Any:
    return asn1_x509.Certificate.load(der)


class DocumentSigner:
    """A portal's signing settings, made once at start-up and shared by its requests.

    ``trust_roots``: the CAs the portal accepts (signers' and the TSA's); they build the
    validation context for B-LT, whose OCSP responses and CRLs are fetched then (from the
    addresses in the certificates) and embedded in the PDF's DSS. ``tsa_url``: an RFC 3161
    service, needed for B-T and B-LT.
    """

    def __init__(self, *, trust_roots: Sequence[x509.Certificate] = (),
                 intermediates: Sequence[x509.Certificate] = (), tsa_url: str | None = None,
                 tsa_timeout: float = 10.0, max_age: float = DEFAULT_MAX_AGE) -> None:
        self.trust_roots = tuple(trust_roots)
        self.intermediates = tuple(intermediates)
        self.tsa_url = tsa_url
        self.tsa_timeout = tsa_timeout
        self.max_age = max_age

    # --- settings ------------------------------------------------------------------------

    def validation_context(self, chain: Sequence[bytes] = (), *,
                           fetching: bool = True) -> ValidationContext:
        """Trust exactly the portal's roots; fetch revocation data and fail without it."""
        return ValidationContext(
            trust_roots=[_asn1(_der(c)) for c in self.trust_roots],
            other_certs=[_asn1(_der(c)) for c in self.intermediates] + [_asn1(c)
                                                                        for c in chain],
            allow_fetching=fetching,
            revocation_mode="hard-fail" if fetching else "soft-fail")

    def _registry(self, chain: Sequence[bytes]) -> SimpleCertificateStore:
        """The issuers the CMS carries: the token's chain, and the portal's intermediates
        (a token often holds the end certificate only), so any validator finds the path."""
        store: SimpleCertificateStore = SimpleCertificateStore.from_certs(
            [_asn1(c) for c in chain] + [_asn1(_der(c)) for c in self.intermediates])
        return store

    def _timestamper(self, level: Level) -> HTTPTimeStamper | None:
        if level == "B-B":
            return None
        if not self.tsa_url:
            raise UnsupportedLevel(f"{level} needs a time-stamping service (tsa_url)")
        return HTTPTimeStamper(self.tsa_url, timeout=int(self.tsa_timeout))

    @staticmethod
    def _level(level: str, allowed: Sequence[str] = LEVELS) -> Level:
        if level not in allowed:
            raise UnsupportedLevel(f"level {level!r} is not one of {', '.join(allowed)}")
        return level  # type: ignore[return-value]

    # --- PAdES ---------------------------------------------------------------------------

    async def async_prepare_pdf(
            self, pdf: bytes, selected: Mapping[str, Any] | bytes | x509.Certificate, *,
            level: str = "B-B", hash_algorithm: str = "SHA-256", scheme: str | None = None,
            field_name: str | None = None, reason: str | None = None,
            location: str | None = None, name: str | None = None) -> PendingSignature:
        """Add an incremental update with a signature field (``field_name``, an existing
        empty one or a new one; by default the first free ``SignatureN``) and an empty
        placeholder sized for this certificate (and the time-stamp, from B-T on); digest
        the byte range and build the PAdES signed attributes over it."""
        chosen = SelectedCertificate.parse(selected)
        md_name = hash_name(hash_algorithm)
        level_ = self._level(level)
        scheme_ = choose_scheme(chosen.certificate, md_name, scheme, chosen.algorithms)
        chain = tuple(_der(c) for c in chosen.chain)
        signer = ExternalSigner(
            signing_cert=_asn1(_der(chosen.certificate)),
            cert_registry=self._registry(chain),
            signature_value=placeholder_size(chosen.certificate),
            signature_mechanism=signature_mechanism(scheme_, md_name))
        timestamper = self._timestamper(level_)
        try:
            writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
            if writer.security_handler is not None:
                raise InvalidDocument("encrypted PDFs are not supported")
            # A document signed before keeps its fields: the new one gets a free name.
            taken = {str(name) for name, _, _ in enumerate_sig_fields(writer)}
        except DocumentSigningError:
            raise
        except Exception as exc:  # pyHanko's PdfReadError and the parser's own surprises
            raise InvalidDocument(f"not a readable PDF ({type(exc).__name__})") from None
        if field_name is None:
            field_name = next(f"Signature{n}" for n in range(1, len(taken) + 2)
                              if f"Signature{n}" not in taken)
        meta = PdfSignatureMetadata(
            field_name=field_name, md_algorithm=HASHES[md_name], reason=reason,
            location=location, name=name, subfilter=SigSeedSubFilter.PADES)
        if timestamper is not None:
            # The placeholder is sized with a real time-stamp from the TSA, so a TSA that
            # is down or answers nonsense is known now, before the user is asked for a PIN.
            # (pyHanko keeps this answer for its estimate below.)
            try:
                await timestamper.async_dummy_response(HASHES[md_name])
            except Exception as exc:
                raise TimestampError(
                    f"the time-stamping service failed ({type(exc).__name__})") from None
        try:
            prepared, _tbs, written = await PdfSigner(
                meta, signer=signer, timestamper=timestamper).async_digest_doc_for_signing(
                writer)
        except Exception as exc:  # certified against changes, a taken field, a bad file
            raise InvalidDocument(
                f"the PDF cannot be signed ({type(exc).__name__}: {exc})") from None
        attributes = await signer.signed_attrs(
            prepared.document_digest, HASHES[md_name], attr_settings=PdfCMSSignedAttributes(),
            use_pades=True)
        return PendingSignature(
            kind="PAdES", level=level_, hash_algorithm=md_name, scheme=scheme_,
            certificate=_der(chosen.certificate), chain=chain,
            signed_attributes=attributes.dump(), message_digest=prepared.document_digest,
            pdf=_read_all(written), reserved_start=prepared.reserved_region_start,
            reserved_end=prepared.reserved_region_end)

    # --- CAdES ---------------------------------------------------------------------------

    async def async_prepare_cades(
            self, document: bytes | None, selected: Mapping[str, Any] | bytes | x509.Certificate,
            *, document_digest: bytes | None = None, level: str = "B-B",
            hash_algorithm: str = "SHA-256", scheme: str | None = None,
            signing_time: dt.datetime | None = None) -> PendingSignature:
        """Detached CAdES over ``document`` (or its ``document_digest``, for a document
        the portal hashes as it streams): the signed attributes (content type, message
        digest, signing time, signing-certificate-v2) are built here."""
        chosen = SelectedCertificate.parse(selected)
        md_name = hash_name(hash_algorithm)
        level_ = self._level(level)
        if level_ != "B-B":
            self._timestamper(level_)  # a missing TSA is the portal's error, found now
        scheme_ = choose_scheme(chosen.certificate, md_name, scheme, chosen.algorithms)
        if (document is None) == (document_digest is None):
            raise InvalidDocument("give the document or its digest, not both")
        message_digest = (digest(md_name, document) if document is not None
                          else bytes(document_digest or b""))
        if len(message_digest) != len(digest(md_name, b"")):
            raise InvalidDocument(f"the digest is not a {md_name} digest")
        signer = ExternalSigner(
            signing_cert=_asn1(_der(chosen.certificate)), cert_registry=None,
            signature_mechanism=signature_mechanism(scheme_, md_name))
        attributes = await signer.signed_attrs(
            message_digest, HASHES[md_name],
            attr_settings=PdfCMSSignedAttributes(
                signing_time=signing_time or dt.datetime.now(dt.UTC)),
            use_pades=True, is_pdf_sig=False)
        return PendingSignature(
            kind="CAdES", level=level_, hash_algorithm=md_name, scheme=scheme_,
            certificate=_der(chosen.certificate), chain=tuple(_der(c) for c in chosen.chain),
            signed_attributes=attributes.dump(), message_digest=message_digest)

    # --- finish --------------------------------------------------------------------------

    async def async_finish(self, pending: PendingSignature,
                           answer: Mapping[str, Any] | bytes) -> bytes:
        """Check the agent's ``sign.hash`` answer (its result object, or the raw signature
        bytes) and assemble the signature: the signed PDF for PAdES, the DER ContentInfo
        (detached SignedData) for CAdES."""
        if time.time() - pending.created > self.max_age:
            raise InvalidPendingState("the prepared signature has expired: prepare again")
        signature = _signature_from(answer, pending)
        cert = _load_der(pending.certificate)
        check_signature(cert, pending.scheme, pending.hash_algorithm,
                        pending.signed_attributes, signature)
        md = HASHES[pending.hash_algorithm]
        signer = ExternalSigner(
            signing_cert=_asn1(pending.certificate),
            cert_registry=self._registry(pending.chain),
            signature_value=signature,
            signature_mechanism=signature_mechanism(pending.scheme, pending.hash_algorithm))
        timestamper = self._timestamper(pending.level)
        try:
            content = await signer.async_sign_prescribed_attributes(
                md, signed_attrs=cms.CMSAttributes.load(pending.signed_attributes),
                timestamper=timestamper)
        except Exception as exc:  # the signature was checked above: what is left is the TSA
            if timestamper is None:
                raise DocumentSigningError(
                    f"cannot assemble the signature ({type(exc).__name__})") from None
            raise TimestampError(
                f"the time-stamping service failed ({type(exc).__name__})") from None
        if pending.kind == "CAdES":
            if pending.level == "B-LT":
                context = self.validation_context(pending.chain, fetching=True)
                try:
                    content = await add_validation_data(content, context)
                finally:
                    await context.aclose()
            return bytes(content.dump())
        return await self._finish_pdf(pending, content)

    async def _finish_pdf(self, pending: PendingSignature, content: Any) -> bytes:
        if pending.pdf is None:
            raise InvalidPendingState("a PAdES pending signature without its PDF")
        output = BytesIO(pending.pdf)
        prepared = PreparedByteRangeDigest(
            document_digest=pending.message_digest, reserved_region_start=pending.reserved_start,
            reserved_region_end=pending.reserved_end)
        try:
            await PdfTBSDocument.async_finish_signing(output, prepared, content)
        except Exception as exc:  # the placeholder is too small (a TSA answered big)
            raise InvalidPendingState(f"cannot fill the placeholder ({exc})") from None
        if pending.level != "B-LT":
            return output.getvalue()
        context = self.validation_context(pending.chain, fetching=True)
        try:
            reader = PdfFileReader(output, strict=False)
            embedded = reader.embedded_regular_signatures[-1]
            await async_add_validation_info(embedded, context, in_place=True)
        except Exception as exc:  # path building, OCSP/CRL fetching, the TSA's path
            raise ValidationDataError(
                f"no validation data for the signer or the time-stamp ({type(exc).__name__}: "
                f"{exc})") from None
        finally:
            await context.aclose()
        return output.getvalue()

    # --- for portals without an event loop (Flask, Django) -------------------------------

    def prepare_pdf(self, pdf: bytes, selected: Mapping[str, Any] | bytes | x509.Certificate,
                    **options: Any) -> PendingSignature:
        return _run(self.async_prepare_pdf(pdf, selected, **options))

    def prepare_cades(self, document: bytes | None,
                      selected: Mapping[str, Any] | bytes | x509.Certificate,
                      **options: Any) -> PendingSignature:
        return _run(self.async_prepare_cades(document, selected, **options))

    def finish(self, pending: PendingSignature, answer: Mapping[str, Any] | bytes) -> bytes:
        return _run(self.async_finish(pending, answer))


def _read_all(stream: IO[bytes]) -> bytes:
    stream.seek(0)
    return stream.read()


def _run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro
    return asyncio.run(main())


def _signature_from(answer: Mapping[str, Any] | bytes, pending: PendingSignature) -> bytes:
    if isinstance(answer, bytes):
        return answer
    for key, expected in (("scheme", pending.scheme),
                          ("hashAlgorithm", pending.hash_algorithm)):
        if key in answer and answer[key] != expected:
            raise CertificateMismatch(f"sign.hash used {answer[key]}, not {expected}")
    certificate = answer.get("certificate")
    if certificate is not None:
        try:
            der = base64.b64decode(str(certificate), validate=True)
        except binascii.Error:
            raise InvalidCertificate("the answer's certificate is not base64") from None
        if der != pending.certificate:
            raise CertificateMismatch("sign.hash answered for another certificate than the "
                                      "one the signature was prepared for")
    try:
        return base64.b64decode(str(answer.get("signature", "")), validate=True)
    except binascii.Error:
        raise DocumentSigningError("the signature is not base64") from None

