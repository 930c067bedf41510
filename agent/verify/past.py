"""Past signature validation over an archive time-stamp (EN 319 102-1 §5.6.2.4 as §5.6.3
applies it to B-LTA signatures).

A signature that does not pass at the current time only because something has since
expired or been revoked (its signature time-stamp's TSA certificate, the signer's
certificate) is judged again at the time a proof of existence (POE) allows:

1. the archive time-stamps (CAdES archive-time-stamp-v3, XAdES ArchiveTimeStamp, PAdES
   document time-stamps after the signature) are validated *now* by the caller; the
   oldest one's time ``archived`` is a POE for everything it covers — the signature value,
   its signature time-stamp and the validation data;
2. the signature time-stamp is validated at ``archived`` (its TSA certificate must have
   been valid then, and not revoked before); its time is then the signature's POE, else
   ``archived`` itself is;
3. the signer's certificate path is validated at that POE, status information issued
   later counting (it tells whether a revocation came before): revoked before it —
   TOTAL-FAILED REVOKED; fine — TOTAL-PASSED.

Why not pyHanko's own past validation (``ades_past_signature_validation`` /
pyhanko-certvalidator's ``past_validate``): its time-slide asks for revocation data, with a
POE of its own, for every certificate of the path — CA certificates that publish no status
included — and answers INDETERMINATE NO_POE on a B-LTA signature made a minute ago by the
agent against a real CA (tests/test_verify_archive_poe.py shows it for PAdES, where
pyHanko's LTA process runs it).  Steps 2 and 3 are therefore pyhanko-certvalidator's
point-in-time validation (a ``ValidationContext`` with ``moment``) at the POE the archive
time-stamp gives: the same cryptography and path rules, the POE bookkeeping done here.

The signature's own integrity (digest, signature value) is not re-checked: this runs only
after the current-time validation found it intact and reached a time-related
INDETERMINATE."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from pyhanko.sign.ades.report import AdESFailure, AdESIndeterminate, AdESSubIndic
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator import errors as cv_errors

from agent.formats.job import KeylessJob
from agent.formats.revocation import SessionFetcherBackend, to_asn1
from agent.verify.archive import Imprint, check_signed_token
from agent.verify.common import INDETERMINATE, PASSED, Verdict, revinfo_policy

# The current-time results EN 319 102-1 §5.6.3.4 step 3 hands to past validation.
FURTHER_PROCESSING = frozenset(s.name for s in (
    AdESIndeterminate.OUT_OF_BOUNDS_NO_POE, AdESIndeterminate.OUT_OF_BOUNDS_NOT_REVOKED,
    AdESIndeterminate.REVOKED_NO_POE, AdESIndeterminate.REVOKED_CA_NO_POE,
    AdESIndeterminate.TRY_LATER, AdESIndeterminate.NO_POE,
    AdESIndeterminate.REVOCATION_OUT_OF_BOUNDS_NO_POE,
    AdESIndeterminate.CRYPTO_CONSTRAINTS_FAILURE_NO_POE))


def needs_past_validation(verdict: Verdict) -> bool:
    return verdict.indication == INDETERMINATE and verdict.sub_indication in FURTHER_PROCESSING


@dataclass
class Material:
    """What the signature carries (and the anchors add) for validation in the past."""

    certs: list[asn1_x509.Certificate] = field(default_factory=list)
    crls: list[Any] = field(default_factory=list)
    ocsps: list[Any] = field(default_factory=list)


@dataclass
class PastResult:
    verdict: Verdict
    moment: dt.datetime  # the POE the signer was judged at
    timestamp: dt.datetime | None  # the signature time-stamp's time, when it held then
    path: Any = None
    revocation: dict[str, Any] = field(default_factory=dict)


def context_at(job: KeylessJob, session: Any, moment: dt.datetime | None,
               material: Material) -> ValidationContext:
    """pyhanko-certvalidator's context at ``moment`` (None: now): the configured roots,
    what the signature carries, status fetched over the verification's guarded session.
    At a past moment, status issued after it still tells whether a revocation came
    before it."""
    return ValidationContext(
        trust_roots=[to_asn1(c) for c in job.anchors.roots],
        other_certs=[*(to_asn1(c) for c in job.anchors.others), *material.certs],
        crls=list(material.crls), ocsps=list(material.ocsps), allow_fetching=True,
        moment=moment, revinfo_policy=revinfo_policy(retroactive=moment is not None),
        fetcher_backend=SessionFetcherBackend(session, job.network))


async def judge_at_archive(job: KeylessJob, session: Any, archived: dt.datetime,
                           stamp: cms.SignedData | None, imprint: Imprint | None,
                           signer: asn1_x509.Certificate, claimed: dt.datetime | None,
                           material: Material) -> PastResult:
    """Steps 2 and 3 of the module's process.  ``stamp``/``imprint``: the signature
    time-stamp and what it must cover (None: the signature has none)."""
    moment, stamped = archived, None
    if stamp is not None and imprint is not None:
        result = await check_signed_token(stamp, context_at(job, session, archived, material),
                                          imprint, "signature time-stamp")
        if isinstance(result, dt.datetime) and result <= archived:
            moment = stamped = result
    verdict, path, revocation = await signer_at(
        job, session, signer, moment, claimed, material)
    if verdict.indication == PASSED:
        verdict = Verdict(PASSED, None, _iso_note(moment, archived))
    return PastResult(verdict, moment, stamped, path, revocation)


def _iso_note(moment: dt.datetime, archived: dt.datetime) -> str:
    """The reasoning, for the report's message (the document's language is English, as
    pyHanko's messages; the command line shows the translated times beside it)."""
    return (f"validated at {moment.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC, proven by the "
            f"archive time-stamp of {archived.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC")


