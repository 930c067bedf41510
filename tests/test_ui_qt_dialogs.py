"""The Qt dialogs answered from the keyboard alone: the UI process (``python -m
agent.ui.qt``) on a private Xvfb, dialogs sent over its pipe as the daemon sends them,
keys typed from outside with xdotool, the answers read back from the pipe. Where a test
needs to know which control has the focus, or what the countdown says, it reads the
accessibility tree (tests/atspi.py), as a screen reader would.

Ports of the Tk dialog tests (test_ui_tk.py, test_keyjacking.py, test_dialog_posing.py):
the same behaviours, asserted the same way, on the Qt windows.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from atspi import AtspiBus, Node
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from ui_driver import (  # noqa: F401  (a11y_bus, display: fixtures)
    ROOT,
    Keyboard,
    UiProcess,
    a11y_bus,
    consent_args,
    display,
    document_pdf,
    extend_args,
    message_args,
    pick_args,
    pin_args,
    pin_locked_args,
    secret_of,
)
from websockets.asyncio.client import connect

from agent.app.dialogs import (
    CertificateChoice,
    ExtendRequest,
    PinRequest,
    Preview,
    PreviewKind,
)
from agent.errors import PinStatus

pytestmark = [pytest.mark.desktop]

ORIGIN = "https://portal.example"
ARMING_MS = 400
SLOW_MS = 2000  # "before it arms" wide enough to act in reliably
SETTLE = 0.7    # time for keys already sent to reach the dialog before asserting


def certificate(holder: str) -> CertificateChoice:
    return CertificateChoice(holder=holder, issuer="Test CA", serial_hex="01",
                             not_before="2025-01-01", not_after="2030-01-01",
                             token_label="Token A", usable=True)


CHOICES = [certificate("Əliyev Əli"), certificate("Məmmədova Leyla")]
DECLARATION = "\n".join([f"{n}. Bənd {n}: razıyam" for n in range(1, 40)]
                        + ["40. Amount: 10 000 000 AZN"])


def pin_request(**fields: Any) -> dict[str, Any]:
    pin = fields.pop("pin", PinStatus(min_length=4, max_length=8))
    return pin_args(PinRequest(ORIGIN, "sign", CHOICES[0], pin, **fields))


def text_preview(text: str, name: str = "beyanname.txt") -> Preview:
    data = text.encode()
    return Preview(PreviewKind.TEXT, len(data), hashlib.sha256(data).hexdigest(), name, data)


class Screen:
    """One UI process, the keyboard on its display and its accessibility tree."""

    def __init__(self, ui: UiProcess, keyboard: Keyboard, bus: AtspiBus) -> None:
        self.ui, self.keyboard, self.bus = ui, keyboard, bus
        self.seen: set[str] = set()
        self.opened: list[int] = []

    def open(self, kind: str, args: dict[str, Any], *, focus: bool = True) -> tuple[int, str]:
        """Send a dialog; wait for its window; give it the keyboard (as a window manager
        or a click would: the dialogs never take it) and wait out the arming."""
        dialog_id = self.ui.dialog(kind, args)
        self.opened.append(dialog_id)
        window = self.keyboard.wait_window(self.ui.pid, self.seen)
        if focus:
            self.keyboard.focus(window)
            time.sleep(self.ui.arming + 0.3)
        return dialog_id, window

    def tree(self, ready: Any = lambda _t: True) -> Node:
        return self.bus.wait_for(self.ui.pid, lambda app: bool(shown(app)) and ready(
            shown(app)[-1]))

    def window(self) -> Node:
        """The newest dialog's tree."""
        return shown(self.tree())[-1]

    def focused(self) -> Node:
        """The control that has the keyboard, as AT-SPI reports it."""
        window = self.bus.wait_for(self.ui.pid, lambda app: bool(
            shown(app) and [n for n in shown(app)[-1].walk()
                            if {"focused", "focusable"} <= n.states]))
        # A text box's viewport reports the box's focus too; the control is the focusable one.
        nodes = [n for n in shown(window)[-1].walk() if {"focused", "focusable"} <= n.states]
        assert len(nodes) == 1, [n.dump() for n in nodes]
        return nodes[0]

    def close_all(self) -> None:
        """What a test left open (a failed one) goes, so the next test starts clean."""
        for dialog_id in self.opened:
            if not self.ui.answered(dialog_id):
                self.ui.close(dialog_id)
        self.opened.clear()
        self.bus.wait_for(self.ui.pid, lambda app: not shown(app))

    def answer(self, dialog_id: int) -> dict[str, Any]:
        return self.ui.answer(dialog_id)

    def finish(self, dialog_id: int, window: str) -> None:
        """Close a dialog the test left open, as the daemon does (``close``)."""
        self.ui.close(dialog_id)
        assert self.keyboard.wait_gone(self.ui.pid, window)


