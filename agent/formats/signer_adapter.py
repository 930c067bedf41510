"""pyHanko's CMS ``Signer`` over the job's one signature.

pyHanko wants to "sign bytes" whenever it likes; the job's ``sign`` may be used once
(the user confirms once).  Size estimates (pyHanko's ``dry_run``) get a placeholder of
the right length and never reach the key.

The user confirms before pyHanko builds the signed attributes (D3 of issue 14): pyHanko
takes the CAdES signing-time (``datetime.now``, in its CAdES attribute provider) while
it builds them, so the time is the user's answer, not the request's arrival.  A PAdES
signature's time is taken earlier still, when pyHanko's signing session starts:
``agent.formats.pades`` confirms before that itself.
"""

from __future__ import annotations

import hashlib

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes, Signer
from pyhanko.sign.timestamps import TimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore

from agent.errors import Unsupported
from agent.formats.job import FormatJob, confirm

DIGESTS = ("sha256", "sha384", "sha512")  # what pyHanko may ask for and tokens sign


def checked_digest_name(name: str) -> str:
    name = name.lower()
    if name not in DIGESTS:
        raise Unsupported(f"digest algorithm {name} is not supported")
    return name


def placeholder_signature(cert: x509.Certificate) -> bytes:
    """Bytes as long as the longest real signature of this key, for size estimates."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return bytes((key.key_size + 7) // 8)
    if isinstance(key, ec.EllipticCurvePublicKey):
        coordinate = (key.key_size + 7) // 8
        body = 2 * (2 + coordinate + 1)  # two INTEGERs, each maybe with a leading zero
        return bytes(body + (2 if body < 128 else 3))
    raise Unsupported("only RSA and EC keys can sign")


def to_asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))


class JobSigner(Signer):
    """A pyHanko CMS signer whose raw signature comes from ``FormatJob.sign``.

    pyHanko passes the DER of the signed attributes; we hash them with the requested
    digest and have the token sign that hash."""

    def __init__(self, job: FormatJob) -> None:
        super().__init__(
            signing_cert=to_asn1(job.certificate),
            cert_registry=SimpleCertificateStore.from_certs([to_asn1(c) for c in job.chain]),
            embed_roots=True)
        self._job = job
        self._placeholder = placeholder_signature(job.certificate)

    async def signed_attrs(self, data_digest: bytes, digest_algorithm: str,
                           attr_settings: PdfCMSSignedAttributes | None = None,
                           content_type: str = "data", use_pades: bool = False,
                           timestamper: TimeStamper | None = None, dry_run: bool = False,
                           is_pdf_sig: bool = True) -> cms.CMSAttributes:
        if not dry_run:
            await confirm(self._job.sign)  # the dialog first: the signing-time follows it
        attrs: cms.CMSAttributes = await super().signed_attrs(
            data_digest, digest_algorithm, attr_settings=attr_settings,
            content_type=content_type, use_pades=use_pades, timestamper=timestamper,
            dry_run=dry_run, is_pdf_sig=is_pdf_sig)
        return attrs

    async def async_sign_raw(self, data: bytes, digest_algorithm: str,
                             dry_run: bool = False) -> bytes:
        if dry_run:
            return self._placeholder
        name = checked_digest_name(digest_algorithm)
        return await self._job.sign(hashlib.new(name, data).digest(), name)
