"""``imza-agent doctor``: what the agent sees on this machine, for users and support.

Reports PC/SC readers and cards, PKCS#11 modules (loaded or why not), tokens with their
PIN state, every certificate with the private key it pairs with (and how), PKCS#12 files
and the demo identity.  Plain text by default; ``--json`` gives stable keys for support
tickets.

It never asks for a PIN, never logs in and prints no secret: everything shown is what a
token tells anyone before login.  Like the agent itself it creates the demo identity in
the data dir when the configuration asks for one (see ``keystores/manager.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import enum
import hashlib
import json
import platform
import sys
from pathlib import Path
from typing import Any, TextIO

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent import __version__, paths
from agent.config import Config, ConfigError, load_config
from agent.errors import PinStatus
from agent.keystores.base import CertificateEntry, StoreKind, TokenInfo
from agent.keystores.manager import StoreManager, problem_from
from agent.keystores.pkcs12 import Pkcs12Store
from agent.pcsc.report import doctor_details, render_lines
from agent.pcsc_probe import probe_pcsc

REPORT_FORMAT = 1

_NAME_KEYS = {
    NameOID.SERIAL_NUMBER: "serialNumber", NameOID.GIVEN_NAME: "GN", NameOID.SURNAME: "SN",
    NameOID.TITLE: "title", NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.ORGANIZATION_IDENTIFIER: "organizationIdentifier", NameOID.PSEUDONYM: "pseudonym",
}
_KEY_USAGE_BITS = (
    ("digital_signature", "digitalSignature"), ("content_commitment", "nonRepudiation"),
    ("key_encipherment", "keyEncipherment"), ("data_encipherment", "dataEncipherment"),
    ("key_agreement", "keyAgreement"), ("key_cert_sign", "keyCertSign"),
    ("crl_sign", "cRLSign"),
)
_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth", ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.SMARTCARD_LOGON: "smartcardLogon",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
    x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.12"): "documentSigning (Microsoft)",
    x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36"): "documentSigning",
    x509.ObjectIdentifier("1.2.840.113583.1.1.5"): "pdfAuthenticDocuments (Adobe)",
}


# --- turning things into plain data -----------------------------------------------------

def _plain(value: Any) -> Any:
    """Dataclasses, enums, paths and tuples → JSON-able data (for ModuleInfo and friends)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    return value


def _version(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, tuple | list):
        return ".".join(str(v) for v in value)
    return str(value)


def name_string(name: x509.Name) -> str:
    return name.rfc4514_string(_NAME_KEYS)


def pin_state(pin: PinStatus) -> str:
    if pin.locked:
        return "locked"
    if pin.final_try:
        return "final try"
    if pin.count_low:
        return "count low"
    if pin.to_be_changed:
        return "must be changed"
    return "ok"


def token_dict(token: TokenInfo, source: str) -> dict[str, Any]:
    return {
        "storeId": token.store_id, "tokenId": token.token_id, "kind": token.kind.value,
        "source": source, "label": token.label, "manufacturer": token.manufacturer,
        "model": token.model, "serial": token.serial, "present": token.present,
        "needsUnlock": token.needs_unlock, "demo": token.demo,
        "pinState": pin_state(token.pin), "pin": token.pin.as_dict(),
    }


def _key_description(cert: x509.Certificate) -> str:
    pub = cert.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        return f"RSA-{pub.key_size}"
    if isinstance(pub, ec.EllipticCurvePublicKey):
        return f"EC {pub.curve.name}"
    return type(pub).__name__


def certificate_dict(entry: CertificateEntry, now: dt.datetime) -> dict[str, Any]:
    base: dict[str, Any] = {
        "storeId": entry.token.store_id, "tokenId": entry.token.token_id,
        "tokenLabel": entry.token.label, "label": entry.label, "demo": entry.token.demo,
        "pairing": entry.pairing or "none",
        "keyId": entry.key.key_id if entry.key else None,
        "alwaysAuthenticate": entry.key.always_authenticate if entry.key else False,
        "sha256": hashlib.sha256(entry.der).hexdigest(),
    }
    try:
        cert = x509.load_der_x509_certificate(entry.der)
    except ValueError as exc:
        return {**base, "error": f"cannot parse the certificate: {exc}"}
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        key_usage: list[str] | None = [
            label for attr, label in _KEY_USAGE_BITS if getattr(ku, attr)]
    except x509.ExtensionNotFound:
        key_usage = None
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        ext_key_usage: list[str] | None = [
            _EKU_NAMES.get(oid, oid.dotted_string) for oid in eku]
    except x509.ExtensionNotFound:
        ext_key_usage = None
    return {
        **base,
        "holder": str(cns[0].value) if cns else None,
        "subject": name_string(cert.subject), "issuer": name_string(cert.issuer),
        "serialHex": f"{cert.serial_number:x}",
        "notBefore": not_before.isoformat(), "notAfter": not_after.isoformat(),
        "expired": now > not_after, "notYetValid": now < not_before,
        "keyUsage": key_usage, "extendedKeyUsage": ext_key_usage,
        "publicKey": _key_description(cert),
        "selfSigned": cert.subject == cert.issuer,
    }


