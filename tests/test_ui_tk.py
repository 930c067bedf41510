"""The desktop dialogs as a citizen meets them: a real daemon with the tkinter UI on an
Xvfb display, real WebSocket requests from a page's origin, SoftHSM tokens, and keys
typed from outside with xdotool.  Also screenshots every dialog in every language, into
a temp dir; ``scripts/screenshots.sh`` points that at docs/screenshots/, which the README
shows (``IMZA_SCREENSHOTS_DIR``).
"""

from __future__ import annotations

import asyncio
import base64
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
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from websockets.asyncio.client import ClientConnection, connect

from agent import i18n
from agent.app import certs
from agent.app.dialogs import (
    CertificateChoice,
    ConsentAnswer,
    ConsentRequest,
    PinRequest,
    SignedField,
)
from agent.config import UiConfig
from agent.errors import PinStatus, UserCancelled
from agent.keystores.base import PIN_PAD
from agent.ui.tk import TkUI
from agent.ui.tk.dialogs import ARMING_DELAY

# Every test draws on Xvfb with the SoftHSM bed's certificates; three also start the agent.
pytestmark = [pytest.mark.softhsm, pytest.mark.desktop]

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS_ENV = "IMZA_SCREENSHOTS_DIR"  # set by scripts/screenshots.sh only
ORIGIN = "https://portal.example"
WAIT = 20.0  # upper bound for a window to appear or go; never asserted as a duration


# --- the display and the keyboard ---------------------------------------------------------

@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    """A private Xvfb; ``-displayfd`` makes the server pick a free display number."""
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "1280x800x24",
                             "-nolisten", "tcp"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert xvfb.stdout is not None
    number = xvfb.stdout.readline().strip()
    assert number.isdigit(), "Xvfb did not start"
    try:
        yield f":{number}"
    finally:
        xvfb.terminate()
        xvfb.wait()


class Desktop:
    """xdotool and ImageMagick pointed at the test display."""

    def __init__(self, display: str) -> None:
        self.env = {**os.environ, "DISPLAY": display}
        # X ids of dialogs already returned: every dialog is a new window, and a closing
        # one may still be mapped for a moment after the key that closed it.
        self.seen: set[str] = set()

    def _run(self, *args: str) -> str:
        done = subprocess.run(args, env=self.env, capture_output=True, text=True)
        return done.stdout

    def windows(self, window_class: str) -> list[str]:
        return self._run("xdotool", "search", "--onlyvisible", "--class",
                         f"^{window_class}$").split()

    def wait_window(self, window_class: str) -> str:
        """The next new dialog of this class (a Tk toplevel may show as several ids)."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            found = [w for w in self.windows(window_class) if w not in self.seen]
            if found:
                self.seen.update(found)
                time.sleep(ARMING_DELAY + 0.3)  # drawn armed (for the screenshots)
                return found[-1]
            time.sleep(0.05)
        raise AssertionError(f"no {window_class} window appeared")

    def wait_gone(self, window_class: str) -> bool:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if not self.windows(window_class):
                return True
            time.sleep(0.05)
        return False

    def title(self, window: str) -> str:
        return self._run("xdotool", "getwindowname", window).strip()

    def focus(self, window: str) -> None:
        """Give the window the keyboard, as a window manager or a click would (the
        dialogs never take it themselves), then wait out the arming delay that the
        focus change restarts.  Focusing the window that has the focus changes nothing."""
        self._run("xdotool", "windowfocus", "--sync", window)
        time.sleep(ARMING_DELAY + 0.3)

    def type(self, window: str, text: str) -> None:
        self.focus(window)
        self._run("xdotool", "type", "--delay", "30", text)

    def key(self, window: str, *keys: str) -> None:
        """Press and release each key in turn.  Return and space press a button only
        after some key was let go since the dialog armed: a dialog's first key may be
        Tab or typing, or a lone "shift"."""
        self.focus(window)
        for key in keys:
            self._run("xdotool", "key", "--delay", "30", key)

    def screenshot(self, window: str, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["/usr/bin/import", "-window", window, str(path)], env=self.env,
                       check=True, capture_output=True)
        return path


@pytest.fixture(scope="module")
def desktop(display: str) -> Desktop:
    return Desktop(display)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go: a temp dir, unless scripts/screenshots.sh asks for
    docs/screenshots/ (a test run never rewrites tracked files)."""
    target = os.environ.get(SCREENSHOTS_ENV)
    return Path(target) if target else tmp_path_factory.mktemp("screenshots")


