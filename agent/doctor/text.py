"""The doctor's report as text for a person, in the CLI's language (``--json`` prints the
data itself, in English, for programs and support tickets)."""

from __future__ import annotations

from typing import Any, TextIO

from agent.doctor.transports import transport_lines
from agent.doctor.trust import sandboxed_lines, trust_lines
from agent.doctor.verdict import verdict
from agent.i18n import N_, _
from agent.pcsc.report import render_lines

# The PIN states of collect.pin_state / puk_state, for people.
_PIN_STATE_TEXT = {
    "ok": N_("ok"), "count low": N_("few tries left"),
    "final try": N_("last try before it is blocked"), "locked": N_("BLOCKED"),
    "must be changed": N_("must be changed"),
}


def _state_text(state: str) -> str:
    text = _PIN_STATE_TEXT.get(state)
    return _(text) if text else state


def _pin_line(token: dict[str, Any]) -> str:
    if token["demo"]:
        return _("demo PIN (documented, not a secret)")
    if token["secret"] == "password":
        return _("password-protected file (no retry counter)")
    pin = token["pin"]
    parts = [_("PIN {state}").format(state=_state_text(token["pinState"]))]
    if token.get("pukState"):
        parts.append(_("PUK {state}").format(state=_state_text(token["pukState"])))
    if pin["minLength"] or pin["maxLength"]:
        parts.append(_("length {low}–{high}").format(low=pin["minLength"], high=pin["maxLength"]))
    parts.append(_("PIN pad") if pin["pinPad"] else _("no PIN pad"))
    return ", ".join(parts)


