"""Inside a document worker: what every format's verification shares — pyHanko's
validation spec built from the configured anchors and network, the ETSI indication of a
pyHanko AdES sub-indication, and the signer's and chain's facts for the report.

No cryptography here: pyHanko, pyhanko-certvalidator and signxml do all of it."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from pyhanko.sign.ades.report import AdESFailure, AdESIndeterminate, AdESStatus, AdESSubIndic
from pyhanko.sign.validation.policy_decl import (
    LocalKnowledge,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.policy_decl import (
    CertRevTrustPolicy,
    RevocationCheckingPolicy,
    RevocationCheckingRule,
)
from pyhanko_certvalidator.registry import SimpleTrustManager
from pyhanko_certvalidator.revinfo.archival import CRLContainer, OCSPContainer

from agent.formats.anchors import Anchors
from agent.formats.network import NetworkSettings
from agent.formats.revocation import SessionFetcherBackend, to_asn1

PASSED, INDETERMINATE, FAILED = "TOTAL-PASSED", "INDETERMINATE", "TOTAL-FAILED"
_INDICATION = {AdESStatus.PASSED: PASSED, AdESStatus.INDETERMINATE: INDETERMINATE,
               AdESStatus.FAILED: FAILED}
MAX_CHAIN = 10  # certificates reported per chain: a document cannot inflate the report


def _wire_has_countersigns() -> bool:
    """Whether the report's wire model has ``countersigns`` yet (the daemon refuses a
    report with a field it does not know; the model is the lead's to change)."""
    from agent.protocol.params_verify import SignatureReport

    return "countersigns" in SignatureReport.model_fields


_WIRE_HAS_COUNTERSIGNS = _wire_has_countersigns()


@dataclass
class Verdict:
    indication: str
    sub_indication: str | None = None
    message: str | None = None

    @classmethod
    def of(cls, subindic: AdESSubIndic, message: str | None = None) -> Verdict:
        indication = _INDICATION[subindic.status]
        return cls(indication, None if indication == PASSED else subindic.standard_name,
                   cap(message, 400))


def cap(text: str | None, limit: int) -> str | None:
    """A document's text for the report, no longer than the wire model allows (a longer
    one would make the whole report unreadable to the daemon)."""
    return None if text is None else text[:limit]


@dataclass
class SignatureFacts:
    """One signature's report, as JSON (see docs/formats.md "Verification")."""

    format: str
    level: str | None
    verdict: Verdict
    signer: dict[str, Any] | None = None
    claimed_signing_time: dt.datetime | None = None
    timestamp_time: dt.datetime | None = None
    best_signature_time: dt.datetime | None = None
    chain: list[dict[str, Any]] = field(default_factory=list)
    revocation: dict[str, Any] = field(default_factory=dict)
    field_name: str | None = None
    coverage: str | None = None
    countersigns: int | None = None  # a countersignature: the report number it signs

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": self.format, "level": self.level,
            "indication": self.verdict.indication,
            "subIndication": self.verdict.sub_indication,
            "message": self.verdict.message, "signer": self.signer,
            "claimedSigningTime": _iso(self.claimed_signing_time),
            "timestampTime": _iso(self.timestamp_time),
            "bestSignatureTime": _iso(self.best_signature_time),
            "chain": self.chain[:MAX_CHAIN], "revocation": self.revocation or None,
            "fieldName": cap(self.field_name, 400), "coverage": self.coverage}
        if _WIRE_HAS_COUNTERSIGNS:
            out["countersigns"] = self.countersigns
        return {k: v for k, v in out.items() if v is not None}


def _iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def certificate_facts(cert: asn1_x509.Certificate) -> dict[str, Any]:
    subject = cert.subject.native
    return {"commonName": cap(_text(subject.get("common_name")), 400),
            "subjectSerialNumber": cap(_text(subject.get("serial_number")), 400),
            "subject": cap(cert.subject.human_friendly, 2000),
            "issuer": cap(cert.issuer.human_friendly, 2000),
            "serial": cap(format(cert.serial_number, "X"), 80),
            "notBefore": _iso(cert.not_valid_before), "notAfter": _iso(cert.not_valid_after),
            "certificate": base64.b64encode(cert.dump()).decode("ascii")}