# --- the daemon and the page ----------------------------------------------------------------

class Daemon:
    def __init__(self, home: Path, process: subprocess.Popen[bytes], port: int) -> None:
        self.home, self.process, self.port = home, process, port


@pytest.fixture
def daemon(display: str, desktop: Desktop, softhsm: Any, tmp_path: Path) -> Iterator[Daemon]:
    desktop.seen.clear()  # X reuses a gone client's ids for the next one
    home = tmp_path / "home"
    home.mkdir()
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
backend = "tk"
language = "en"
dialog_timeout = 60
tray = false
[demo]
enabled = "never"
""", encoding="utf-8")
    # Plain ws:// is a development setting, and needs the system policy's leave too: an
    # empty policy of our own, so that one in /etc cannot change the test.
    policy = tmp_path / "policy.toml"
    policy.write_text("", encoding="utf-8")
    env = {**os.environ, **softhsm.env, "IMZA_AGENT_HOME": str(home), "DISPLAY": display,
           "IMZA_AGENT_SYSTEM_POLICY": str(policy)}
    process = subprocess.Popen([sys.executable, "-m", "agent.cli", "--config", str(config),
                                "run"], env=env, cwd=ROOT)
    runtime = home / "runtime.json"
    deadline = time.monotonic() + WAIT
    port = 0
    while time.monotonic() < deadline and process.poll() is None:
        if runtime.exists():
            port = json.loads(runtime.read_text())["ports"].get("ws", 0)
            if port:
                break
        time.sleep(0.05)
    try:
        assert port, "the daemon did not start"
        yield Daemon(home, process, port)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Page:
    """A web page's side of the socket: JSON-RPC requests from ``ORIGIN``."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 0

    async def send(self, method: str, params: dict[str, Any] | None = None) -> int:
        self.next_id += 1
        message = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            message["params"] = params
        await self.ws.send(json.dumps(message))
        return self.next_id

    async def answer(self, request_id: int) -> dict[str, Any]:
        while True:
            reply = json.loads(await asyncio.wait_for(self.ws.recv(), WAIT * 3))
            if reply.get("id") == request_id:
                return reply


async def in_thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """xdotool waits block: keep them off the event loop that talks to the daemon."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def verify(result: dict[str, Any], data: bytes) -> None:
    """The signature checks out against the certificate the agent returned with it."""
    cert = x509.load_der_x509_certificate(base64.b64decode(result["certificate"]))
    public_key = cert.public_key()
    signature = base64.b64decode(result["signature"])
    if isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    else:
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))


def pin_of(softhsm: Any, selected: dict[str, Any]) -> str:
    """The PIN of the token the picker's first usable certificate lives on."""
    label = selected["token"]["label"]
    return next(t.pin for t in softhsm.tokens.values() if t.label == label)


async def select_by_keyboard(page: Page, desktop: Desktop) -> dict[str, Any]:
    """certificates.select: allow once in the consent dialog, take the first usable
    certificate in the picker — from the keyboard.  Neither has a default button, so
    the person moves to the button first: consent starts on Deny (Shift+Tab twice:
    Always allow, Allow once); the picker starts on the first usable row (Shift+Tab
    wraps to Cancel, then Choose)."""
    request = await page.send("certificates.select", {"purpose": "sign"})
    consent = await in_thread(desktop.wait_window, "ImzaConsent")
    assert "portal.example" in await in_thread(desktop.title, consent)
    await in_thread(desktop.key, consent, "shift+Tab", "shift+Tab", "Return")
    picker = await in_thread(desktop.wait_window, "ImzaPicker")
    await in_thread(desktop.key, picker, "shift+Tab", "shift+Tab", "Return")
    reply = await page.answer(request)
    assert "result" in reply, reply
    return reply["result"]


