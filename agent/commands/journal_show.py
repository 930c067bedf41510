"""``imza-agent journal show``: the journal's entries as a table a person reads, or as
JSON; across the rotated files (oldest first), filtered by ``--since`` and ``--origin``.

The certificate holder is named where this user's files can tell it from the fingerprint
(the demo identity); otherwise the fingerprint's first bytes stand for it. Whether the
lines are genuine is ``journal verify``'s question, not this one's: unreadable lines are
skipped and counted.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.i18n import N_, _

_RELATIVE = re.compile(r"\s*(\d{1,6})\s*([smhdw])\s*", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_CELL = 40

METHODS = {"auth.login": N_("login"), "sign.hash": N_("signature"),
           "sign.hashes": N_("signatures"), "sign.pdf": N_("PDF signature"),
           "sign.xml": N_("XML signature"), "sign.cms": N_("CMS signature"),
           "signature.extend": N_("signature extension")}
RESULTS = {"ok": N_("done"), "USER_CANCELLED": N_("cancelled by the user"),
           "USER_TIMEOUT": N_("no answer in time"), "PIN_LOCKED": N_("PIN locked")}


class BadSince(ValueError):
    pass


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """``7d``/``24h``/``30m``/``2w`` back from now, or an ISO date or date-time (local time
    unless it names its zone). Returns an aware date-time."""
    now = now or dt.datetime.now(dt.UTC)
    match = _RELATIVE.fullmatch(text)
    if match:
        return now - dt.timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2).lower()])
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadSince(_("--since: {value} is neither a date (2026-11-30) nor a time back "
                         "(7d, 24h, 30m)").format(value=text)) from None
    return when if when.tzinfo is not None else when.astimezone()


def origin_matches(origin: str, wanted: str) -> bool:
    """``wanted`` is an origin (exact), or a host: that host and its sub-domains."""
    if "://" in wanted:
        return origin == wanted.rstrip("/")
    host = origin.split("://", 1)[-1].rsplit(":", 1)[0].lower()
    wanted = wanted.lower().strip(".")
    return host == wanted or host.endswith("." + wanted)


def entries(files: list[Path]) -> Iterator[dict[str, Any] | None]:
    """Each line of the files in order; None for a line that is not a journal entry."""
    for file in files:
        try:
            raw = file.read_bytes()
        except OSError:
            continue
        for line in raw.splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except (ValueError, RecursionError):
                yield None
                continue
            ok = (isinstance(entry, dict) and isinstance(entry.get("time"), str)
                  and isinstance(entry.get("origin"), str))
            yield entry if ok else None


def _when(entry: dict[str, Any]) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat(entry["time"])
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def known_holders(home: Path) -> dict[str, str]:
    """Certificate fingerprint (SHA-256 hex) → holder, for certificates this user's files
    hold without a secret: the demo identity's (its PIN is public)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import pkcs12

    from agent.keystores.demo import AUTH_FILE, DEMO_DIR_NAME, DEMO_PIN, SIGN_FILE

    holders: dict[str, str] = {}
    for name in (SIGN_FILE, AUTH_FILE):
        try:
            loaded = pkcs12.load_pkcs12((home / DEMO_DIR_NAME / name).read_bytes(),
                                        DEMO_PIN.encode())
        except (OSError, ValueError):
            continue
        if loaded.cert is None:
            continue
        cert = loaded.cert.certificate
        fingerprint = cert.fingerprint(hashes.SHA256()).hex()
        names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        holders[fingerprint] = str(names[0].value) if names else cert.subject.rfc4514_string()
    return holders


def _cell(text: str) -> str:
    return text if len(text) <= MAX_CELL else text[:MAX_CELL - 1] + "…"


def holder_of(entry: dict[str, Any], holders: dict[str, str]) -> str:
    fingerprint = entry.get("certificate")
    if not isinstance(fingerprint, str) or not fingerprint:
        return "—"
    return holders.get(fingerprint.lower()) or fingerprint[:16]


def what_of(entry: dict[str, Any]) -> str:
    method = str(entry.get("method") or "?")
    name = _(METHODS[method]) if method in METHODS else method
    count = entry.get("count")
    return f"{name} ×{count}" if isinstance(count, int) and count > 1 else name


def result_of(entry: dict[str, Any]) -> str:
    result = str(entry.get("result") or "?")
    return _(RESULTS[result]) if result in RESULTS else result


def site_of_entry(entry: dict[str, Any]) -> str:
    origin = str(entry["origin"])
    return origin.removeprefix("https://")


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(headers), line(["─" * w for w in widths]),
                      *(line(r) for r in rows)])


def show(files: list[Path], home: Path, *, json_output: bool, since: str | None,
         origin: str | None, out: Any, err: Any) -> int:
    try:
        after = parse_since(since) if since else None
    except BadSince as exc:
        print(f"imza-agent: {exc}", file=err)
        return 2
    chosen: list[dict[str, Any]] = []
    unreadable = 0
    total = 0
    for entry in entries(files):
        if entry is None:
            unreadable += 1
            continue
        total += 1
        when = _when(entry)
        if after is not None and (when is None or when < after):
            continue
        if origin is not None and not origin_matches(entry["origin"], origin):
            continue
        chosen.append(entry)
    holders = known_holders(home) if chosen else {}
    if json_output:
        for entry in chosen:
            fingerprint = entry.get("certificate")
            entry["holder"] = holders.get(fingerprint) if isinstance(fingerprint, str) else None
        print(json.dumps(chosen, ensure_ascii=False, indent=2), file=out)
        return 0
    if not chosen:
        print(_("the journal is empty") if total == 0 else
              _("no entries match ({count} in the journal)").format(count=total), file=out)
    else:
        rows = []
        for entry in chosen:
            when = _when(entry)
            shown = when.astimezone().strftime("%Y-%m-%d %H:%M:%S") if when else "?"
            rows.append([shown, _cell(site_of_entry(entry)),
                         _cell(holder_of(entry, holders)), what_of(entry),
                         result_of(entry)])
        print(table(rows, [_("time"), _("site"), _("certificate holder"), _("what"),
                           _("result")]), file=out)
    if unreadable:
        print(_("{count} unreadable lines skipped: check the journal with "
                "`imza-agent journal verify`").format(count=unreadable), file=err)
    return 0
