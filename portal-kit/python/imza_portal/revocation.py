"""Revocation status: offline from CRLs the portal configures (and refreshes), for every
certificate on the path; optionally online from the issuer's OCSP responder, for the end
entity."""

from __future__ import annotations

import datetime as dt
import secrets
import urllib.request
from collections.abc import Callable, Sequence
from enum import Enum

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from .certpath import issued_by

# (responder URL, DER OCSP request) -> DER OCSP response; raise OSError when unreachable.
OcspTransport = Callable[[str, bytes], bytes]
OCSP_TIMEOUT = 10.0
OCSP_MAX_RESPONSE = 1 << 20
CLOCK_SKEW = dt.timedelta(minutes=5)


class Status(Enum):
    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


def crl_status(cert: x509.Certificate, issuer: x509.Certificate,
               crls: Sequence[x509.CertificateRevocationList], now: dt.datetime) -> Status:
    """REVOKED when a CRL signed by ``issuer`` lists ``cert``, however old the CRL (a
    revocation is final); GOOD when such a CRL current at ``now`` (thisUpdate <= now <=
    nextUpdate) does not; UNKNOWN otherwise: no configured CRL is ``issuer``'s (one whose
    signature does not verify with the issuer's key is not), or only outdated ones are."""
    status = Status.UNKNOWN
    for crl in crls:
        if crl.issuer != issuer.subject or not _crl_signed_by(crl, issuer):
            continue
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            return Status.REVOKED
        if crl_current(crl, now):
            status = Status.GOOD
    return status


def crl_current(crl: x509.CertificateRevocationList, now: dt.datetime) -> bool:
    """Whether the CRL may say "not revoked" at ``now``: thisUpdate <= now <= nextUpdate,
    both ends inclusive; a CRL without nextUpdate never may (RFC 5280 5.1.2.5 requires it)."""
    next_update = crl.next_update_utc
    return next_update is not None and crl.last_update_utc <= now <= next_update


def _crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    key = issuer.public_key()
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return False
    return crl.is_signature_valid(key)


def http_post(url: str, request: bytes) -> bytes:
    """The default OCSP transport: a plain HTTP POST (RFC 6960 A.1), size-capped."""
    http = urllib.request.Request(url, data=request, method="POST",
                                  headers={"Content-Type": "application/ocsp-request",
                                           "Accept": "application/ocsp-response"})
    with urllib.request.urlopen(http, timeout=OCSP_TIMEOUT) as reply:
        body: bytes = reply.read(OCSP_MAX_RESPONSE + 1)
    if len(body) > OCSP_MAX_RESPONSE:
        raise OSError("the OCSP response is too large")
    return body


def ocsp_urls(cert: x509.Certificate) -> list[str]:
    try:
        access = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return []
    return [str(d.access_location.value) for d in access
            if d.access_method == AuthorityInformationAccessOID.OCSP
            and isinstance(d.access_location, x509.UniformResourceIdentifier)]


def ocsp_status(cert: x509.Certificate, issuer: x509.Certificate, now: dt.datetime,
                transport: OcspTransport = http_post) -> Status:
    """Ask the responders named in ``cert``'s AIA; a response counts only when it is
    signed by the issuer (or a responder it delegated to), names this certificate,
    echoes our nonce when it carries one, and is current at ``now``."""
    nonce = secrets.token_bytes(16)
    request = (ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256())
               .add_extension(x509.OCSPNonce(nonce), critical=False).build())
    der = request.public_bytes(serialization.Encoding.DER)
    for url in ocsp_urls(cert):
        try:
            response = ocsp.load_der_ocsp_response(transport(url, der))
        except (OSError, ValueError):
            continue
        status = _judge(response, cert, issuer, nonce, now)
        if status is not Status.UNKNOWN:
            return status
    return Status.UNKNOWN


def _judge(response: ocsp.OCSPResponse, cert: x509.Certificate, issuer: x509.Certificate,
           nonce: bytes, now: dt.datetime) -> Status:
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return Status.UNKNOWN
    if not _signed_by_responder(response, issuer):
        return Status.UNKNOWN
    if response.serial_number != cert.serial_number or response.issuer_key_hash != _key_hash(
            issuer, response.hash_algorithm):
        return Status.UNKNOWN
    for extension in response.extensions:
        if isinstance(extension.value, x509.OCSPNonce) and extension.value.nonce != nonce:
            return Status.UNKNOWN  # an answer to another request (replayed)
    if response.this_update_utc > now + CLOCK_SKEW:
        return Status.UNKNOWN
    next_update = response.next_update_utc
    if next_update is not None and next_update < now - CLOCK_SKEW:
        return Status.UNKNOWN
    if response.certificate_status == ocsp.OCSPCertStatus.REVOKED:
        return Status.REVOKED
    if response.certificate_status == ocsp.OCSPCertStatus.GOOD:
        return Status.GOOD
    return Status.UNKNOWN


def _key_hash(cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> bytes:
    """The hash of the subjectPublicKey BIT STRING, as OCSP's CertID has it."""
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(algorithm)
    digest.update(_bit_string_contents(spki))
    return digest.finalize()


def _bit_string_contents(spki: bytes) -> bytes:
    """SubjectPublicKeyInfo ::= SEQUENCE { algorithm SEQUENCE, subjectPublicKey BIT STRING };
    the key bits without the unused-bits octet."""
    def skip_header(data: bytes, at: int) -> tuple[int, int]:
        length = data[at + 1]
        at += 2
        if length & 0x80:
            count = length & 0x7F
            length = int.from_bytes(data[at:at + count], "big")
            at += count
        return at, length

    body, _ = skip_header(spki, 0)
    algorithm_start, algorithm_length = skip_header(spki, body)
    bits_start, bits_length = skip_header(spki, algorithm_start + algorithm_length)
    return spki[bits_start + 1:bits_start + bits_length]


def _responder_matches(response: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    if response.responder_name is not None:
        return response.responder_name == cert.subject
    key_hash = response.responder_key_hash
    return key_hash is not None and key_hash == _key_hash(cert, hashes.SHA1())


def _signed_by_responder(response: ocsp.OCSPResponse, issuer: x509.Certificate) -> bool:
    """The issuer itself, or a certificate it issued for OCSP signing (RFC 6960 4.2.2.2)."""
    candidates = [issuer] + [
        c for c in response.certificates if issued_by(c, issuer) and _ocsp_signer(c)]
    for signer in candidates:
        if _responder_matches(response, signer) and _signature_ok(response, signer):
            return True
    return False


def _ocsp_signer(cert: x509.Certificate) -> bool:
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.OCSP_SIGNING in usage


def _signature_ok(response: ocsp.OCSPResponse, signer: x509.Certificate) -> bool:
    key = signer.public_key()
    algorithm = response.signature_hash_algorithm
    if algorithm is None:
        return False
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(response.signature, response.tbs_response_bytes, padding.PKCS1v15(),
                       algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(algorithm))
        else:
            return False
    except InvalidSignature:
        return False
    return True