@pytest.mark.daemon
async def test_sign_by_keyboard_with_a_wrong_pin_first(daemon: Daemon, desktop: Desktop,
                                                       softhsm: Any) -> None:
    async with connect(f"ws://127.0.0.1:{daemon.port}/v1", origin=ORIGIN) as ws:
        page = Page(ws)
        selected = await select_by_keyboard(page, desktop)
        data = b"Vergi beyannamesi 2025"
        request = await page.send("sign.hash", {
            "handle": selected["handle"], "hash": sha256_b64(data),
            "hashAlgorithm": "SHA-256", "display": {"text": "<b>Bəyannamə</b> № 7"}})
        first = await in_thread(desktop.wait_window, "ImzaPin")
        await in_thread(desktop.type, first, "0000")
        await in_thread(desktop.key, first, "Return")
        # A wrong PIN: the dialog comes back, and the page hears nothing of it.
        second = await in_thread(desktop.wait_window, "ImzaPin")
        await in_thread(desktop.type, second, pin_of(softhsm, selected))
        await in_thread(desktop.key, second, "Return")
        reply = await page.answer(request)
    assert "result" in reply, reply
    verify(reply["result"], data)
    assert desktop.wait_gone("ImzaPin")


@pytest.mark.daemon
async def test_escape_cancels_and_tab_reaches_cancel(daemon: Daemon, desktop: Desktop,
                                                     softhsm: Any) -> None:
    async with connect(f"ws://127.0.0.1:{daemon.port}/v1", origin=ORIGIN) as ws:
        page = Page(ws)
        selected = await select_by_keyboard(page, desktop)
        pin = pin_of(softhsm, selected)
        sign = {"handle": selected["handle"], "hash": sha256_b64(b"x"),
                "hashAlgorithm": "SHA-256"}

        request = await page.send("sign.hash", sign)
        window = await in_thread(desktop.wait_window, "ImzaPin")
        await in_thread(desktop.type, window, pin)
        await in_thread(desktop.key, window, "Escape")
        escaped = await page.answer(request)

        # Tab order: PIN field → Sign → Cancel; Return presses the focused button.
        request = await page.send("sign.hash", sign)
        window = await in_thread(desktop.wait_window, "ImzaPin")
        await in_thread(desktop.type, window, pin)
        await in_thread(desktop.key, window, "Tab", "Tab", "Return")
        tabbed_to_cancel = await page.answer(request)

        request = await page.send("sign.hash", sign)
        window = await in_thread(desktop.wait_window, "ImzaPin")
        await in_thread(desktop.type, window, pin)
        await in_thread(desktop.key, window, "Tab", "Return")
        tabbed_to_sign = await page.answer(request)

    assert escaped["error"]["data"]["reason"] == "USER_CANCELLED"
    assert tabbed_to_cancel["error"]["data"]["reason"] == "USER_CANCELLED"
    assert "result" in tabbed_to_sign, tabbed_to_sign
    verify(tabbed_to_sign["result"], b"x")


@pytest.mark.daemon
async def test_deny_in_the_consent_dialog_is_permission_denied(daemon: Daemon,
                                                               desktop: Desktop) -> None:
    async with connect(f"ws://127.0.0.1:{daemon.port}/v1", origin=ORIGIN) as ws:
        page = Page(ws)
        request = await page.send("certificates.select", {"purpose": "sign"})
        consent = await in_thread(desktop.wait_window, "ImzaConsent")
        # The focus starts on Deny; a key let go first (shift), then Return presses it.
        await in_thread(desktop.key, consent, "shift", "Return")
        reply = await page.answer(request)
    assert reply["error"]["data"]["reason"] == "PERMISSION_DENIED"
    assert desktop.wait_gone("ImzaConsent")


# --- in-process: cancellation, and the screenshots ----------------------------------------------

@pytest.fixture(scope="module")
def ui(display: str, desktop: Desktop) -> Iterator[TkUI]:
    desktop.seen.clear()  # X reuses a gone client's ids for the next one
    previous = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = display  # read once, when the Tk thread opens the display
    tk_ui = TkUI(UiConfig(language="en", dialog_timeout=60))
    tk_ui.runner()
    try:
        yield tk_ui
    finally:
        tk_ui.close()
        i18n.set_language("en")
        if previous is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = previous


