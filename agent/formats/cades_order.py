"""SET OF values encoded in the order they are given.

asn1crypto sorts a SET OF's elements when it encodes one (DER).  A SignedData is BER:
only the signed attributes must be DER.  Sorted, a page's SignerInfos would move about
when a signer is added (its ``counterSign`` indexes would name other signers), and
countersignatures and unsigned attributes would change places.  Kept in order, what was
there stays where it was and what is added comes last."""

from __future__ import annotations

from typing import Any

from asn1crypto import cms


def _unsorted(base: Any) -> Any:
    class InOrder(base):  # type: ignore[misc]
        def _set_contents(self, force: bool = False) -> None:
            # asn1crypto's SetOf._set_contents without the sorting.
            if self.children is None:
                self._parse_children()
            self._contents = b"".join(child.dump(force=force) for child in self)
            self._header = None
            self._trailer = b""

    InOrder.__name__ = f"{base.__name__}InOrder"
    return InOrder


SignerInfosInOrder = _unsorted(cms.SignerInfos)
AttributesInOrder = _unsorted(cms.CMSAttributes)
CertificatesInOrder = _unsorted(cms.CertificateSet)
RevocationInOrder = _unsorted(cms.RevocationInfoChoices)


def keep_order(content: cms.ContentInfo) -> cms.ContentInfo:
    """The SignedData's SignerInfos, certificates and CRLs re-wrapped so that encoding it
    keeps their order (their elements' encodings are kept as they are)."""
    signed = content["content"]
    signed["signer_infos"] = SignerInfosInOrder(list(signed["signer_infos"]))
    if signed["certificates"].native is not None:
        signed["certificates"] = CertificatesInOrder(list(signed["certificates"]))
    if signed["crls"].native is not None:
        signed["crls"] = RevocationInOrder(list(signed["crls"]))
    return content
