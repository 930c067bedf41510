"""The tray icon on a real X display with a real tray host (trayer): it docks, shows the
agent's state, and its menu does what it says."""

from __future__ import annotations

import gc
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import i18n
from agent.ui.tray import (
    APP_ID,
    Tray,
    TrayFacts,
    TrayState,
    autostart_enabled,
    autostart_file,
    icon_image,
    menu_entries,
    set_autostart,
    state_for,
)

WAIT = 20.0  # bound for the X server to show something; never asserted as a duration


class RecordingActions:
    """TrayActions over fixed facts, remembering what the menu asked for."""

    def __init__(self) -> None:
        self.revoked: list[str] = []
        self.repaired = 0
        self.quitted = 0
        self.pin_tokens: list[tuple[str, str]] = []
        self.managed: list[tuple[str, str]] = []

    def facts(self) -> TrayFacts:
        return TrayFacts("1.2.3", {"wss": 29170, "ws": 29171},
                         grants=[("https://portal.example", ["select", "sign"])],
                         tokens=["Rəqəmsal İmza A: 4"], trust=False, journal=None,
                         pin_tokens=self.pin_tokens)

    def manage_pin(self, key: str, action: str) -> None:
        self.managed.append((key, action))

    def revoke(self, origin: str) -> None:
        self.revoked.append(origin)

    def repair_trust(self) -> None:
        self.repaired += 1

    def quit(self) -> None:
        self.quitted += 1


