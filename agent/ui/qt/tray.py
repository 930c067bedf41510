"""The tray icon and its menu, in the UI process (docs/ui-process.md).

The daemon sends TrayFacts (agent/ui/tray_model.py) as JSON; this draws them: the icon's
colour and shape and the tooltip say the status ``doctor`` gives and name each problem;
the menu lists the sites and their grants (revoke), readers and tokens, PIN change and
unblock per token, language, the journal, start at login, the TLS trust (repair), about
and quit.  A chosen entry only sends an action to the daemon; the new facts it sends back
redraw the menu.  Qt shows the icon through StatusNotifierItem (with the menu exported
over com.canonical.dbusmenu) where a watcher is on the session bus, and as an XEmbed icon
on X11 tray hosts otherwise; on both a left click opens the menu too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtGui import QAction, QActionGroup, QCursor
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from agent import i18n
from agent.i18n import _
from agent.ui.qt.icon import status_icon

SendAction = Callable[[str, dict[str, Any]], None]


def status_sentence(facts: dict[str, Any]) -> str:
    """The tooltip: the status in words, naming every problem."""
    status = facts.get("status") or {}
    problems = "; ".join(str(p) for p in status.get("problems") or [])
    level = status.get("level")
    if level == "problem":
        return _("imza-agent has a problem: {problems}").format(problems=problems)
    if level == "attention":
        return _("imza-agent needs attention: {problems}").format(problems=problems)
    if level == "ok":
        return _("imza-agent is running; everything works")
    return _("imza-agent is starting")


class Tray:
    def __init__(self, send_action: SendAction) -> None:
        self._send = send_action
        self.facts: dict[str, Any] = {}
        self.icon = QSystemTrayIcon()
        self.menu = QMenu()
        self._submenus: list[QMenu] = []
        self._stale = False  # new facts came while the menu was open
        self.menu.aboutToHide.connect(self._redraw_if_stale)
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(self._activated)
        self._draw()
        self.icon.show()

    # --- what the daemon sends ----------------------------------------------------------

    def update(self, facts: dict[str, Any]) -> None:
        self.facts = dict(facts)
        self._draw()

    def retranslate(self) -> None:
        """The UI's language changed: every text again (the problems are the daemon's
        sentences and arrive with the next facts)."""
        self._draw()

    def hide(self) -> None:
        self.icon.hide()

    # --- drawing --------------------------------------------------------------------------

    def _draw(self) -> None:
        level = str((self.facts.get("status") or {}).get("level") or "attention")
        self.icon.setIcon(status_icon(level))
        self.icon.setToolTip(status_sentence(self.facts))
        if self.menu.isVisible():
            self._stale = True  # never pull entries from under the pointer
            return
        self._fill()

    def _redraw_if_stale(self) -> None:
        if self._stale:
            self._stale = False
            self._fill()

    def _submenu(self, parent: QMenu, title: str) -> QMenu:
        sub = parent.addMenu(title)
        self._submenus.append(sub)
        return sub

    def _action(self, menu: QMenu, text: str, name: str | None = None,
                args: dict[str, Any] | None = None) -> QAction:
        """An entry; with ``name`` it sends that action, without it it only informs."""
        action = menu.addAction(text)
        if name is None:
            action.setEnabled(False)
        else:
            sent = dict(args or {})
            action.triggered.connect(lambda _checked=False: self._send(name, sent))
        return action

    def _fill(self) -> None:
        self.menu.clear()
        for sub in self._submenus:
            sub.deleteLater()
        self._submenus.clear()
        facts = self.facts
        self._action(self.menu, status_sentence(facts))
        self.menu.addSeparator()
        self._sites(facts)
        self._tokens(facts)
        for title, name in ((_("Change PIN…"), "pin_change"), (_("Unblock PIN…"), "pin_unblock")):
            sub = self._submenu(self.menu, title)
            for key, label in facts.get("pin_tokens") or []:
                self._action(sub, str(label), name, {"token": key})
            if sub.isEmpty():
                self._action(sub, _("No token found"))
        self._languages()
        if facts.get("journal"):
            self._action(self.menu, _("Open the signing journal"), "open_journal")
        login = self.menu.addAction(_("Start at login"))
        login.setCheckable(True)
        login.setChecked(bool(facts.get("autostart")))
        login.toggled.connect(lambda on: self._send("autostart", {"on": bool(on)}))
        trust = self._submenu(self.menu, _("TLS trust"))
        self._action(trust, {True: _("Browsers trust the agent's certificate"),
                             False: _("Browsers do not trust the agent's certificate"),
                             None: _("Trust status unknown")}[facts.get("trust")])
        self._action(trust, _("Repair"), "repair_trust")
        about = self._submenu(self.menu, _("About"))
        self._action(about, f"imza-agent {facts.get('version') or ''}".strip())
        ports = ", ".join(f"{name} {port}"
                          for name, port in sorted((facts.get("ports") or {}).items()))
        self._action(about, _("Ports: {ports}").format(ports=ports or "—"))
        self.menu.addSeparator()
        self._action(self.menu, _("Quit"), "quit")

    def _sites(self, facts: dict[str, Any]) -> None:
        sites = self._submenu(self.menu, _("Allowed sites"))
        for origin, permissions in facts.get("grants") or []:
            site = self._submenu(sites, str(origin))
            self._action(site, _("Allowed: {permissions}").format(
                permissions=", ".join(permissions) or "—"))
            self._action(site, _("Revoke"), "revoke", {"origin": origin})
        if sites.isEmpty():
            self._action(sites, _("No sites allowed yet"))

    def _tokens(self, facts: dict[str, Any]) -> None:
        sub = self._submenu(self.menu, _("Readers and tokens"))
        for reader in facts.get("readers") or []:
            card = _("card present") if reader.get("card") else _("no card")
            self._action(sub, _("Reader “{name}”: {card}").format(name=reader["name"],
                                                                  card=card))
        for token in facts.get("tokens") or []:
            self._action(sub, _("{token}: certificates {n}").format(
                token=token["label"], n=token["certificates"]))
        if not facts.get("tokens"):
            self._action(sub, _("No token found"))

    def _languages(self) -> None:
        sub = self._submenu(self.menu, _("Language"))
        group = QActionGroup(sub)
        group.setExclusive(True)
        current = i18n.current_language()
        for code, name in i18n.LANGUAGE_NAMES.items():
            action = sub.addAction(name)
            action.setCheckable(True)
            action.setChecked(code == current)
            group.addAction(action)
            action.triggered.connect(
                lambda _checked=False, code=code: self._send("language", {"language": code}))

    # --- clicks ---------------------------------------------------------------------------

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        """A left click opens the menu as a right click does: people try both."""
        if reason in (QSystemTrayIcon.ActivationReason.Trigger,
                      QSystemTrayIcon.ActivationReason.DoubleClick):
            self.menu.popup(QCursor.pos())