def shown(app: Node) -> list[Node]:
    return [w for w in app.children if "showing" in w.states]


def start(screen_display: str, bus: AtspiBus, arming_ms: int, **hello: Any
          ) -> Iterator[Screen]:
    with UiProcess(bus.env(screen_display), arming_ms=arming_ms, **hello) as ui:
        yield Screen(ui, Keyboard(screen_display), bus)


@pytest.fixture(scope="module")
def screen_process(display: str, a11y_bus: AtspiBus) -> Iterator[Screen]:  # noqa: F811
    yield from start(display, a11y_bus, ARMING_MS)


@pytest.fixture(scope="module")
def slow_process(display: str, a11y_bus: AtspiBus) -> Iterator[Screen]:  # noqa: F811
    yield from start(display, a11y_bus, SLOW_MS)


@pytest.fixture
def screen(screen_process: Screen) -> Iterator[Screen]:
    yield screen_process
    screen_process.close_all()


@pytest.fixture
def slow(slow_process: Screen) -> Iterator[Screen]:
    yield slow_process
    slow_process.close_all()


# --- consent and picker -------------------------------------------------------------------------

def test_consent_by_keyboard_starts_on_deny(screen: Screen) -> None:
    # Deny has the focus; a key let go first (shift), then Return presses it.
    dialog_id, _w = screen.open("consent", consent_args(ORIGIN, ("select",)))
    assert screen.focused().name == "Deny"
    screen.keyboard.key("shift", "Return")
    assert screen.answer(dialog_id)["result"] == "deny"

    # Shift+Tab twice: Always allow, Allow once.
    dialog_id, _w = screen.open("consent", consent_args(ORIGIN, ("select",)))
    screen.keyboard.key("shift+Tab", "shift+Tab", "Return")
    assert screen.answer(dialog_id)["result"] == "once"

    # Tab from Deny reaches Block this site, on its own row after the answers.
    dialog_id, _w = screen.open("consent", consent_args(ORIGIN, ("select",)))
    screen.keyboard.key("Tab")
    assert screen.focused().name == "Block this site"
    screen.keyboard.key("Return")
    assert screen.answer(dialog_id)["result"] == "block"


def test_escape_cancels_the_consent_dialog(screen: Screen) -> None:
    dialog_id, window = screen.open("consent", consent_args(ORIGIN, ("select",)))
    screen.keyboard.key("Escape")
    assert screen.answer(dialog_id) == {"op": "answer", "id": dialog_id, "cancelled": True}
    assert screen.keyboard.wait_gone(screen.ui.pid, window)


def test_picker_by_keyboard(screen: Screen) -> None:
    """The focus starts on the first usable row; Return there chooses nothing; Down, Tab
    to Choose, Return picks the second."""
    dialog_id, window = screen.open("pick", pick_args(ORIGIN, "sign", CHOICES))
    assert screen.focused().name == "Əliyev Əli"
    screen.keyboard.key("shift", "Return", "KP_Enter", "space", "Return")
    time.sleep(SETTLE)
    assert not screen.ui.answered(dialog_id), "Return on a row chose a certificate"
    screen.keyboard.key("Down", "Tab")
    assert screen.focused().name == "Choose"
    screen.keyboard.key("Return")
    assert screen.answer(dialog_id)["result"] == 1
    assert screen.keyboard.wait_gone(screen.ui.pid, window)