def choice(softhsm: Any, name: str) -> CertificateChoice:
    """A picker row for one of the test bed's certificates, as the core would build it."""
    cert = softhsm.objects[name].identity.cert
    problem = certs.validity_problem(cert)
    return CertificateChoice(
        holder=certs.holder(cert), issuer=certs.issuer_name(cert),
        serial_hex=f"{cert.serial_number:X}",
        not_before=cert.not_valid_before_utc.date().isoformat(),
        not_after=cert.not_valid_after_utc.date().isoformat(),
        token_label=softhsm.objects[name].token.label, usable=problem is None,
        unusable_reason=problem)


async def test_a_cancelled_request_closes_its_dialog(ui: TkUI, desktop: Desktop,
                                                     softhsm: Any) -> None:
    request = PinRequest(ORIGIN, "sign", choice(softhsm, "rsa_sign"), PinStatus())
    task = asyncio.create_task(ui.ask_pin(request))
    await in_thread(desktop.wait_window, "ImzaPin")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await in_thread(desktop.wait_gone, "ImzaPin")


async def test_one_dialog_at_a_time_across_origins(ui: TkUI, desktop: Desktop) -> None:
    first = asyncio.create_task(ui.ask_consent(ConsentRequest(ORIGIN, ("sign",))))
    second = asyncio.create_task(ui.ask_consent(
        ConsentRequest("https://other.example", ("sign",))))
    window = await in_thread(desktop.wait_window, "ImzaConsent")
    assert len(desktop.windows("ImzaConsent")) == 1
    assert "portal.example" in desktop.title(window)
    await in_thread(desktop.key, window, "Escape")
    with pytest.raises(UserCancelled):
        await first
    window = await in_thread(desktop.wait_window, "ImzaConsent")
    assert "other.example" in desktop.title(window)
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second


def on_tk(ui: TkUI, fn: Any) -> Any:
    """Run ``fn`` on the Tk thread (widgets live there) and return what it returns."""
    return ui.runner().call(fn).result(WAIT)


async def test_block_this_site_is_a_separate_button_reached_by_tab(ui: TkUI,
                                                                   desktop: Desktop) -> None:
    task = asyncio.create_task(ui.ask_consent(ConsentRequest(ORIGIN, ("select",))))
    window = await in_thread(desktop.wait_window, "ImzaConsent")
    dialog = ui.current
    assert dialog is not None
    labels = on_tk(ui, lambda: [str(b.cget("text")) for b in dialog.buttons])
    assert labels == ["Allow once", "Always allow", "Deny", "Block this site"]
    # On a row of its own, under the answers that allow.
    assert on_tk(ui, lambda: dialog.block.master is not dialog.buttons[0].master)
    # The focus starts on Deny; Tab moves on to Block this site.
    await in_thread(desktop.key, window, "Tab", "Return")
    assert await task is ConsentAnswer.BLOCK
    assert await in_thread(desktop.wait_gone, "ImzaConsent")


@pytest.mark.parametrize(("filtered", "message"), [
    (True, "No certificate matches what this site asks for."),
    (False, "No certificate found. Insert your token or card."),
])
async def test_an_empty_picker_is_shown_and_can_only_be_closed(
        ui: TkUI, desktop: Desktop, filtered: bool, message: str) -> None:
    task = asyncio.create_task(ui.choose_certificate(ORIGIN, "sign", [], filtered=filtered))
    window = await in_thread(desktop.wait_window, "ImzaPicker")
    dialog = ui.current
    assert dialog is not None
    assert on_tk(ui, lambda: str(dialog.message.cget("text"))) == message
    assert on_tk(ui, lambda: [str(b.cget("text")) for b in dialog.buttons]) == ["Close"]
    assert not task.done()
    # Close has the focus: pressing it (Escape does the same) cancels.
    await in_thread(desktop.key, window, "shift", "Return")
    with pytest.raises(UserCancelled):
        await task
    assert await in_thread(desktop.wait_gone, "ImzaPicker")


async def test_escape_closes_an_empty_picker(ui: TkUI, desktop: Desktop) -> None:
    i18n.set_language("az")
    try:
        task = asyncio.create_task(ui.choose_certificate(ORIGIN, "auth", [], filtered=True))
        window = await in_thread(desktop.wait_window, "ImzaPicker")
        dialog = ui.current
        assert dialog is not None
        assert on_tk(ui, lambda: str(dialog.message.cget("text"))) == \
            "Bu saytın istədiyinə uyğun sertifikat yoxdur."
        await in_thread(desktop.key, window, "Escape")
        with pytest.raises(UserCancelled):
            await task
    finally:
        i18n.set_language("en")