def _text(value: object) -> str | None:
    """A name attribute as text: a multi-valued one (a list) joined."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def chain_facts(path: Iterable[Any] | None) -> list[dict[str, Any]]:
    """The validation path from the signer up to the anchor (pyhanko-certvalidator's
    ``ValidationPath`` lists the anchor first)."""
    if path is None:
        return []
    certs = [c for c in path if isinstance(c, asn1_x509.Certificate)]
    return [{"subject": cap(c.subject.human_friendly, 2000),
             "serial": cap(format(c.serial_number, "X"), 80),
             "certificate": base64.b64encode(c.dump()).decode("ascii")}
            for c in reversed(certs)][:MAX_CHAIN]


def revocation_facts(status: Any, embedded: LocalKnowledge, verdict: Verdict
                     ) -> dict[str, Any]:
    """"good" only when the signer's status was established: the signature passed, or its
    path validated without a trust problem; "unknown" otherwise."""
    details = getattr(status, "revocation_details", None)
    checked = verdict.indication == PASSED or (
        getattr(status, "validation_path", None) is not None
        and getattr(status, "trust_problem_indic", None) is None)
    out: dict[str, Any] = {
        "status": "revoked" if details is not None else "good" if checked else "unknown",
        "embeddedOcspResponses": len(embedded.known_ocsps),
        "embeddedCrls": len(embedded.known_crls)}
    if details is not None:
        out["revocationTime"] = _iso(details.revocation_date)
        out["caRevoked"] = bool(details.ca_revoked)
    return out


def embedded_revocation(signed_data: cms.SignedData) -> LocalKnowledge:
    """OCSP responses and CRLs a CMS SignedData carries (in ``crls``, where B-LT puts
    them here, and CAdES ``revocation-values``): pyHanko reads them as local knowledge."""
    ocsps: list[OCSPContainer] = []
    crls: list[CRLContainer] = []
    for choice in signed_data["crls"] or ():
        if choice.name == "crl":
            crls.append(CRLContainer(choice.chosen))
        elif choice.name == "other" and \
                choice.chosen["other_rev_info_format"].native == "ocsp_response":
            ocsps.extend(OCSPContainer.load_multi(choice.chosen["other_rev_info"]))
    for info in signed_data["signer_infos"]:
        for attr in info["unsigned_attrs"] or ():
            if attr["type"].dotted == REVOCATION_VALUES:
                for crl in _field(attr["values"][0], "crl_vals"):
                    crls.append(CRLContainer(crl))
    return LocalKnowledge(known_ocsps=ocsps, known_crls=crls)


def merged(*parts: LocalKnowledge) -> LocalKnowledge:
    return LocalKnowledge(known_ocsps=[o for p in parts for o in p.known_ocsps],
                          known_crls=[c for p in parts for c in p.known_crls],
                          known_certs=[c for p in parts for c in p.known_certs])


def _field(value: Any, name: str) -> Sequence[Any]:
    try:
        return list(value[name] or ()) if value is not None else []
    except (KeyError, TypeError, ValueError):
        return []


REVOCATION_VALUES = "1.2.840.113549.1.9.16.2.24"
CERTIFICATE_VALUES = "1.2.840.113549.1.9.16.2.23"
ARCHIVE_TIMESTAMP_V3 = "0.4.0.1733.2.4"
ARCHIVE_TIMESTAMP_V2 = "1.2.840.113549.1.9.16.2.48"


def revinfo_policy(*, retroactive: bool = False) -> CertRevTrustPolicy:
    """The signer's status is required; a CA's is checked where its certificate names a
    source.  ``retroactive``: status information issued after the validation time counts
    (a signature judged at its time-stamp)."""
    return CertRevTrustPolicy(RevocationCheckingPolicy(
        ee_certificate_rule=RevocationCheckingRule.CRL_OR_OCSP_REQUIRED,
        intermediate_ca_cert_rule=RevocationCheckingRule.CHECK_IF_DECLARED),
        retroactive_revinfo=retroactive)


def validation_spec(anchors: Anchors, network: NetworkSettings,
                    session: aiohttp.ClientSession,
                    local: LocalKnowledge | None = None) -> SignatureValidationSpec:
    """Trust: the configured roots only (no system store: a verifier that trusts
    everything it is shown would pass anything).  Revocation: the signer's status is
    required (from embedded data or the network); a CA's is checked where its certificate
    names a source (roots' own CAs often publish none)."""
    trust = SimpleTrustManager.build(trust_roots=[to_asn1(c) for c in anchors.roots])
    policy = CertValidationPolicySpec(trust_manager=trust, revinfo_policy=revinfo_policy())
    others = [to_asn1(c) for c in anchors.others]
    knowledge = local or LocalKnowledge()
    knowledge = LocalKnowledge(known_ocsps=knowledge.known_ocsps,
                               known_crls=knowledge.known_crls,
                               known_certs=[*knowledge.known_certs, *others])
    return SignatureValidationSpec(
        cert_validation_policy=policy,
        revinfo_gathering_policy=RevocationInfoGatheringSpec(
            online_fetching_rule=RevinfoOnlineFetchingRule.ALWAYS_FETCH,
            fetcher_backend=SessionFetcherBackend(session, network)),
        local_knowledge=knowledge)


def verdict_of(subindic: AdESSubIndic, status: Any, message: str | None,
               claimed: dt.datetime | None) -> Verdict:
    """pyHanko's AdES result, with one step of EN 319 102-1 §5.3.4 it leaves out: a
    signer whose certificate was revoked before the signing time it claims itself has
    signed with a revoked certificate — TOTAL-FAILED REVOKED, not REVOKED_NO_POE."""
    details = getattr(status, "revocation_details", None)
    if subindic is AdESIndeterminate.REVOKED_NO_POE and details is not None \
            and not details.ca_revoked and claimed is not None \
            and details.revocation_date <= claimed:
        return Verdict.of(AdESFailure.REVOKED, message)
    return Verdict.of(subindic, message)
