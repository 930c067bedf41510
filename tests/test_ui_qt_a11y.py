"""The Qt dialogs as a screen reader meets them (issue 13, §3): each dialog drawn by the UI
process on a private Xvfb, its accessibility tree read over AT-SPI (tests/atspi.py: a
private session bus, Debian's at-spi-bus-launcher and registry), and asserted to carry
what a blind citizen must hear — the site, what it asks, the document, the certificate's
holder, a PIN field with the password role, the buttons by name and role — and a name on
every control that takes the keyboard.

The first test checks the reader itself on a window built here, so a failure of the tree
reading is told apart from a failure of the dialogs.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from atspi import AtspiBus, Node
from ui_driver import (  # noqa: F401  (a11y_bus, display: fixtures)
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
    pin_change_args,
    pin_locked_args,
)

from agent import i18n
from agent.app.dialogs import (
    CertificateChoice,
    ExtendRequest,
    PinRequest,
    Preview,
    PreviewKind,
)
from agent.errors import PinStatus
from agent.i18n import _
from agent.ui.ui_wire import DIALOG_KINDS

pytestmark = [pytest.mark.desktop]

PROBE = """
import sys
from PySide6.QtWidgets import (QApplication, QLabel, QLineEdit, QPushButton, QVBoxLayout,
                               QWidget)