def screen_requests(softhsm: Any) -> list[tuple[str, str, Any]]:
    """(file name, window class, call on the UI) for every dialog the agent draws."""
    good, expired, future = (choice(softhsm, n) for n in ("rsa_sign", "expired", "not_yet_valid"))
    ec = choice(softhsm, "ec_sign")
    pin = PinStatus(min_length=4, max_length=8)
    text = ("Vergi bəyannaməsi № 2025-0417: ƏDV üzrə rüblük hesabat, "
            "məbləğ 1 250,00 AZN. <b>Bu mətn saytdandır.</b>")
    declaration = "\n".join(f"{n}. Bənd {n}" for n in range(1, 8)) + \
        "\n8. Məbləğ: 10 000 000 AZN"
    return [
        ("consent", "ImzaConsent", lambda ui: ui.ask_consent(
            ConsentRequest(ORIGIN, ("select", "sign", "auth", "tokens")))),
        ("picker", "ImzaPicker", lambda ui: ui.choose_certificate(
            ORIGIN, "sign", [good, ec, expired, future])),
        ("picker-none-matches", "ImzaPicker", lambda ui: ui.choose_certificate(
            ORIGIN, "sign", [], filtered=True)),
        ("pin", "ImzaPin", lambda ui: ui.ask_pin(PinRequest(
            ORIGIN, "sign", good, pin, display_text=text, document_name="beyanname.pdf"))),
        ("pin-pdf-signed-fields", "ImzaPin", lambda ui: ui.ask_pin(PinRequest(
            ORIGIN, "sign", good, pin, document_name="muqavile.pdf", display_text=declaration,
            signed_fields=((SignedField.REASON, "Müqavilənin təsdiqi"),
                           (SignedField.LOCATION, "Bakı"),
                           (SignedField.STAMP_TEXT, "Təsdiq edirəm"),
                           (SignedField.FIELD_NAME, "Imza1"))))),
        ("pin-batch-wrong", "ImzaPin", lambda ui: ui.ask_pin(PinRequest(
            ORIGIN, "sign", good, pin, count=12, retry=PinStatus(count_low=True)))),
        ("pin-final-try", "ImzaPin", lambda ui: ui.ask_pin(PinRequest(
            ORIGIN, "sign", good, pin, retry=PinStatus(final_try=True)))),
        ("pin-auth", "ImzaPin", lambda ui: ui.ask_pin(PinRequest(
            ORIGIN, "auth", good, pin))),
        ("password", "ImzaPin", lambda ui: ui.ask_pin(PinRequest(
            ORIGIN, "sign", good, PinStatus(), password=True))),
        ("pin-pad", "ImzaPin", lambda ui: ui.ask_pin(PinRequest(
            ORIGIN, "sign", good, PinStatus(pin_pad=True), display_text=text))),
        ("pin-locked", "ImzaPinLocked", lambda ui: ui.show_pin_locked(
            ORIGIN, "Rəqəmsal İmza A", "PUK")),
    ]


@pytest.mark.parametrize("language", i18n.LANGUAGES)
async def test_screenshot_every_dialog(ui: TkUI, desktop: Desktop, softhsm: Any,
                                       screenshots: Path, language: str) -> None:
    i18n.set_language(language)
    for name, window_class, call in screen_requests(softhsm):
        task = asyncio.create_task(call(ui))
        window = await in_thread(desktop.wait_window, window_class)
        path = await in_thread(desktop.screenshot, window,
                               screenshots / language / f"{name}.png")
        assert path.stat().st_size > 2000
        if name == "pin-pad":
            # "Sign" hands over to the reader; the window stays as its prompt.
            await in_thread(desktop.key, window, "shift", "Return")
            assert await task is PIN_PAD
            await in_thread(desktop.screenshot, window,
                            screenshots / language / "pin-pad-waiting.png")
            ui.close_pin_pad_prompt()
        else:
            task.cancel()
            with pytest.raises((asyncio.CancelledError, UserCancelled)):
                await task
        assert await in_thread(desktop.wait_gone, window_class)