# --- collecting -------------------------------------------------------------------------

async def _module_report(manager: StoreManager) -> list[dict[str, Any]]:
    from agent.keystores.pkcs11 import Pkcs11Store

    stores_by_path = {m.source: m.store for m in manager.managed
                      if isinstance(m.store, Pkcs11Store)}
    rows: list[dict[str, Any]] = []
    infos: dict[str, Any] = {}

    async def info_of(path: str) -> None:
        try:
            infos[path] = await stores_by_path[path].module_info()
        except Exception as exc:
            infos[path] = exc

    await asyncio.gather(*(info_of(p) for p in stores_by_path))
    for cand in manager.module_candidates:
        path = str(cand.path)
        if not cand.present and cand.source == "known":
            continue  # known modules that are not installed: not worth a line
        row: dict[str, Any] = {
            "path": path, "vendor": cand.vendor, "source": str(_plain(cand.source)),
            "present": bool(cand.present), "loaded": False, "error": None,
            "manufacturer": None, "description": None, "libraryVersion": None,
            "cryptokiVersion": None, "slots": None,
        }
        if not cand.present:
            row["error"] = "the module file is not there"
        info = infos.get(path)
        if isinstance(info, BaseException):
            row["error"] = problem_from(info, None, path).message
        elif info is not None:
            row.update({
                "loaded": bool(info.ok), "error": info.error,
                "manufacturer": info.manufacturer, "description": info.description,
                "libraryVersion": _version(info.library_version),
                "cryptokiVersion": _version(info.cryptoki_version),
                "slots": info.slots,
            })
        if row["path"] not in [r["path"] for r in rows]:
            rows.append(row)
    return rows


async def _pkcs12_report(manager: StoreManager,
                         tokens: list[TokenInfo]) -> list[dict[str, Any]]:
    by_store = {t.store_id: t for t in tokens}
    rows = []
    for m in manager.managed:
        if not isinstance(m.store, Pkcs12Store):
            continue
        token = by_store.get(m.store.store_id)
        rows.append({
            "storeId": m.store.store_id, "path": str(m.store.path), "label": m.store.label,
            "exists": m.store.path.is_file(),
            "needsUnlock": token.needs_unlock if token else None,
        })
    return rows


async def _collect(config: Config) -> dict[str, Any]:
    pcsc = await asyncio.to_thread(probe_pcsc)
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "agent": {"version": __version__, "python": platform.python_version(),
                  "platform": platform.platform(), "dataDir": str(paths.data_dir())},
        "pcsc": pcsc.as_dict(),
    }
    manager = StoreManager.from_config(config)
    try:
        modules = await _module_report(manager)
        report["pcsc"].update(doctor_details(report["pcsc"], config, modules))
        tokens = await manager.tokens()
        entries = await manager.certificates()
        now = dt.datetime.now(dt.UTC)
        # Tokens listed by the certificate pass too (a token may appear between the two).
        seen = {(t.store_id, t.token_id) for t in tokens}
        for e in entries:
            if (e.token.store_id, e.token.token_id) not in seen:
                seen.add((e.token.store_id, e.token.token_id))
                tokens.append(e.token)
        report["modules"] = modules
        report["tokens"] = [token_dict(t, manager.source_of(t.store_id)) for t in tokens]
        report["certificates"] = [certificate_dict(e, now) for e in entries]
        report["pkcs12"] = await _pkcs12_report(manager, tokens)
        demo = manager.demo_store
        report["demo"] = {
            "setting": config.demo.enabled,
            "available": demo is not None,
            "active": manager.demo_active,
            "directory": str(demo.identity.p12_path.parent) if demo else None,
            "caCertificate": str(demo.identity.ca_cert_path) if demo else None,
        }
        report["problems"] = [p.as_dict() for p in manager.problems]
    finally:
        await manager.close()
    return report


def collect(config: Config) -> dict[str, Any]:
    """Everything the doctor reports, as JSON-able data with stable keys."""
    return asyncio.run(_collect(config))


def has_failures(report: dict[str, Any]) -> bool:
    return bool(report.get("problems")) or any(
        m["present"] and not m["loaded"] for m in report.get("modules", ()))


# --- text -------------------------------------------------------------------------------

def _pin_line(token: dict[str, Any]) -> str:
    if token["demo"]:
        return "demo PIN (documented, not a secret)"
    if token["kind"] == StoreKind.PKCS12.value:
        return "password-protected file (no retry counter)"
    pin = token["pin"]
    parts = [f"PIN {token['pinState']}"]
    if pin["minLength"] or pin["maxLength"]:
        parts.append(f"length {pin['minLength']}–{pin['maxLength']}")
    parts.append("PIN pad" if pin["pinPad"] else "no PIN pad")
    return ", ".join(parts)


_PAIRING_TEXT = {
    "id": "paired by CKA_ID", "public-key": "paired by public key",
    "assumed-id": "assumed by CKA_ID (private key hidden before login)",
    "none": "no private key",
}