app = QApplication(sys.argv)
app.setApplicationName("imza-atspi-probe")
window = QWidget()
window.setWindowTitle("Probe")
layout = QVBoxLayout(window)
layout.addWidget(QLabel("Site: portal.example"))
pin = QLineEdit()
pin.setEchoMode(QLineEdit.EchoMode.Password)
pin.setAccessibleName("PIN")
layout.addWidget(pin)
layout.addWidget(QPushButton("Sign"))
unnamed = QPushButton()
unnamed.setObjectName("unnamed")
layout.addWidget(unnamed)
window.show()
pin.setFocus()
app.exec()
"""


def unnamed_focusable(tree: Node) -> list[Node]:
    return [n for n in tree.walk() if "focusable" in n.states and not n.name.strip()]


@pytest.fixture(scope="module")
def probe(display: str, a11y_bus: AtspiBus) -> Iterator[subprocess.Popen[bytes]]:  # noqa: F811
    process = subprocess.Popen([sys.executable, "-c", PROBE], env=a11y_bus.env(display))
    try:
        yield process
    finally:
        process.terminate()
        process.wait()


def test_the_reader_sees_a_qt_window_as_a_screen_reader_does(
        display: str, a11y_bus: AtspiBus, probe: subprocess.Popen[bytes]) -> None:  # noqa: F811
    tree = a11y_bus.wait_for("imza-atspi-probe",
                             lambda t: len(t.find("push button")) == 2)
    window = tree.one("filler", "Probe")
    assert window.one("label").name == "Site: portal.example"
    field = tree.one("password text")  # Qt's role number for an echo-mode Password edit
    assert field.name == "PIN" and field.app_role_name == "text"
    assert [b.name for b in tree.find("push button")] == ["Sign", ""]
    assert {"focusable", "sensitive", "showing"} <= field.states
    # The check the dialog tests make finds the one control without a name.
    assert [n.role_name for n in unnamed_focusable(tree)] == ["push button"]
    # Focus as a window manager gives it: the state follows (the bit positions are right).
    keyboard = Keyboard(display)
    keyboard.focus(keyboard.wait_window(probe.pid))
    focused = a11y_bus.wait_for("imza-atspi-probe",
                                lambda t: "focused" in t.one("password text").states)
    assert "focused" not in focused.one("push button", "Sign").states


# --- the dialogs ------------------------------------------------------------------------------

ORIGIN = "https://portal.example"
HOLDER = "Əliyev Əli Vəli oğlu"
CERTIFICATE = CertificateChoice(
    holder=HOLDER, issuer="Test CA", serial_hex="2001F4A7", not_before="2025-01-01",
    not_after="2030-01-01", token_label="Rəqəmsal İmza A", usable=True,
    reader="Virtual PCD 00 00")
OTHER = CertificateChoice(
    holder="Məmmədova Leyla", issuer="Test CA", serial_hex="1F", not_before="2020-01-01",
    not_after="2021-01-01", token_label="Rəqəmsal İmza A", usable=False,
    unusable_reason="expired")
PDF = document_pdf([["Muqavile No 17", "Terms"], ["Page two"], ["Page three"]])
TEXT = "Vergi bəyannaməsi № 2025-0417\nƏDV üzrə rüblük hesabat\nMəbləğ: 1 250,00 AZN"
DIGEST = hashlib.sha256(b"what the site hashed").hexdigest()
XML = (b'<?xml version="1.0" encoding="UTF-8"?><Invoice><Number>2025-0417</Number>'
       b"<Amount currency=\"AZN\">1250.00</Amount></Invoice>")


def preview(kind: PreviewKind, data: bytes, name: str | None) -> Preview:
    return Preview(kind, len(data), hashlib.sha256(data).hexdigest(), name, data)


def pin(**fields: Any) -> dict[str, Any]:
    return pin_args(PinRequest(ORIGIN, "sign", CERTIFICATE,
                               PinStatus(min_length=4, max_length=8), **fields))


@dataclass(frozen=True)
class Case:
    kind: str
    args: dict[str, Any]
    says: tuple[str, ...]        # names / texts a screen reader must be able to speak
    buttons: tuple[str, ...]     # push buttons, by name
    passwords: tuple[str, ...] = ()  # password-role fields, by name
    site: bool = True            # a site asks (the agent's own windows name no site)
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)  # role -> names


SIGN = ("Sign", "Cancel")
FACTS = (f"Holder: {HOLDER}", "Token: Rəqəmsal İmza A", "Reader: Virtual PCD 00 00")
CASES = {
    "consent": Case("consent", consent_args(ORIGIN, ("select", "sign")),
                    ("This website asks to use your electronic signature.",
                     "ask you to sign with your certificate"),
                    ("Allow once", "Always allow", "Deny", "Block this site")),
    "picker": Case("pick", pick_args(ORIGIN, "sign", [CERTIFICATE, OTHER]),
                   ("This website asks you to choose a certificate for signing.",),
                   ("Choose", "Cancel"),
                   extra={"radio button": (HOLDER, "Məmmədova Leyla — expired")}),
    "pin-pdf": Case("pin", pin(previews=(preview(PreviewKind.PDF, PDF, "muqavile.pdf"),)),
                    ("This website asks you to sign with your certificate.",
                     "Page 1 / 3", "muqavile.pdf: Page 1 / 3", *FACTS),
                    ("Previous page", "Next page", *SIGN), ("PIN",)),
    "pin-text": Case("pin", pin(previews=(preview(PreviewKind.TEXT, TEXT.encode(),
                                                  "beyanname.txt"),)),
                     ("Text of beyanname.txt", "Məbləğ: 1 250,00 AZN", *FACTS),
                     SIGN, ("PIN",)),
    "pin-hash": Case("pin", pin(previews=(Preview(PreviewKind.HASH, 32, DIGEST),)),
                     ("The site shows no document; only this fingerprint is signed:",
                      *FACTS), SIGN, ("PIN",)),
    "pin-batch": Case("pin", pin(count=3, previews=tuple(
        preview(PreviewKind.PDF, PDF, f"senəd-{n}.pdf") for n in (1, 2, 3))),
                      ("Items to sign: 3", "1. senəd-1.pdf — PDF document",
                       "3. senəd-3.pdf — PDF document", *FACTS), SIGN, ("PIN",)),
    "pin-xml": Case("pin", pin(previews=(preview(PreviewKind.XML, XML, "qaime.xml"),)),
                    ("XML of qaime.xml", "<Number>2025-0417</Number>", *FACTS),
                    SIGN, ("PIN",)),
    "pin-binary": Case("pin", pin(previews=(Preview(PreviewKind.BINARY, 48213, DIGEST,
                                                    "hesabat.xlsx"),)),
                       (f"Binary data, 48213 bytes, SHA-256 {DIGEST}", *FACTS),
                       SIGN, ("PIN",)),
    "extend": Case("extend", extend_args(ExtendRequest(
        ORIGIN, "pdf", "B-LTA", signatures=2, document_name="muqavile.pdf",
        display_text="Arxiv üçün", previews=(preview(PreviewKind.PDF, PDF, "muqavile.pdf"),))),
                   ("This website asks to extend the signatures in a document to level B-LTA.",
                    "Document: signed PDF (PAdES)", "Signatures to extend: 2",
                    "Sent by portal.example — not checked by the agent",
                    "Document: muqavile.pdf", "Arxiv üçün", "muqavile.pdf: Page 1 / 3"),
                   ("Previous page", "Next page", "Extend", "Cancel")),
    "message": Case("message", message_args("PIN changed", "The new PIN is set.",
                                            error=False),
                    ("PIN changed", "The new PIN is set."), ("Close",), site=False),
    "pin-locked": Case("pin_locked", pin_locked_args(ORIGIN, "Rəqəmsal İmza A", "PUK"),
                       ("The PIN is locked.", "Rəqəmsal İmza A"), ("Close",)),
    "pin-change": Case("pin_change", pin_change_args("Rəqəmsal İmza A", "2001F4A7",
                                                     "Virtual PCD 00 00", 4, 8),
                       ("Rəqəmsal İmza A",), ("Change PIN", "Cancel"),
                       ("Current PIN", "New PIN", "New PIN again"), site=False),
    "pin-unblock": Case("pin_unblock", pin_change_args("Rəqəmsal İmza A", "2001F4A7", None,
                                                       6, 8, final_try=True),
                        ("Rəqəmsal İmza A",), ("Unblock", "Cancel"),
                        ("PUK", "New PIN", "New PIN again"), site=False,
                        extra={"check box": ("I know this is the last PUK try.",)}),
}


def test_every_dialog_kind_and_preview_kind_has_a_tree_test() -> None:
    """A dialog kind added to the pipe, or a kind of preview, needs its case above."""
    assert {case.kind for case in CASES.values()} == DIALOG_KINDS
    shown_kinds = {item["kind"] for case in CASES.values()
                   for item in case.args.get("previews") or ()}
    assert shown_kinds == {k.value for k in PreviewKind}, shown_kinds


@pytest.fixture(scope="module")
def ui(display: str, a11y_bus: AtspiBus) -> Iterator[UiProcess]:  # noqa: F811
    with UiProcess(a11y_bus.env(display), language="en", arming_ms=400) as process:
        yield process


def showing_windows(app: Node) -> list[Node]:
    return [w for w in app.children if "showing" in w.states]


@pytest.fixture
def shown(ui: UiProcess, a11y_bus: AtspiBus) -> Iterator[Any]:  # noqa: F811
    """Open a dialog and return (its id, its window's tree once drawn); closed after."""
    opened: list[int] = []

    def show(case: Case) -> tuple[int, Node]:
        dialog_id = ui.dialog(case.kind, case.args)
        opened.append(dialog_id)
        app = a11y_bus.wait_for(ui.pid, lambda t: any(
            len(w.find("push button")) >= len(case.buttons) for w in showing_windows(t)))
        [window] = showing_windows(app)
        return dialog_id, window

    yield show
    for dialog_id in opened:
        ui.close(dialog_id)
    a11y_bus.wait_for(ui.pid, lambda t: not showing_windows(t))


@pytest.mark.parametrize("name", CASES)
def test_a_screen_reader_hears_the_whole_dialog(shown: Any, name: str) -> None:
    case = CASES[name]
    _id, window = shown(case)
    spoken = window.all_text()
    assert window.name.startswith("imza-agent — "), window.name
    if case.site:
        assert window.find("label", "Website: portal.example"), window.dump()
        assert window.find("label", f"Origin: {ORIGIN}")
        assert "portal.example" in window.description  # the window's own summary
    for text in case.says:
        assert text in spoken, f"{text!r} is not in the tree:\n{window.dump()}"
    buttons = [b.name for b in window.find("push button")]
    assert set(case.buttons) <= set(buttons), buttons
    assert [f.name for f in window.find("password text")] == list(case.passwords)
    for role, names in case.extra.items():
        assert [n.name for n in window.find(role)] == list(names), window.dump()
    # Every control the keyboard reaches tells what it is.
    assert unnamed_focusable(window) == [], window.dump()
    for node in window.find("push button") + window.find("password text"):
        assert {"focusable", "showing"} <= node.states, node


def test_the_pin_field_says_its_length_rule(shown: Any) -> None:
    _id, window = shown(CASES["pin-hash"])
    field_node = window.one("password text", "PIN")
    assert field_node.description == "From 4 to 8 characters"
    assert field_node.text == ""  # nothing typed, and a typed PIN is never exposed


def test_the_hash_sentence_carries_the_whole_fingerprint(shown: Any) -> None:
    _id, window = shown(CASES["pin-hash"])
    [sentence] = [n for n in window.find("label")
                  if n.name.startswith("The site shows no document")]
    assert DIGEST in "".join(c for c in sentence.name.lower() if c in "0123456789abcdef")


def test_the_pdf_page_is_described_by_its_text(shown: Any) -> None:
    _id, window = shown(CASES["pin-pdf"])
    [page] = window.find(name="muqavile.pdf: Page 1 / 3")
    assert "Muqavile No 17" in page.description  # the rendered page's own text


@pytest.mark.parametrize("language", ["az", "tr", "ru"])
def test_names_are_in_the_dialog_language(display: str, a11y_bus: AtspiBus,  # noqa: F811
                                          language: str) -> None:
    i18n.set_language(language)
    try:
        expected = [_("Allow once"), _("Always allow"), _("Deny"), _("Block this site")]
        site = _("Website: {site}").format(site="portal.example")
    finally:
        i18n.set_language("en")
    assert expected[0] != "Allow once"  # the catalogue has this language
    with UiProcess(a11y_bus.env(display), language=language) as process:
        process.dialog("consent", CASES["consent"].args)
        app = a11y_bus.wait_for(process.pid, lambda t: any(
            len(w.find("push button")) == 4 for w in showing_windows(t)))
        [window] = showing_windows(app)
        assert [b.name for b in window.find("push button")] == expected
        assert window.find("label", site)
        assert unnamed_focusable(window) == []
