"""Everything the doctor reports, gathered as JSON-able data with stable keys.

Each store describes itself (``KeyStore.diagnostics``): the doctor only files the rows
under the sections they name, next to what the store manager and the PC/SC probe know.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import platform
from collections.abc import Sequence
from typing import Any

from agent import __version__, paths
from agent.config import Config
from agent.doctor.certificates import certificate_dict
from agent.doctor.transports import transport_report
from agent.doctor.trust import trust_report
from agent.doctor.verdict import verdict
from agent.errors import PinStatus
from agent.keystores.base import JSON, StoreReport, TokenInfo
from agent.keystores.manager import StoreManager
from agent.keystores.pkcs11.pin_management import PinManagementError, PinState, TokenPins
from agent.keystores.pkcs11.store import Pkcs11Store
from agent.pcsc.probe import probe_pcsc
from agent.pcsc.report import doctor_details

REPORT_FORMAT = 1


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


def puk_state(state: PinState | None) -> str | None:
    """The PUK / SO PIN as the token's flags tell it; None where nobody asked the token
    (not a PKCS#11 token)."""
    if state is None:
        return None
    if state.puk_locked:
        return "locked"
    if state.puk_final_try:
        return "final try"
    if state.puk_count_low:
        return "count low"
    return "ok"


def token_dict(token: TokenInfo, source: str,
               state: PinState | None = None) -> dict[str, Any]:
    return {
        "storeId": token.store_id, "tokenId": token.token_id, "kind": token.kind.value,
        "source": source, "label": token.label, "reader": token.reader,
        "manufacturer": token.manufacturer,
        "model": token.model, "serial": token.serial, "present": token.present,
        "needsUnlock": token.needs_unlock, "demo": token.demo,
        "secret": token.secret.value, "unlock": str(token.unlock),
        "pinState": pin_state(token.pin), "pin": token.pin.as_dict(),
        "pukState": puk_state(state),
    }


def _sections(reports: Sequence[StoreReport]) -> dict[str, list[dict[str, JSON]]]:
    sections: dict[str, list[dict[str, JSON]]] = {}
    for report in reports:
        sections.setdefault(report.section, []).append(report.row)
    return sections


def _module_rows(manager: StoreManager,
                 loaded: list[dict[str, JSON]]) -> list[dict[str, Any]]:
    """One row per module file found or configured: where it came from (the manager's
    discovery) and what the store that loads it says."""
    by_path = {str(row["path"]): row for row in loaded}
    rows: dict[str, dict[str, Any]] = {}
    for cand in manager.module_candidates:
        path = str(cand.path)
        if path in rows:
            continue
        row: dict[str, Any] = {
            "path": path, "vendor": cand.vendor, "source": cand.source,
            "present": bool(cand.present), "loaded": False, "error": None,
            "manufacturer": None, "description": None, "libraryVersion": None,
            "cryptokiVersion": None, "slots": None,
        }
        if not cand.present:
            row["error"] = "the module file is not there"
        row.update(by_path.pop(path, {}))
        rows[path] = row
    for path, extra in by_path.items():  # loaded without discovery: shown all the same
        rows[path] = {"vendor": None, "source": None, "present": True, **extra}
    return list(rows.values())


async def _pin_states(manager: StoreManager) -> dict[tuple[str, str], PinState]:
    """Both PINs' flags of every PKCS#11 token (the PUK's are not in ``TokenInfo``)."""
    found: dict[tuple[str, str], PinState] = {}
    for managed in manager.managed:
        store = managed.store
        if not isinstance(store, Pkcs11Store):
            continue
        try:
            states = await TokenPins(store).states()
        except PinManagementError:
            continue  # the module's failure is reported with the modules already
        found.update({(store.store_id, token_id): s for token_id, s in states.items()})
    return found


async def _collect(config: Config) -> dict[str, Any]:
    pcsc = await asyncio.to_thread(probe_pcsc)
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "agent": {"version": __version__, "python": platform.python_version(),
                  "platform": platform.platform(), "dataDir": str(paths.data_dir())},
        "pcsc": pcsc.as_dict(),
        "transports": transport_report(config),
        # Browsers trusting the agent's certificate; snap and flatpak browsers.
        "trust": await asyncio.to_thread(trust_report, config),
    }
    manager = StoreManager.from_config(config)
    try:
        sections = _sections(await manager.diagnostics())
        modules = _module_rows(manager, sections.pop("modules", []))
        report["pcsc"].update(doctor_details(report["pcsc"], config, modules))
        tokens = await manager.tokens()
        # Every module's view, for support: a card read by two modules shows up twice here,
        # while the picker offers each certificate once.
        entries = await manager.certificates(distinct=False)
        now = dt.datetime.now(dt.UTC)
        # Tokens listed by the certificate pass too (a token may appear between the two).
        seen = {(t.store_id, t.token_id) for t in tokens}
        for e in entries:
            if (e.token.store_id, e.token.token_id) not in seen:
                seen.add((e.token.store_id, e.token.token_id))
                tokens.append(e.token)
        report["modules"] = modules
        states = await _pin_states(manager)
        report["tokens"] = [token_dict(t, manager.source_of(t.store_id),
                                       states.get((t.store_id, t.token_id)))
                            for t in tokens]
        report["certificates"] = [certificate_dict(e, now) for e in entries]
        report["pkcs12"] = sections.pop("pkcs12", [])
        demo_rows = sections.pop("demo", [])
        demo = demo_rows[0] if demo_rows else {}
        report["demo"] = {
            "setting": config.demo.enabled,
            "available": manager.demo_store is not None,
            "active": manager.demo_active,
            "directory": demo.get("directory"),
            "caCertificate": demo.get("caCertificate"),
        }
        problems = sections.pop("problems", [])
        report["problems"] = [p.as_dict() for p in manager.problems] + problems
        for section, rows in sections.items():  # a kind of store not named above
            report.setdefault(section, rows)
    finally:
        await manager.close()
    return report


def collect(config: Config) -> dict[str, Any]:
    """Everything the doctor reports, as JSON-able data with stable keys."""
    return asyncio.run(_collect(config))


def has_failures(report: dict[str, Any]) -> bool:
    """A problem by the one verdict (what needs only attention does not fail)."""
    return bool(verdict(report)["level"] == "problem")
