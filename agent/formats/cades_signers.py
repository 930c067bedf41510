"""Several signers in one CMS SignedData (issue 14 §1): the page's existing signature is
read here, in a document worker, and checked before the user is asked anything.

* parallel signature: one more SignerInfo over the same content, with its certificates;
  the existing SignerInfos are left byte for byte as they were;
* countersignature (RFC 5652 §11.4): a SignerInfo over the signature value of a chosen
  SignerInfo, in that SignerInfo's unsigned attributes.

pyHanko signs (it builds the new SignerInfo) but has no helper to merge a SignerInfo into
someone else's SignedData or to countersign, so the merging is ours, with asn1crypto.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from asn1crypto import cms
from cryptography import x509

from agent.errors import Unsupported
from agent.formats.cades_order import AttributesInOrder, SignerInfosInOrder, keep_order

# How many SignerInfos (countersignatures included) an existing signature may have: a
# page's signature is parsed whole, and each signer costs a hash and a check.
MAX_SIGNER_INFOS = 64
_HASHES = {"sha1", "sha224", "sha256", "sha384", "sha512", "sha3_256", "sha3_384",
           "sha3_512"}


def refused(message: str, detail: str) -> Unsupported:
    return Unsupported(message, detail=detail)


@dataclass(frozen=True)
class ExistingSignature:
    """A page's SignedData, parsed and bounded."""

    content: cms.ContentInfo  # what is added to: its parts are not read more than needed
    der: bytes  # as the page sent it: read from a parse of its own (``for_reading``)

    def for_reading(self) -> ExistingSignature:
        """A parse of its own to read from: reading marks asn1crypto values as changed,
        and changed values are re-encoded (sets re-sorted) when the result is encoded."""
        return ExistingSignature(cms.ContentInfo.load(self.der), self.der)

    @property
    def signed(self) -> cms.SignedData:
        signed: cms.SignedData = self.content["content"]
        return signed

    @property
    def signer_infos(self) -> list[cms.SignerInfo]:
        return list(self.signed["signer_infos"])

    @property
    def content_type(self) -> str:
        name: str = self.signed["encap_content_info"]["content_type"].native
        return name

    def attached_content(self) -> bytes | None:
        """The content of an attached signature, None for a detached one."""
        econtent = self.signed["encap_content_info"]["content"]
        if econtent.native is None:
            return None
        value = econtent.native if isinstance(econtent.native, bytes) else econtent.contents
        return bytes(value)


def load_signature(der: bytes) -> ExistingSignature:
    """Parse the page's signature; anything else than a sane SignedData is UNSUPPORTED with
    ``detail`` BAD_SIGNATURE.  asn1crypto parses lazily: every part is touched here, on a
    copy of its own, so a malformed one fails now, not half-way through; the copy we
    return is untouched (touching parts marks them changed, and asn1crypto would then
    re-encode — and re-sort — what a signature covers)."""
    try:
        _check_parses(cms.ContentInfo.load(der, strict=True))
        content = keep_order(cms.ContentInfo.load(der, strict=True))
        ExistingSignature(content, der).for_reading().attached_content()
    except Unsupported:
        raise
    except Exception:  # asn1crypto raises many kinds on garbage; the page learns one
        raise refused("the signature could not be read as CMS", "BAD_SIGNATURE") from None
    return ExistingSignature(content, der)


def _check_parses(content: cms.ContentInfo) -> None:
    if content["content_type"].native != "signed_data":
        raise refused("the signature is not a CMS SignedData", "BAD_SIGNATURE")
    signed = content["content"]
    infos = signed["signer_infos"]
    if len(infos) == 0:
        raise refused("the signature has no signer", "BAD_SIGNATURE")
    total = 0
    for info in infos:
        total += 1 + _countersignature_count(info, 0)
        if total > MAX_SIGNER_INFOS:
            raise refused(f"the signature has more than {MAX_SIGNER_INFOS} signers",
                          "TOO_MANY_SIGNERS")
    signed.native  # noqa: B018 (everything, certificates and nested tokens included)


def _countersignature_count(info: cms.SignerInfo, depth: int) -> int:
    if depth > 4:  # countersignatures of countersignatures: a page's nesting, bounded
        raise refused("countersignatures are nested too deep", "TOO_MANY_SIGNERS")
    count = 0
    for attribute in info["unsigned_attrs"] or []:
        if attribute["type"].native == "counter_signature":
            for value in attribute["values"]:
                count += 1 + _countersignature_count(value, depth + 1)
                if count > MAX_SIGNER_INFOS:
                    raise refused(f"the signature has more than {MAX_SIGNER_INFOS} signers",
                                  "TOO_MANY_SIGNERS")
    return count


def message_digest(info: cms.SignerInfo) -> bytes | None:
    for attribute in info["signed_attrs"] or []:
        if attribute["type"].native == "message_digest":
            value: bytes = attribute["values"][0].native
            return value
    return None


