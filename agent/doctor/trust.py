"""Whether the user's browsers trust the agent's certificate, and what works in snap and
flatpak browsers (docs/tls.md, docs/browsers.md).

Read-only: it lists the NSS databases and asks certutil about each; it never adds, creates
or removes anything (the agent does that at its start, ``agent/daemon/first_run.py``).
Informative only: a browser that does not trust the agent does not fail the doctor's exit
code, since pages there may still reach the agent through the extension.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from agent import paths
from agent.config import Config
from agent.i18n import N_, _
from agent.platform import sandboxed_browsers
from agent.tls import nss, trust, trust_state
from agent.tls.material import load_tls_material

FALLBACK = N_("pages there reach the agent through the browser extension (or ws:// where "
              "an administrator enabled it)")


def trust_report(config: Config, *, home: Path | None = None,
                 env: dict[str, str] | None = None, commands: bool = True) -> dict[str, Any]:
    home = home if home is not None else Path.home()
    environ = dict(os.environ if env is None else env)
    tls_dir = paths.sub_dir("tls")
    material = load_tls_material(tls_dir)
    fingerprint = material.ca_fingerprint_sha256 if material else None
    certutil = shutil.which("certutil", path=environ.get("PATH"))
    databases = []
    for db in nss.discover_databases(home, env=environ):
        row: dict[str, Any] = {"label": db.label, "browser": db.browser, "path": str(db.path),
                               "trusted": None, "error": None}
        if certutil is not None:
            status = trust.inspect_database(db, fingerprint)
            row.update(trusted=status.trusted, error=status.error)
        databases.append(row)
    browsers = sandboxed_browsers.detect(home, env=environ, commands=commands)
    portal = (sandboxed_browsers.webextensions_portal(environ)
              if any(b.native_messaging == "portal" for b in browsers) else None)
    return {
        "wssEnabled": config.server.wss_enabled,
        "certutil": certutil,
        "fingerprint": fingerprint,
        "optedOut": trust_state.load(tls_dir).opted_out,
        "chromiumDatabaseMissing": not (home / nss.CHROMIUM_DBS[0][1] / "cert9.db").exists(),
        "databases": databases,
        "sandboxed": [_sandboxed_row(b, databases) for b in browsers],
        "webExtensionsPortal": portal,
    }


def _sandboxed_row(browser: sandboxed_browsers.SandboxedBrowser,
                   databases: list[dict[str, Any]]) -> dict[str, Any]:
    mine = [row for row in databases
            if any(Path(row["path"]).is_relative_to(d) for d in browser.nss_dirs)]
    return {**browser.to_json(), "label": browser.label, "storeKnown": browser.store_known,
            "databases": [row["label"] for row in mine],
            "trusted": bool(mine) and all(row["trusted"] for row in mine)}


def trust_lines(report: dict[str, Any]) -> list[str]:
    """The "Browser trust" section for a person, in the CLI's language."""
    if not report["wssEnabled"]:
        return ["  " + _("wss:// is turned off ([server] wss_enabled = false): nothing to trust")]
    lines = []
    if report["certutil"] is None:
        lines.append(f"  {trust.install_hint()}.")
        lines.append("  " + _("Without it the agent cannot add its certificate to the browsers; "
                              "{fallback}.").format(fallback=_(FALLBACK)))
    if report["fingerprint"] is None:
        lines.append("  " + _("the agent has not made its certificate yet (it does at its first "
                              "start)"))
    if report["optedOut"]:
        lines.append("  " + _("turned off by `imza-agent trust remove`: the agent leaves the "
                              "browsers alone until `imza-agent trust install`"))
    if report["chromiumDatabaseMissing"]:
        lines.append("  " + _("Chromium: no certificate database yet (~/.pki/nssdb); the agent "
                              "creates it and adds its certificate at its next start"))
    for row in report["databases"]:
        if row["error"]:
            state = _("ERROR: {error}; {fallback}").format(error=row["error"],
                                                           fallback=_(FALLBACK))
        elif row["trusted"] is None:
            state = _("unknown (no certutil)")
        elif row["trusted"]:
            state = _("trusts the agent's certificate")
        else:
            state = _("does NOT trust the agent's certificate: the agent adds it at its next "
                      "start, or run `imza-agent trust install`")
        lines.append(f"  {row['label']} ({row['path']}): {state}")
    if any(row["trusted"] for row in report["databases"]):
        lines.append("  " + _("Browsers read these certificates when they start: restart the "
                              "browser if it was open when the certificate was installed"))
    return lines


def sandboxed_lines(report: dict[str, Any]) -> list[str]:
    """The "Snap and Flatpak browsers" section (docs/browsers.md says more)."""
    rows = report["sandboxed"]
    if not rows:
        return ["  " + _("none found (snap, flatpak)")]
    lines = []
    for row in rows:
        lines.append("  " + _("{browser} — found by {evidence}").format(browser=row["label"],
                                                                   evidence=row["evidence"]))
        if not row["storeKnown"]:
            lines.append("    " + _("certificates: kept where the agent cannot add its own, so "
                                  "wss:// does not work there"))
        elif not row["databases"]:
            lines.append("    " + _("certificates: no store yet (start the browser once; the "
                                  "agent adds its certificate at its next start)"))
        else:
            state = _("trusted") if row["trusted"] else _("NOT trusted yet")
            lines.append("    " + _("certificates: {databases}: {state}").format(
                databases=", ".join(row["databases"]), state=state))
        if row["nativeMessaging"] == "portal":
            portal = {True: _("available"), False: _("NOT available"),
                      None: _("cannot tell (no session bus)")}[report["webExtensionsPortal"]]
            lines.append("    " + _("extension: reaches the agent only through the WebExtensions "
                                  "portal of xdg-desktop-portal: {state}").format(state=portal))
        else:
            lines.append("    " + _("extension: cannot start the agent from inside the sandbox; "
                                  "pages reach the agent over wss:// only"))
    return lines
