"""The doctor's report as text for a person (``--json`` prints the data itself)."""

from __future__ import annotations

from typing import Any, TextIO

from agent.doctor.transports import transport_lines
from agent.doctor.trust import sandboxed_lines, trust_lines
from agent.pcsc.report import render_lines


def _pin_line(token: dict[str, Any]) -> str:
    if token["demo"]:
        return "demo PIN (documented, not a secret)"
    if token["secret"] == "password":
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
# Sections with a text of their own below; any other (a store kind added later) is
# printed field by field.
_KNOWN_SECTIONS = {"format", "agent", "pcsc", "modules", "tokens", "certificates", "pkcs12",
                   "demo", "problems", "transports", "trust"}


def render_text(report: dict[str, Any], out: TextIO) -> None:
    def w(line: str = "") -> None:
        out.write(line + "\n")

    agent = report["agent"]
    w(f"imza-agent doctor {agent['version']} — Python {agent['python']}, {agent['platform']}")
    w(f"Data dir: {agent['dataDir']}")

    if "transports" in report:
        w("\nTransports")
        for line in transport_lines(report["transports"]):
            w(line)

    if "trust" in report:
        w("\nBrowser trust (the agent's certificate for wss://)")
        for line in trust_lines(report["trust"]):
            w(line)
        w("\nSnap and Flatpak browsers")
        for line in sandboxed_lines(report["trust"]):
            w(line)

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

    for section in sorted(set(report) - _KNOWN_SECTIONS):
        w(f"\n{section}")
        for row in report[section]:
            w("  " + ", ".join(f"{key}: {value}" for key, value in row.items()))

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