def oldest(times: Iterable[dt.datetime]) -> dt.datetime | None:
    return min(times, default=None)


def _verdict(subindic: AdESSubIndic, message: str) -> Verdict:
    return Verdict.of(subindic, message[:300])


async def signer_at(job: KeylessJob, session: Any, cert: asn1_x509.Certificate,
                    moment: dt.datetime | None, claimed: dt.datetime | None,
                    material: Material) -> tuple[Verdict, Any, dict[str, Any]]:
    """The signer's path validated at ``moment`` (None: now) by pyhanko-certvalidator:
    the verdict, the path and the revocation facts for the report.  Revoked before the
    time the signer claims (or, without one, the moment): TOTAL-FAILED REVOKED
    (EN 319 102-1 §5.3.4); after it: INDETERMINATE REVOKED_NO_POE."""
    context = context_at(job, session, moment, material)
    revocation: dict[str, Any] = {"status": "good"}
    try:
        path = await CertificateValidator(cert, validation_context=context
                                          ).async_validate_path()
    except cv_errors.RevokedError as exc:
        revocation = {"status": "revoked", "revocationTime":
                      exc.revocation_dt.astimezone(dt.UTC).isoformat()}
        when = claimed or moment
        failed = when is not None and exc.revocation_dt <= when
        return (_verdict(AdESFailure.REVOKED if failed else AdESIndeterminate.REVOKED_NO_POE,
                         str(exc)), None, revocation)
    except cv_errors.ExpiredError as exc:
        return _verdict(AdESIndeterminate.OUT_OF_BOUNDS_NO_POE, str(exc)), None, revocation
    except cv_errors.NotYetValidError as exc:
        return _verdict(AdESIndeterminate.NOT_YET_VALID, str(exc)), None, revocation
    except cv_errors.InsufficientRevinfoError as exc:
        return (_verdict(AdESIndeterminate.TRY_LATER, str(exc)), None,
                {"status": "unknown"})
    except cv_errors.PathBuildingError as exc:
        return (_verdict(AdESIndeterminate.NO_CERTIFICATE_CHAIN_FOUND, str(exc)), None,
                {"status": "unknown"})
    except cv_errors.InvalidCertificateError as exc:
        return (_verdict(AdESIndeterminate.CHAIN_CONSTRAINTS_FAILURE, str(exc)), None,
                revocation)
    except cv_errors.PathValidationError as exc:
        return (_verdict(AdESIndeterminate.CERTIFICATE_CHAIN_GENERAL_FAILURE, str(exc)), None,
                {"status": "unknown"})
    revocation["embeddedOcspResponses"] = len(material.ocsps)
    revocation["embeddedCrls"] = len(material.crls)
    # What the context holds beyond what the signature carried was fetched.
    revocation["fetchedOcspResponses"] = max(0, len(context.ocsps) - len(material.ocsps))
    revocation["fetchedCrls"] = max(0, len(context.crls) - len(material.crls))
    return Verdict(PASSED), path, revocation