def render_text(report: dict[str, Any], out: TextIO) -> None:
    def w(line: str = "") -> None:
        out.write(line + "\n")

    agent = report["agent"]
    w(f"imza-agent doctor {agent['version']} — Python {agent['python']}, {agent['platform']}")
    w(f"Data dir: {agent['dataDir']}")

    w("\nPC/SC")
    pcsc = report["pcsc"]
    if not pcsc["available"]:
        w(f"  PC/SC not available: {pcsc['reason']}")
    elif not pcsc["readers"]:
        w("  PC/SC service answers; no reader connected")
    for r in pcsc["readers"]:
        card = f"card present, ATR {r['atr']}" if r["cardPresent"] else "no card"
        w(f"  Reader “{r['name']}”: {card}")
    for line in render_lines(pcsc):
        w(line)

    w("\nPKCS#11 modules")
    if not report["modules"]:
        w("  none configured and no known vendor module installed")
    for m in report["modules"]:
        status = "loaded" if m["loaded"] else f"FAILED: {m['error']}"
        vendor = f" ({m['vendor']})" if m["vendor"] else ""
        w(f"  {m['path']}{vendor} [{m['source']}] — {status}")
        if m["loaded"]:
            w(f"    {m['manufacturer'] or '?'}: {m['description'] or '?'}, "
              f"library {m['libraryVersion'] or '?'}, Cryptoki {m['cryptokiVersion'] or '?'}, "
              f"{m['slots']} slot(s)")

    w("\nTokens")
    if not report["tokens"]:
        w("  none")
    for t in report["tokens"]:
        demo = "  [DEMO — not a real identity]" if t["demo"] else ""
        w(f"  “{t['label']}”{demo}")
        w(f"    {t['manufacturer']} / {t['model']}, serial {t['serial'] or '—'} ({t['kind']})")
        w(f"    {_pin_line(t)}")
        if t["needsUnlock"]:
            w("    certificates unknown until the file is opened once with its password")

    w("\nCertificates")
    if not report["certificates"]:
        w("  none")
    for c in report["certificates"]:
        demo = " [DEMO]" if c["demo"] else ""
        w(f"  {c.get('holder') or c['label']}{demo} — on “{c['tokenLabel']}”")
        if "error" in c:
            w(f"    {c['error']}")
            continue
        flag = (" EXPIRED" if c["expired"] else "") + (" NOT YET VALID" if c["notYetValid"]
                                                        else "")
        if c["label"] and c["label"] != c.get("holder"):
            w(f"    label:   {c['label']}")
        w(f"    subject: {c['subject']}")
        w(f"    issuer:  {c['issuer']}")
        w(f"    serial:  {c['serialHex']}   key: {c['publicKey']}")
        w(f"    valid:   {c['notBefore']} → {c['notAfter']}{flag}")
        w(f"    key usage: {', '.join(c['keyUsage']) if c['keyUsage'] is not None else '—'}")
        if c["extendedKeyUsage"] is not None:
            w(f"    extended key usage: {', '.join(c['extendedKeyUsage'])}")
        key = _PAIRING_TEXT.get(c["pairing"], c["pairing"])
        if c["keyId"]:
            key += f" (key id {c['keyId']})"
        if c["alwaysAuthenticate"]:
            key += ", PIN needed for every signature"
        w(f"    private key: {key}")

    w("\nPKCS#12 files")
    if not report["pkcs12"]:
        w("  none configured")
    for p in report["pkcs12"]:
        state = ("missing" if not p["exists"] else
                 "certificates known after first unlock" if p["needsUnlock"] else
                 "certificates known")
        w(f"  {p['path']} (“{p['label']}”): {state}")

    w("\nDemo identity")
    demo = report["demo"]
    if demo["setting"] == "never":
        w("  turned off (demo.enabled = never)")
    elif not demo["available"]:
        w("  not offered: a PKCS#11 module or PKCS#12 file is configured")
    else:
        state = ("DEMO token offered (no real token found)" if demo["active"]
                 else "DEMO available but hidden while a real token is present")
        w(f"  {state}: {demo['directory']}")
        w(f"  DEMO root CA (not trusted): {demo['caCertificate']}")

    w("\nProblems")
    if not report["problems"]:
        w("  none")
    for p in report["problems"]:
        w(f"  {p['source']}: {p['reason']}: {p['message']}")


def main(config: Config, *, json_output: bool) -> int:
    """Print the report; 0 when everything configured works, 1 when something fails."""
    report = collect(config)
    out = sys.stdout
    reconfigure = getattr(out, "reconfigure", None)
    if reconfigure is not None:
        # Holder names are Azerbaijani, Turkish, Russian: never let a legacy console
        # code page turn them into an exception or question marks in a support ticket.
        reconfigure(encoding="utf-8", errors="backslashreplace")
    if json_output:
        json.dump(report, out, ensure_ascii=False, indent=2, sort_keys=True)
        out.write("\n")
    else:
        render_text(report, out)
    out.flush()
    return 1 if has_failures(report) else 0


def _cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imza-agent doctor",
                                     description="Show what the agent sees on this machine.")
    parser.add_argument("--config", type=Path, default=None, help="configuration file")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    return main(config, json_output=args.json)


if __name__ == "__main__":
    sys.exit(_cli())