@pytest.mark.parametrize(("filtered", "message"), [
    (True, "No certificate matches what this site asks for."),
    (False, "No certificate found. Insert your token or card."),
])
def test_an_empty_picker_can_only_be_closed(screen: Screen, filtered: bool,
                                            message: str) -> None:
    dialog_id, _w = screen.open("pick", pick_args(ORIGIN, "sign", [], filtered))
    window = screen.window()
    assert window.find(contains=message), window.dump()
    assert [b.name for b in window.find("push button")] == ["Close"]
    assert screen.focused().name == "Close"
    screen.keyboard.key("shift", "Return")
    assert screen.answer(dialog_id).get("cancelled") is True


# --- the PIN dialog -------------------------------------------------------------------------------

def test_pin_typed_and_return_answers_it(screen: Screen) -> None:
    dialog_id, window = screen.open("pin", pin_request())
    assert screen.focused().role_name == "password text"
    screen.keyboard.type("4711")
    screen.keyboard.key("Return")
    answer = screen.answer(dialog_id)
    assert secret_of(answer["result"]) == "4711"
    assert screen.keyboard.wait_gone(screen.ui.pid, window)


def test_pin_tab_order_reaches_sign_then_cancel(screen: Screen) -> None:
    # PIN field → Sign → Cancel; Return presses the focused button.
    dialog_id, _w = screen.open("pin", pin_request())
    screen.keyboard.type("4711")
    screen.keyboard.key("Tab")
    assert screen.focused().name == "Sign"
    screen.keyboard.key("Tab")
    assert screen.focused().name == "Cancel"
    screen.keyboard.key("Return")
    assert screen.answer(dialog_id).get("cancelled") is True

    dialog_id, _w = screen.open("pin", pin_request())
    screen.keyboard.type("4711")
    screen.keyboard.key("Tab", "Return")
    assert secret_of(screen.answer(dialog_id)["result"]) == "4711"

    dialog_id, _w = screen.open("pin", pin_request())
    screen.keyboard.type("4711")
    screen.keyboard.key("Escape")
    assert screen.answer(dialog_id).get("cancelled") is True


def test_sign_is_held_back_until_the_pin_is_long_enough(screen: Screen) -> None:
    dialog_id, window = screen.open("pin", pin_request())
    screen.keyboard.type("47")
    screen.keyboard.key("Return")  # too short: nothing is sent
    time.sleep(SETTLE)
    assert not screen.ui.answered(dialog_id)
    assert "sensitive" not in screen.window().one("push button", "Sign").states
    screen.keyboard.type("11")
    screen.keyboard.key("Return")
    assert secret_of(screen.answer(dialog_id)["result"]) == "4711"
    assert screen.keyboard.wait_gone(screen.ui.pid, window)


def test_the_sites_text_is_whole_and_reached_with_shift_tab(screen: Screen) -> None:
    """Reading order: the site's text comes before the PIN field, so Shift+Tab from the
    field (where the focus starts) reaches it; it holds every line, the last one too."""
    dialog_id, window = screen.open("pin", pin_request(
        previews=(text_preview(DECLARATION),)))
    box = screen.window().one(name="Text of beyanname.txt")
    assert box.text is not None and box.text.splitlines() == DECLARATION.splitlines()
    assert "read-only" in box.states or "editable" not in box.states
    screen.keyboard.key("shift+Tab")
    assert screen.focused().name == "Text of beyanname.txt"
    screen.finish(dialog_id, window)