def check_covered_content(existing: ExistingSignature, data: bytes | None,
                          data_digest: bytes | None, md: str) -> bytes:
    """The hash (``md``) of the content the existing signature covers, after checking it
    against an existing signer's message-digest: ``data`` when the page sent it, else its
    ``data_digest``, else an attached signature's content.  A parallel signature over
    other data would make a SignedData that no verifier accepts, so a mismatch fails
    before the user is asked (UNSUPPORTED, ``detail`` DATA_MISMATCH)."""
    existing = existing.for_reading()
    attached = existing.attached_content()
    if data is None and data_digest is None:
        if attached is None:
            raise refused("the signature is detached: give its data or hash", "NO_DATA")
        data = attached
    checked = False
    for info in existing.signer_infos:
        expected = message_digest(info)
        algorithm = info["digest_algorithm"]["algorithm"].native
        if expected is None:
            continue
        if data is not None and algorithm in _HASHES:
            actual = hashlib.new(algorithm, data).digest()
        elif algorithm == md and data_digest is not None:
            actual = data_digest
        else:
            continue
        if actual != expected:
            raise refused("the data is not what the existing signature covers",
                          "DATA_MISMATCH")
        checked = True
    if not checked:
        raise refused(f"no existing signer uses {md}: give the data, or its hash with a "
                      "signer's algorithm", "DIGEST_ALGORITHM")
    if data is not None:
        return hashlib.new(md, data).digest()
    assert data_digest is not None
    return data_digest


def countersigned(existing: ExistingSignature, index: int) -> cms.SignerInfo:
    infos = existing.signer_infos
    if index >= len(infos):
        raise refused(f"the signature has no signer {index}", "NO_SUCH_SIGNER")
    return infos[index]


def merge_certificates(signed: cms.SignedData, new: cms.SignedData) -> None:
    """The new signer's certificates (pyHanko put its chain there) joined to the existing
    ones, which keep their encodings and order."""
    certs = list(signed["certificates"] or [])
    known = {c.dump() for c in certs}
    for choice in new["certificates"] or []:
        if choice.dump() not in known:
            known.add(choice.dump())
            certs.append(choice)
    signed["certificates"] = certs


def add_parallel(existing: ExistingSignature, made: cms.ContentInfo) -> cms.ContentInfo:
    """The existing SignedData with the SignerInfo that pyHanko made in ``made``."""
    signed = existing.signed
    new = made["content"]
    new_info = new["signer_infos"][0]
    signed["signer_infos"] = SignerInfosInOrder([*existing.signer_infos, new_info])
    algorithms = list(signed["digest_algorithms"])
    if new_info["digest_algorithm"]["algorithm"].native not in {
            a["algorithm"].native for a in algorithms}:
        algorithms.append(new_info["digest_algorithm"])
        signed["digest_algorithms"] = algorithms
    merge_certificates(signed, new)
    return keep_order(existing.content)


def add_countersignature(existing: ExistingSignature, index: int,
                         made: cms.ContentInfo) -> cms.ContentInfo:
    """The existing SignedData with ``made``'s SignerInfo as a countersignature of signer
    ``index`` (appended to its countersignature attribute if it has one)."""
    target = countersigned(existing, index)
    new = made["content"]
    countersignature = new["signer_infos"][0]
    attributes = list(target["unsigned_attrs"] or [])
    for position, attribute in enumerate(attributes):
        if attribute["type"].native == "counter_signature":
            attributes[position] = cms.CMSAttribute({
                "type": "counter_signature",
                "values": SignerInfosInOrder([*attribute["values"], countersignature])})
            break
    else:
        attributes.append(cms.CMSAttribute({"type": "counter_signature",
                                            "values": [countersignature]}))
    target["unsigned_attrs"] = AttributesInOrder(attributes)
    merge_certificates(existing.signed, new)
    return keep_order(existing.content)


def countersignature_digest(existing: ExistingSignature, index: int, md: str) -> bytes:
    """RFC 5652 §11.4: the message digest of a countersignature is over the contents
    octets of the countersigned SignerInfo's signature value."""
    value: bytes = countersigned(existing.for_reading(), index)["signature"].native
    return hashlib.new(md, value).digest()


def without_content_type(attributes: cms.CMSAttributes) -> cms.CMSAttributes:
    """RFC 5652 §11.4: a countersignature's signed attributes carry no content-type."""
    return cms.CMSAttributes([a for a in attributes if a["type"].native != "content_type"])


def as_crypto_certificates(signed: cms.SignedData) -> list[x509.Certificate]:
    """The SignedData's X.509 certificates (to build validation paths with)."""
    out = []
    for choice in signed["certificates"] or []:
        if choice.name == "certificate":
            try:
                out.append(x509.load_der_x509_certificate(choice.chosen.dump()))
            except ValueError:
                continue  # a certificate the page sent that cryptography cannot read
    return out