@pytest.fixture
def tray_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Xvfb with trayer, the system tray host, running on it."""
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "1280x800x24",
                             "-nolisten", "tcp"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert xvfb.stdout is not None
    number = xvfb.stdout.readline().strip()
    assert number.isdigit(), "Xvfb did not start"
    display = f":{number}"
    monkeypatch.setenv("DISPLAY", display)
    trayer = subprocess.Popen(["trayer", "--edge", "top", "--align", "right",
                               "--height", "32", "--widthtype", "request"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(lambda: _tray_manager_ready(display)), "trayer did not come up"
        yield display
    finally:
        trayer.terminate()
        trayer.wait()
        xvfb.terminate()
        xvfb.wait()


def _tray_manager_ready(display: str) -> bool:
    """A tray host has claimed the system tray selection of screen 0. pystray looks for
    it once at start, so an icon made before that moment would never dock."""
    from Xlib import X
    from Xlib.display import Display

    conn = Display(display)
    try:
        owner = conn.get_selection_owner(conn.intern_atom("_NET_SYSTEM_TRAY_S0"))
        return owner != X.NONE and owner is not None
    finally:
        conn.close()


def _x(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True).stdout.strip()


def _wait_for(probe: object) -> object:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = probe()  # type: ignore[operator]
        if found:
            return found
        time.sleep(0.05)
    return None


def _parent(window: str) -> str:
    for line in _x("xwininfo", "-tree", "-id", window).splitlines():
        if "Parent window id:" in line:
            return line.split(":", 1)[1].split()[0]
    return ""


@pytest.mark.desktop
def test_the_icon_docks_in_the_tray_host(tray_host: str) -> None:
    tray = Tray(RecordingActions())
    tray.start()
    try:
        icon = _wait_for(lambda: _x("xdotool", "search", "--classname",
                                    f"^{APP_ID}SystemTrayIcon$"))
        assert icon, "pystray made no icon window"
        root = _x("xwininfo", "-root").split("Window id:")[1].split()[0]
        # Docked: the tray host has taken the icon in (reparented it away from the root).
        window = str(icon).split()[0]
        assert _wait_for(lambda: _parent(window) not in ("", root)), \
            "the icon was never docked"
        assert tray.backend == "xorg"
        tray.set_state(TrayState.WAITING)
        assert tray.icon.title == tray.title()
    finally:
        tray.stop()
        # pystray closes its X connection only when the icon is collected: let that happen
        # while this test's X server runs, not in a later test after the fixture ended it.
        del tray
        gc.collect()


def test_each_state_has_its_own_colour() -> None:
    centres = {state: icon_image(state).getpixel((8, 32)) for state in TrayState}
    assert len(set(centres.values())) == len(TrayState)
    assert state_for(waiting=True, tokens_present=True) is TrayState.WAITING
    assert state_for(waiting=False, tokens_present=True) is TrayState.TOKEN
    assert state_for(waiting=False, tokens_present=False) is TrayState.RUNNING
    assert state_for(waiting=False, tokens_present=True, problem=True) is TrayState.PROBLEM


def test_menu_revokes_repairs_switches_language_and_quits() -> None:
    actions = RecordingActions()
    chosen: list[str] = []
    i18n.set_language("en")
    entries = {e.text: e for e in menu_entries(actions, chosen.append)}
    assert list(entries) == ["Allowed sites", "Tokens and certificates", "Change PIN…",
                             "Unblock PIN…", "Language", "Start at login", "TLS trust",
                             "About", "Quit"]
    site = entries["Allowed sites"].children[0]  # type: ignore[index]
    assert site.text == "https://portal.example"
    revoke = next(c for c in site.children or [] if c.text == "Revoke")
    assert revoke.action is not None
    revoke.action()
    assert actions.revoked == ["https://portal.example"]
    trust = entries["TLS trust"].children or []
    assert trust[0].text == "Browsers do not trust the agent's certificate"
    assert trust[1].action is not None
    trust[1].action()
    assert actions.repaired == 1
    languages = entries["Language"].children or []
    assert [e.text for e in languages] == list(i18n.LANGUAGE_NAMES.values())
    assert [e.checked for e in languages] == [False, False, False, True]
    assert languages[0].action is not None
    languages[0].action()
    assert chosen == ["az"]
    about = [e.text for e in entries["About"].children or []]
    assert about == ["imza-agent 1.2.3", "Ports: ws 29171, wss 29170"]
    assert entries["Quit"].action is not None
    entries["Quit"].action()
    assert actions.quitted == 1


def test_pin_entries_open_the_form_for_the_chosen_token() -> None:
    actions = RecordingActions()
    i18n.set_language("en")
    entries = {e.text: e for e in menu_entries(actions, lambda _c: None)}
    [none] = entries["Change PIN…"].children or []
    assert none.text == "No token found" and not none.enabled and none.action is None
    actions.pin_tokens = [("s1 A/1", "Token A (1)"), ("s2 B/2", "Token B (2)")]
    entries = {e.text: e for e in menu_entries(actions, lambda _c: None)}
    for title, action in (("Change PIN…", "change"), ("Unblock PIN…", "unblock")):
        children = entries[title].children or []
        assert [c.text for c in children] == ["Token A (1)", "Token B (2)"]
        assert children[1].action is not None
        children[1].action()
        assert actions.managed[-1] == ("s2 B/2", action)
    i18n.set_language("ru")
    try:
        texts = [e.text for e in menu_entries(actions, lambda _c: None)]
        assert "Сменить PIN…" in texts and "Разблокировать PIN…" in texts
    finally:
        i18n.set_language("en")


@pytest.mark.softhsm
async def test_the_runtime_lists_the_tokens_whose_pin_can_be_managed(softhsm: object) -> None:
    import asyncio
    import threading
    from types import SimpleNamespace

    from agent.keystores.pkcs11.store import Pkcs11Store
    from agent.keystores.pkcs12 import Pkcs12Store
    from agent.ui.tray import RuntimeActions

    bed: object = softhsm
    store = Pkcs11Store(bed.module, env=bed.env, call_timeout=15)  # type: ignore[attr-defined]
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    p12 = Pkcs12Store(Path("/nonexistent.p12"), "file")  # a store without a PIN to manage
    runtime = SimpleNamespace(stores=SimpleNamespace(managed=[
        SimpleNamespace(store=p12), SimpleNamespace(store=store)]), ui=None)
    try:
        actions = RuntimeActions(runtime, loop)
        listed = await asyncio.to_thread(actions._pin_tokens)
        names = sorted(name for _key, name in listed)
        assert names == sorted(f"{t.label} ({t.serial})"
                               for t in bed.tokens.values())  # type: ignore[attr-defined]
        # No desktop to draw on: the request is dropped, not queued for later.
        actions.manage_pin(listed[0][0], "change")
        actions.manage_pin("no such token", "unblock")
    finally:
        asyncio.run_coroutine_threadsafe(store.close(), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def test_menu_speaks_the_chosen_language() -> None:
    try:
        i18n.set_language("az")
        texts = [e.text for e in menu_entries(RecordingActions(), lambda _c: None)]
        assert texts[0] == "İcazəli saytlar"
        assert texts[-1] == "Çıxış"
    finally:
        i18n.set_language("en")


def test_start_at_login_writes_and_removes_the_autostart_entry(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path), "HOME": str(tmp_path)}
    assert not autostart_enabled(env)
    path = set_autostart(True, env)
    assert path == tmp_path / "autostart" / "imza-agent.desktop" == autostart_file(env)
    text = path.read_text()
    assert "[Desktop Entry]" in text and " run" in text
    assert autostart_enabled(env)
    set_autostart(False, env)
    assert not autostart_enabled(env)


def test_a_stopped_smart_card_service_shows_in_the_menu_and_the_icon() -> None:
    from types import SimpleNamespace

    from agent.pcsc.watcher import PcscStatus, ServiceState
    from agent.ui.tray import smartcard_down

    status = PcscStatus(service=ServiceState.NOT_RUNNING, reason="no answer")
    runtime = SimpleNamespace(pcsc=SimpleNamespace(status=status))
    assert smartcard_down(runtime)
    assert not smartcard_down(SimpleNamespace(pcsc=None))  # PC/SC not watched at all
    status.service = ServiceState.RUNNING
    assert not smartcard_down(runtime)

    class Down(RecordingActions):
        def facts(self) -> TrayFacts:
            return TrayFacts("1.2.3", {}, tokens=["Token B: 3"], smartcard_down=True)

    i18n.set_language("en")
    entries = {e.text: e for e in menu_entries(Down(), lambda _c: None)}
    tokens = [e.text for e in entries["Tokens and certificates"].children or []]
    assert tokens == ["The smart card service is not running", "Token B: 3"]


def test_a_taken_port_shows_first_in_the_menu_and_turns_the_icon_to_trouble() -> None:
    from types import SimpleNamespace

    from agent.ui.tray import IconState, TrayState, follow

    class Squatted(RecordingActions):
        def facts(self) -> TrayFacts:
            return TrayFacts("1.2.3", {"ws": 29171}, unavailable={"wss": 29170})

    i18n.set_language("ru")
    entries = menu_entries(Squatted(), lambda _c: None)
    assert entries[0].text.startswith("Порт 29170 занят") and not entries[0].enabled
    i18n.set_language("en")
    assert menu_entries(RecordingActions(), lambda _c: None)[0].text == "Allowed sites"

    shown: list[TrayState] = []
    tray = SimpleNamespace(set_state=shown.append, detach=[])
    runtime = SimpleNamespace(transport=SimpleNamespace(unavailable={"wss": "taken"}))
    icon: IconState = follow(tray, runtime)  # type: ignore[arg-type]
    assert icon.state is TrayState.PROBLEM
    runtime.transport.unavailable.clear()
    assert follow(tray, runtime).state is TrayState.RUNNING  # type: ignore[arg-type]