def test_a_length_rule_with_min_equal_max_says_n_characters(screen: Screen) -> None:
    dialog_id, window = screen.open("pin", pin_request(
        pin=PinStatus(min_length=4, max_length=4)), focus=False)
    tree = screen.window()
    assert tree.one("password text", "PIN").description == "4 characters"
    assert tree.find("label", "4 characters")
    assert "From 4 to 4" not in tree.all_text()
    screen.finish(dialog_id, window)


@pytest.mark.parametrize(("origin", "shown_name", "ascii_name"), [
    ("https://xn--80ak6aa92e.com", "аррӏе.com", "xn--80ak6aa92e.com"),  # Cyrillic "apple"
    ("https://xn--bak-lua.gov.az", "bakı.gov.az", "xn--bak-lua.gov.az"),
])
def test_an_internationalised_site_shows_its_punycode_too(
        screen: Screen, origin: str, shown_name: str, ascii_name: str) -> None:
    dialog_id, window = screen.open("consent", consent_args(origin, ("select",)),
                                    focus=False)
    assert screen.keyboard.title(window).endswith(f"— {shown_name}")
    tree = screen.window()
    assert tree.find("label", f"Website: {shown_name}"), tree.dump()
    assert tree.find("label", "Internationalised name; the browser reported it as "
                              f"{ascii_name}"), tree.dump()
    screen.finish(dialog_id, window)


def test_a_plain_ascii_site_shows_no_punycode_line(screen: Screen) -> None:
    dialog_id, window = screen.open("consent", consent_args(ORIGIN, ("select",)), focus=False)
    assert "Internationalised name" not in screen.window().all_text()
    screen.finish(dialog_id, window)


def test_the_countdown_warns_in_the_last_20_seconds(
        display: str, a11y_bus: AtspiBus) -> None:  # noqa: F811
    for each in start(display, a11y_bus, ARMING_MS, timeout_s=23):
        dialog_id, window = each.open("consent", consent_args(ORIGIN, ("select",)),
                                      focus=False)
        before = each.window().find(contains="Closes in 0:2")
        assert before and not before[0].description
        warned = each.tree(lambda w: bool(w.find(contains="left: then this window closes")))
        [label] = shown(warned)[0].find(contains="left: then this window closes")
        assert label.name.startswith("Only 0:")
        assert label.description == "This window closes soon."
        assert not each.ui.answered(dialog_id)  # a warning, not an end
        each.finish(dialog_id, window)
        each.close_all()


# --- keyjacking: keys meant for the page answer nothing -------------------------------------------

def test_a_flood_of_return_and_space_before_arming_does_nothing(slow: Screen) -> None:
    dialog_id, window = slow.open("consent", consent_args(ORIGIN, ("select",)), focus=False)
    slow.keyboard.focus(window)
    for _ in range(10):  # faster than the arming delay: each one starts the wait again
        slow.keyboard.key("Return", "space", "KP_Enter")
        time.sleep(0.25)
        assert not slow.ui.answered(dialog_id), "a key before arming answered the dialog"
    time.sleep(SLOW_MS / 1000 + SETTLE)  # armed now; no key was let go since
    assert not slow.ui.answered(dialog_id)
    assert slow.focused().name == "Deny"  # the flood did not even move the focus
    # Still usable by keyboard: a deliberate key let go, then Return.
    slow.keyboard.key("shift", "Return")
    assert slow.answer(dialog_id)["result"] == "deny"


def test_keys_typed_before_arming_never_reach_the_pin_field(slow: Screen) -> None:
    dialog_id, window = slow.open("pin", pin_request(), focus=False)
    slow.keyboard.focus(window)
    for digit in "1234":
        slow.keyboard.key(digit)
        time.sleep(0.5)  # well within the 2 s delay, so it never arms meanwhile
    slow.keyboard.key("Return")
    time.sleep(SETTLE)
    assert not slow.ui.answered(dialog_id)
    assert slow.window().one("password text").text == ""
    time.sleep(SLOW_MS / 1000 + 0.3)
    slow.keyboard.type("5678")
    slow.keyboard.key("Return")
    assert secret_of(slow.answer(dialog_id)["result"]) == "5678"
    assert slow.keyboard.wait_gone(slow.ui.pid, window)