_PAIRING_TEXT = {
    "id": N_("paired by CKA_ID"), "public-key": N_("paired by public key"),
    "assumed-id": N_("assumed by CKA_ID (private key hidden before login)"),
    "none": N_("no private key"),
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
    w(_("Data dir: {path}").format(path=agent["dataDir"]))

    if "transports" in report:
        w("\n" + _("Transports"))
        for line in transport_lines(report["transports"]):
            w(line)

    if "trust" in report:
        w("\n" + _("Browser trust (the agent's certificate for wss://)"))
        for line in trust_lines(report["trust"]):
            w(line)
        w("\n" + _("Snap and Flatpak browsers"))
        for line in sandboxed_lines(report["trust"]):
            w(line)

    w("\nPC/SC")
    pcsc = report["pcsc"]
    if not pcsc["available"]:
        w("  " + _("PC/SC not available: {reason}").format(reason=pcsc["reason"]))
    elif not pcsc["readers"]:
        w("  " + _("PC/SC service answers; no reader connected"))
    for r in pcsc["readers"]:
        card = (_("card present, ATR {atr}").format(atr=r["atr"]) if r["cardPresent"]
                else _("no card"))
        w("  " + _("Reader “{name}”: {card}").format(name=r["name"], card=card))
    for line in render_lines(pcsc):
        w(line)

    w("\n" + _("PKCS#11 modules"))
    if not report["modules"]:
        w("  " + _("none configured and no known vendor module installed"))
    for m in report["modules"]:
        status = _("loaded") if m["loaded"] else _("FAILED: {error}").format(error=m["error"])
        vendor = f" ({m['vendor']})" if m["vendor"] else ""
        w(f"  {m['path']}{vendor} [{m['source']}] — {status}")
        if m["loaded"]:
            w("    " + _("{manufacturer}: {description}, library {library}, Cryptoki {cryptoki}, "
                      "{slots} slot(s)").format(
                manufacturer=m["manufacturer"] or "?", description=m["description"] or "?",
                library=m["libraryVersion"] or "?", cryptoki=m["cryptokiVersion"] or "?",
                slots=m["slots"]))

    w("\n" + _("Tokens"))
    if not report["tokens"]:
        w("  " + _("none"))
    for t in report["tokens"]:
        demo = "  " + _("[DEMO — not a real identity]") if t["demo"] else ""
        reader = f" — {t['reader']}" if t.get("reader") else ""  # the card's reader
        w(f"  “{t['label']}”{reader}{demo}")
        w("    " + _("{manufacturer} / {model}, serial {serial} ({kind})").format(
            manufacturer=t["manufacturer"], model=t["model"], serial=t["serial"] or "—",
            kind=t["kind"]))
        if t["kind"] == "pkcs11":
            w("    " + _("module: {path}").format(path=t["source"]))
        w(f"    {_pin_line(t)}")
        if t["pinState"] == "locked":
            hint = (_("unblock it with the PUK: imza-agent pin unblock --token {token}")
                    if t.get("pukState") != "locked"
                    else _("the PUK is blocked too: ask your certificate issuer"))
            w("    " + hint.format(token=t["serial"] or t["label"]))
        if t["needsUnlock"]:
            w("    " + _("certificates unknown until the file is opened once with its password"))

    w("\n" + _("Certificates"))
    if not report["certificates"]:
        w("  " + _("none"))
    for c in report["certificates"]:
        demo = " [DEMO]" if c["demo"] else ""
        w("  " + _("{holder}{demo} — on “{token}”").format(
            holder=c.get("holder") or c["label"], demo=demo, token=c["tokenLabel"]))
        if "error" in c:
            w(f"    {c['error']}")
            continue
        flag = ((" " + _("EXPIRED") if c["expired"] else "")
                + (" " + _("NOT YET VALID") if c["notYetValid"] else ""))
        if c["label"] and c["label"] != c.get("holder"):
            w("    " + _("label: {value}").format(value=c["label"]))
        w("    " + _("subject: {value}").format(value=c["subject"]))
        w("    " + _("issuer: {value}").format(value=c["issuer"]))
        w("    " + _("serial: {serial}   key: {key}").format(serial=c["serialHex"],
                                                          key=c["publicKey"]))
        w("    " + _("valid: {start} → {end}").format(start=c["notBefore"], end=c["notAfter"])
          + flag)
        usage = ", ".join(c["keyUsage"]) if c["keyUsage"] is not None else "—"
        w("    " + _("key usage: {value}").format(value=usage))
        if c["extendedKeyUsage"] is not None:
            w("    " + _("extended key usage: {value}").format(
                value=", ".join(c["extendedKeyUsage"])))
        key = _(_PAIRING_TEXT[c["pairing"]]) if c["pairing"] in _PAIRING_TEXT else c["pairing"]
        if c["keyId"]:
            key += " " + _("(key id {id})").format(id=c["keyId"])
        if c["alwaysAuthenticate"]:
            key += ", " + _("PIN needed for every signature")
        w("    " + _("private key: {value}").format(value=key))

    w("\n" + _("PKCS#12 files"))
    if not report["pkcs12"]:
        w("  " + _("none configured"))
    for p in report["pkcs12"]:
        state = (_("missing") if not p["exists"] else
                 _("certificates known after first unlock") if p["needsUnlock"] else
                 _("certificates known"))
        w(f"  {p['path']} (“{p['label']}”): {state}")

    for section in sorted(set(report) - _KNOWN_SECTIONS):
        w(f"\n{section}")
        for row in report[section]:
            w("  " + ", ".join(f"{key}: {value}" for key, value in row.items()))

    w("\n" + _("Demo identity"))
    demo = report["demo"]
    if demo["setting"] == "never":
        w("  " + _("turned off (demo.enabled = never)"))
    elif not demo["available"]:
        w("  " + _("not offered: a PKCS#11 module or PKCS#12 file is configured"))
    else:
        state = (_("DEMO token offered (no real token found)") if demo["active"]
                 else _("DEMO available but hidden while a real token is present"))
        w(f"  {state}: {demo['directory']}")
        w("  " + _("DEMO root CA (not trusted): {path}").format(path=demo["caCertificate"]))

    w("\n" + _("Problems"))
    # The one verdict: the tray's colour and tooltip say the same (agent/doctor/verdict.py).
    judged = verdict(report)
    if not judged["problems"]:
        w("  " + _("none"))
    for text in judged["problems"]:
        w(f"  {text}")
