"""``imza-agent verify FILE [--data DETACHED] [--json]``: the verdict on each signature of
a signed file (CMS, PDF, XML or an ASiC-E container), for the people who receive
documents.  It needs no running agent: the
file is read in a document worker of this process, under the ``[documents]`` limits, with
the ``[formats]`` trust anchors and network.  Exit status 0 only when every signature is
TOTAL-PASSED; 1 when one is not; 2 when the file cannot be verified at all."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from agent.commands.text import error
from agent.config import Config
from agent.errors import AgentError
from agent.i18n import _
from agent.protocol.params_verify import (
    Indication,
    SignatureReport,
    SignatureVerifyResult,
    VerifyFormat,
)

NOT_VERIFIED = 2


def _indication_text(indication: Indication) -> str:
    return {Indication.TOTAL_PASSED: _("valid (TOTAL-PASSED)"),
            Indication.INDETERMINATE: _("cannot be confirmed (INDETERMINATE)"),
            Indication.TOTAL_FAILED: _("invalid (TOTAL-FAILED)")}[indication]


def _sub_indication_text(sub: str) -> str:
    """The common sub-indications explained; the ETSI name is always shown too."""
    known = {
        "HASH_FAILURE": _("the signed content was changed"),
        "SIG_CRYPTO_FAILURE": _("the signature value does not match the signer's key"),
        "REVOKED": _("the signer's certificate was revoked before the signing time"),
        "REVOKED_NO_POE": _("the signer's certificate is revoked and nothing proves the "
                            "signature is older"),
        "OUT_OF_BOUNDS_NO_POE": _("the signer's certificate has expired and no time-stamp "
                                  "proves the signature is older"),
        "NO_CERTIFICATE_CHAIN_FOUND": _("the signer's certificate does not lead to a "
                                        "trusted root"),
        "TRY_LATER": _("the signer's revocation status could not be had; try again later"),
        "FORMAT_FAILURE": _("the signature is malformed"),
        "NO_SIGNING_CERTIFICATE_FOUND": _("the signer's certificate is missing"),
        "NO_POE": _("a time-stamp of the signature is invalid: nothing proves when the "
                    "signature existed"),
    }
    text = known.get(sub)
    return f"{sub}: {text}" if text else sub


def render(result: SignatureVerifyResult) -> str:
    lines: list[str] = []
    for number, report in enumerate(result.signatures, start=1):
        lines.append(_("Signature {number} of {total}").format(
            number=number, total=len(result.signatures)))
        lines.extend(f"  {line}" for line in _report_lines(report))
    return "\n".join(lines)


def _report_lines(report: SignatureReport) -> list[str]:
    out = [_("Result: {indication}").format(indication=_indication_text(report.indication))]
    if report.sub_indication:
        out.append(_("Reason: {reason}").format(
            reason=_sub_indication_text(report.sub_indication)))
    if report.level:
        out.append(_("Level: {level}").format(level=report.level))
    if report.signer is not None:
        out.append(_("Signer: {name}").format(
            name=report.signer.common_name or report.signer.subject))
        out.append(_("Certificate serial: {serial}; issuer: {issuer}").format(
            serial=report.signer.serial, issuer=report.signer.issuer))
    if report.claimed_signing_time:
        out.append(_("Signing time (claimed by the signer): {time}").format(
            time=report.claimed_signing_time))
    if report.timestamp_time:
        out.append(_("Time-stamped at: {time}").format(time=report.timestamp_time))
    if report.best_signature_time:
        # The time the signature was judged at: its time-stamp's, or an archive
        # time-stamp's when the first one's certificate has expired (agent/verify/past.py).
        out.append(_("Validated as of: {time}").format(time=report.best_signature_time))
    countersigns = getattr(report, "countersigns", None)
    if countersigns:
        out.append(_("Countersignature of signature {number}").format(number=countersigns))
    if report.field_name and report.format is VerifyFormat.ASIC:
        out.append(_("Signature file in the container: {name}").format(
            name=report.field_name))
    elif report.field_name:
        out.append(_("Signature field: {name}").format(name=report.field_name))
    if report.chain:
        out.append(_("Chain: {chain}").format(
            chain=" → ".join(entry.subject for entry in report.chain)))
    if report.revocation is not None:
        status = {"good": _("not revoked"), "revoked": _("revoked")}.get(
            report.revocation.status, _("unknown"))
        out.append(_("Revocation status: {status}").format(status=status))
    return out


async def _verify(config: Config, signature: bytes, data: bytes | None
                  ) -> SignatureVerifyResult:
    from agent.formats.isolation import configure_document_workers, document_workers
    from agent.verify.service import verify_signature

    # pyHanko narrates its validation steps as warnings; the verdict says what matters.
    for name in ("pyhanko", "pyhanko_certvalidator"):
        logging.getLogger(name).setLevel(logging.ERROR)
    configure_document_workers(config.documents)
    try:
        return await verify_signature(config.formats, signature, data, None)
    finally:
        await document_workers().close()


def main(config: Config, file: Path, *, data: Path | None, json_output: bool) -> int:
    try:
        signature = file.read_bytes()
        detached = data.read_bytes() if data is not None else None
    except OSError as exc:
        error(_("cannot read {path}: {reason}").format(path=exc.filename or file,
                                                        reason=exc.strerror or exc))
        return NOT_VERIFIED
    try:
        result = asyncio.run(_verify(config, signature, detached))
    except AgentError as exc:
        if json_output:
            print(json.dumps({"error": exc.reason, "message": exc.message},
                             ensure_ascii=False))
        else:
            error(_("the file could not be verified: {reason}").format(reason=exc.message))
        return NOT_VERIFIED
    if json_output:
        print(json.dumps(result.to_wire(), ensure_ascii=False, indent=2))
    else:
        print(render(result))
    return 0 if result.all_passed else 1