def test_return_held_while_a_dialog_appears_answers_nothing(slow: Screen) -> None:
    slow.keyboard.run("xdotool", "keydown", "Return")
    try:
        dialog_id, window = slow.open("consent", consent_args(ORIGIN, ("select",)),
                                      focus=False)
        slow.keyboard.focus(window)
        time.sleep(3.0)  # held: the server's auto-repeat sends it again and again
        assert not slow.ui.answered(dialog_id), "a held Return answered the dialog"
    finally:
        slow.keyboard.run("xdotool", "keyup", "Return")
    time.sleep(SLOW_MS / 1000 + SETTLE)
    assert not slow.ui.answered(dialog_id)
    slow.finish(dialog_id, window)


def test_escape_through_a_flood_does_not_cancel_the_next_dialog(slow: Screen) -> None:
    dialog_id, window = slow.open("consent", consent_args(ORIGIN, ("select",)), focus=False)
    slow.keyboard.focus(window)
    for _ in range(8):
        slow.keyboard.key("Escape")
        time.sleep(0.2)
        assert not slow.ui.answered(dialog_id), "an Escape before arming cancelled it"
    time.sleep(SLOW_MS / 1000 + SETTLE)
    assert not slow.ui.answered(dialog_id)
    slow.keyboard.key("Escape")  # deliberate, once armed
    assert slow.answer(dialog_id).get("cancelled") is True


def test_the_pin_crosses_the_pipe_as_base64_of_its_utf8(screen: Screen) -> None:
    dialog_id, _w = screen.open("pin", pin_request(password=True, pin=PinStatus()))
    screen.keyboard.type(" ab")  # a password may begin with a space: it types, never presses
    screen.keyboard.key("Return")
    result = screen.answer(dialog_id)["result"]
    assert result == {"pin_b64": base64.b64encode(b" ab").decode()}


# --- through a real daemon: a page signs, the person answers by keyboard ----------------------

def ui_process_of(daemon: subprocess.Popen[bytes]) -> int:
    """The UI process the daemon started (``python -m agent.ui.qt``)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        todo = [daemon.pid]
        while todo:
            pid = todo.pop()
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                todo += [int(c) for t in Path(f"/proc/{pid}/task").glob("*/children")
                         for c in t.read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                continue
            if b"agent.ui.qt" in argv:
                return pid
        time.sleep(0.1)
    raise AssertionError("the daemon started no UI process")


@pytest.fixture
def qt_daemon(display: str, softhsm: Any, tmp_path: Path) -> Iterator[tuple[int, int]]:  # noqa: F811
    """``imza-agent run`` in desktop mode with the Qt UI: (ws port, UI process pid)."""
    home, user_home = tmp_path / "agent", tmp_path / "home"
    home.mkdir()
    user_home.mkdir()  # desktop mode's first run trusts its certificate under HOME
    config = tmp_path / "agent.toml"
    config.write_text(f"""
[server]
ws_port = 0
ws_enabled = true
wss_enabled = false
[tokens]
known_modules = false
modules = ["{softhsm.module}"]
[ui]
backend = "qt"
language = "en"
dialog_timeout = 60
arming_delay = 0.4
tray = false
[demo]
enabled = "never"
""", encoding="utf-8")
    policy = tmp_path / "policy.toml"
    policy.write_text("", encoding="utf-8")  # plain ws:// needs the (empty) policy's leave
    env = {**os.environ, **softhsm.env, "IMZA_AGENT_HOME": str(home), "HOME": str(user_home),
           "DISPLAY": display, "QT_QPA_PLATFORM": "xcb",
           "IMZA_AGENT_SYSTEM_POLICY": str(policy)}
    process = subprocess.Popen([sys.executable, "-m", "agent.cli", "--config", str(config),
                                "run"], env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        port = 0
        while not port and time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(FileNotFoundError, ValueError):
                port = json.loads((home / "runtime.json").read_text())["ports"].get("ws", 0)
            time.sleep(0.05)
        assert port, "the daemon did not start"
        yield port, ui_process_of(process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def rpc_send(ws: Any, request_id: int, method: str, params: dict[str, Any]) -> None:
    await ws.send(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method,
                              "params": params}))


async def rpc_reply(ws: Any, request_id: int) -> dict[str, Any]:
    while True:
        reply = json.loads(await asyncio.wait_for(ws.recv(), 90))
        if reply.get("id") == request_id:
            return dict(reply)


async def answer_by_keys(keyboard: Keyboard, pid: int, seen: set[str], *,
                         typed: str = "", keys: tuple[str, ...] = ()) -> str:
    """Wait for the UI process's next window, give it the keyboard, wait out the arming,
    type and press; returns the window's title."""
    window = await asyncio.to_thread(keyboard.wait_window, pid, seen)
    title = keyboard.title(window)
    await asyncio.to_thread(keyboard.focus, window)
    await asyncio.sleep(0.4 + 0.4)
    if typed:
        await asyncio.to_thread(keyboard.type, typed)
    await asyncio.to_thread(keyboard.key, *keys)
    return title


@pytest.mark.softhsm
@pytest.mark.daemon
async def test_a_page_signs_by_keyboard_with_a_wrong_pin_first(
        display: str, qt_daemon: tuple[int, int], softhsm: Any) -> None:  # noqa: F811
    port, ui_pid = qt_daemon
    keyboard, seen = Keyboard(display), set()
    data = b"Vergi beyannamesi 2025"
    async with connect(f"ws://127.0.0.1:{port}/v1", origin=ORIGIN) as ws:
        await rpc_send(ws, 1, "certificates.select", {"purpose": "sign"})
        # Consent starts on Deny: Shift+Tab to Always allow. The picker starts on the first
        # usable certificate: Tab to Choose.
        title = await answer_by_keys(keyboard, ui_pid, seen, keys=("shift+Tab", "Return"))
        assert title == "imza-agent — Permission — portal.example"
        title = await answer_by_keys(keyboard, ui_pid, seen, keys=("Tab", "Return"))
        assert title.startswith("imza-agent — Choose a certificate")
        selected = (await rpc_reply(ws, 1))["result"]
        label = selected["token"]["label"]
        pin = next(t.pin for t in softhsm.tokens.values() if t.label == label)
        await rpc_send(ws, 2, "sign.hash", {
            "handle": selected["handle"], "hashAlgorithm": "SHA-256",
            "hash": base64.b64encode(hashlib.sha256(data).digest()).decode()})
        await answer_by_keys(keyboard, ui_pid, seen, typed="0000", keys=("Return",))
        # A wrong PIN: the dialog comes back, and the page hears nothing of it.
        title = await answer_by_keys(keyboard, ui_pid, seen, typed=pin, keys=("Return",))
        assert title == "imza-agent — Sign — portal.example"
        reply = await rpc_reply(ws, 2)
    assert "result" in reply, reply
    cert = x509.load_der_x509_certificate(base64.b64decode(reply["result"]["certificate"]))
    public_key = cert.public_key()
    signature = base64.b64decode(reply["result"]["signature"])
    if isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    else:
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))


def _next_page_by_keyboard(screen: Screen, name: str, label: str) -> Any:
    """From the dialog's focus back (Shift+Tab) to "Next page" and Return: the page
    shown next, as the accessibility tree names it (``label`` is its "Page N / M")."""
    for _ in range(8):
        if screen.focused().name == "Next page":
            break
        screen.keyboard.key("shift+Tab")
        time.sleep(0.1)
    assert screen.focused().name == "Next page"
    screen.keyboard.key("Return")
    tree = screen.tree(lambda w: bool(w.find("label", label)))
    [page] = shown(tree)[-1].find(name=f"{name}: {label}")
    return page


def test_pdf_pages_are_turned_by_keyboard_and_announced(screen: Screen) -> None:
    """From the PIN field back (Shift+Tab) to "Next page"; pressing it shows page 2, and
    what a screen reader reads changes with it: the page's name and its own text."""
    pdf = document_pdf([["First page"], ["Second page text"], ["Third page"]])
    dialog_id, window = screen.open("pin", pin_request(previews=(
        Preview(PreviewKind.PDF, len(pdf), hashlib.sha256(pdf).hexdigest(), "akt.pdf", pdf),)))
    page = _next_page_by_keyboard(screen, "akt.pdf", "Page 2 / 3")
    assert "Second page text" in page.description
    screen.finish(dialog_id, window)


# --- the extend confirmation and the agent's own notices ---------------------------------------

def extend_request(**fields: Any) -> dict[str, Any]:
    pdf = document_pdf([["Arxiv senedi"], ["Second page"]])
    return extend_args(ExtendRequest(
        ORIGIN, "pdf", "B-LTA", signatures=2, document_name="arxiv.pdf",
        previews=(Preview(PreviewKind.PDF, len(pdf), hashlib.sha256(pdf).hexdigest(),
                          "arxiv.pdf", pdf),), **fields))


def test_extend_starts_on_cancel_and_shift_tab_reaches_extend(screen: Screen) -> None:
    """A key meant for the page only refuses: the focus starts on Cancel, Return there
    cancels. Shift+Tab moves back to Extend; Return there confirms."""
    dialog_id, window = screen.open("extend", extend_request())
    assert screen.focused().name == "Cancel"
    screen.keyboard.key("shift", "Return")
    assert screen.answer(dialog_id) == {"op": "answer", "id": dialog_id, "cancelled": True}
    assert screen.keyboard.wait_gone(screen.ui.pid, window)

    dialog_id, window = screen.open("extend", extend_request())
    screen.keyboard.key("shift+Tab")
    assert screen.focused().name == "Extend"
    screen.keyboard.key("Return")
    assert screen.answer(dialog_id)["result"] == "extend"
    assert screen.keyboard.wait_gone(screen.ui.pid, window)


def test_extend_preview_pages_turn_by_keyboard_and_escape_cancels(screen: Screen) -> None:
    dialog_id, window = screen.open("extend", extend_request())
    page = _next_page_by_keyboard(screen, "arxiv.pdf", "Page 2 / 2")
    assert "Second page" in page.description
    assert not screen.ui.answered(dialog_id)  # turning a page answers nothing
    screen.keyboard.key("Escape")
    assert screen.answer(dialog_id).get("cancelled") is True
    assert screen.keyboard.wait_gone(screen.ui.pid, window)


@pytest.mark.parametrize("close_key", ["Return", "Escape"])
def test_the_pin_locked_notice_closes_from_the_keyboard(screen: Screen, close_key: str) -> None:
    dialog_id, window = screen.open("pin_locked", pin_locked_args(ORIGIN, "Token A", "PUK"))
    assert screen.focused().name == "Close"
    assert screen.window().find(contains="Unblock PIN")  # says where to unlock it
    screen.keyboard.key("shift", close_key)
    answer = screen.answer(dialog_id)
    assert answer.get("result") is None and not answer.get("cancelled")
    assert screen.keyboard.wait_gone(screen.ui.pid, window)


@pytest.mark.parametrize("close_key", ["Return", "Escape"])
def test_a_message_closes_from_the_keyboard(screen: Screen, close_key: str) -> None:
    dialog_id, window = screen.open("message", message_args(
        "PIN not changed", "Wrong PIN.", error=True))
    assert screen.keyboard.title(window).endswith("PIN not changed")
    assert screen.focused().name == "Close"
    screen.keyboard.key("shift", close_key)
    answer = screen.answer(dialog_id)
    assert answer.get("result") is None and not answer.get("cancelled")
    assert screen.keyboard.wait_gone(screen.ui.pid, window)
