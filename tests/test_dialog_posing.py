"""Page text posing as the agent's (issue 11, §11), on real tk dialogs under Xvfb.

What a page sent — the document name, its text, the strings it has signed — appears only
in the framed area titled as the site's, never in the agent's fact grid; it is shown
whole (the text scrolls, and is reachable with Tab); every signed string has the agent's
label; and invisible characters are shown as U+FFFD.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import tkinter as tk
from collections.abc import Iterator
from typing import Any

import pytest
import test_ui_tk
from test_ui_tk import ORIGIN, Desktop, in_thread, on_tk

from agent import i18n
from agent.app.dialogs import CertificateChoice, PinRequest, SignedField
from agent.errors import PinStatus, UserCancelled
from agent.ui.page_text import REPLACEMENT, page_block, page_line
from agent.ui.tk import TkUI
from agent.ui.tk.dialogs import PinDialog

pytestmark = [pytest.mark.desktop]

# test_ui_tk's fixtures: a private Xvfb, xdotool on it, and a TkUI drawing there.
display = test_ui_tk.display
desktop = test_ui_tk.desktop
ui = test_ui_tk.ui

CERTIFICATE = CertificateChoice(
    holder="Əliyev Əli Vəli oğlu", issuer="Test CA", serial_hex="01",
    not_before="2025-01-01", not_after="2030-01-01", token_label="Token A", usable=True)
POSING = "Website: e-gov.az (verified)"
DECLARATION = "\n".join(
    [f"{n}. Bənd {n}: razıyam" for n in range(1, 7)]
    + ["7. Ödəniş sabah", "8. Amount: 10 000 000 AZN"])


def request(**page: Any) -> PinRequest:
    return PinRequest(ORIGIN, "sign", CERTIFICATE, PinStatus(), **page)


@pytest.fixture
def build(ui: TkUI) -> Iterator[Any]:
    """Draw a PIN dialog on the Tk thread; every dialog drawn is closed afterwards."""
    drawn: list[PinDialog] = []

    def draw(pin_request: PinRequest) -> PinDialog:
        runner = ui.runner()
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        dialog = on_tk(ui, lambda: PinDialog(runner.root, future, pin_request, 60))
        on_tk(ui, dialog.win.update_idletasks)
        drawn.append(dialog)
        return dialog

    yield draw
    for dialog in drawn:
        on_tk(ui, dialog.close)


def texts(widget: tk.Misc) -> list[str]:
    """Every string a widget and its children show (labels, frame titles, text boxes)."""
    found: list[str] = []
    if isinstance(widget, tk.Text):
        found.append(widget.get("1.0", "end-1c"))
    else:
        with contextlib.suppress(tk.TclError):  # a plain frame has no text
            found.append(str(widget.cget("text")))
    for child in widget.winfo_children():
        found.extend(texts(child))
    return [t for t in found if t]


def inside(widget: tk.Misc, ancestor: tk.Misc) -> bool:
    while widget is not None:
        if widget is ancestor:
            return True
        widget = widget.master
    return False


def test_a_padded_document_name_never_reaches_the_fact_grid(ui: TkUI, build: Any) -> None:
    name = "beyanname.pdf" + " " * 90 + POSING
    dialog = build(request(document_name=name))
    facts = on_tk(ui, lambda: texts(dialog.facts))
    site = on_tk(ui, lambda: texts(dialog.site_area))
    assert not any("e-gov.az" in text or "beyanname" in text for text in facts), facts
    assert f"beyanname.pdf {POSING}" in site  # whitespace collapsed, shown whole
    # The area is titled as the site's, with the host the agent checked.
    assert site[0] == "Sent by portal.example — not checked by the agent"
    # Structurally apart: neither holds the other, and the certificate facts are intact.
    assert not on_tk(ui, lambda: inside(dialog.facts, dialog.site_area))
    assert not on_tk(ui, lambda: inside(dialog.site_area, dialog.facts))
    assert facts == ["Holder", CERTIFICATE.holder, "Issuer", "Test CA", "Valid",
                     "2025-01-01 – 2030-01-01", "Token", "Token A"]


def test_page_text_is_in_the_site_area_only(ui: TkUI, build: Any) -> None:
    dialog = build(request(display_text=f"Bəyannamə\n{POSING}"))
    assert on_tk(ui, lambda: inside(dialog.page_text, dialog.site_area))
    assert not any(POSING in text for text in on_tk(ui, lambda: texts(dialog.facts)))
    everything = on_tk(ui, lambda: texts(dialog.win))
    assert sum(POSING in text for text in everything) == 1


def test_an_eight_line_declaration_scrolls_and_shows_every_line(ui: TkUI, build: Any) -> None:
    dialog = build(request(display_text=DECLARATION))
    content = on_tk(ui, lambda: dialog.page_text.get("1.0", "end-1c"))
    assert content.splitlines() == DECLARATION.splitlines()  # all 8, lines 7 and 8 too
    assert on_tk(ui, lambda: dialog.page_text.yview())[1] < 1.0  # more than fits
    assert on_tk(ui, lambda: dialog.page_scrollbar.winfo_ismapped())
    assert on_tk(ui, lambda: str(dialog.page_text.cget("state"))) == "disabled"  # read-only


def test_a_short_text_has_no_scrollbar(ui: TkUI, build: Any) -> None:
    dialog = build(request(display_text="Bəyannamə № 7"))
    assert on_tk(ui, lambda: dialog.page_text.yview()) == (0.0, 1.0)
    assert not on_tk(ui, lambda: dialog.page_scrollbar.winfo_ismapped())


async def test_the_declaration_takes_the_focus_with_tab_and_scrolls_to_its_end(
        ui: TkUI, desktop: Desktop) -> None:
    task = asyncio.create_task(ui.ask_pin(request(display_text=DECLARATION)))
    window = await in_thread(desktop.wait_window, "ImzaPin")
    dialog = ui.current
    assert dialog is not None
    assert on_tk(ui, lambda: dialog.page_text.yview())[1] < 1.0
    # Reading order: the site's text comes before the PIN field, so Shift+Tab from the
    # field (where the focus starts) reaches it; the arrow keys then scroll it.
    await in_thread(desktop.key, window, "shift+Tab")
    assert on_tk(ui, lambda: dialog.win.focus_get()) is on_tk(ui, lambda: dialog.page_text)
    await in_thread(desktop.key, window, *["Down"] * 10)
    assert on_tk(ui, lambda: dialog.page_text.yview())[1] == 1.0  # lines 7 and 8 on screen
    task.cancel()
    with pytest.raises((asyncio.CancelledError, UserCancelled)):
        await task


SIGNED = ((SignedField.REASON, "Müqavilənin təsdiqi"), (SignedField.LOCATION, "Bakı"),
          (SignedField.STAMP_TEXT, "Təsdiq edirəm"), (SignedField.FIELD_NAME, "Imza1"))


@pytest.mark.parametrize(("language", "labels"), [
    ("en", ["Reason", "Location", "Stamp text", "Signature field name"]),
    ("az", ["Səbəb", "Yer", "Möhür mətni", "İmza sahəsinin adı"]),
    ("tr", ["Neden", "Konum", "Damga metni", "İmza alanının adı"]),
    ("ru", ["Причина", "Место", "Текст штампа", "Имя поля подписи"]),
])
def test_every_signed_string_is_shown_with_the_agents_label(
        ui: TkUI, build: Any, language: str, labels: list[str]) -> None:
    i18n.set_language(language)
    try:
        dialog = build(request(document_name="muqavile.pdf", signed_fields=SIGNED))
    finally:
        i18n.set_language("en")
    site = on_tk(ui, lambda: texts(dialog.site_area))
    pairs = [site[i:i + 2] for i in range(3, len(site), 2)]  # after title, Document, name
    assert pairs == [[label, value] for label, (_field, value) in zip(labels, SIGNED,
                                                                      strict=True)]
    facts = on_tk(ui, lambda: texts(dialog.facts))
    assert not any(value in text for _f, value in SIGNED for text in facts)


def test_hidden_characters_are_shown_as_replacement_characters(ui: TkUI, build: Any) -> None:
    dialog = build(request(
        document_name="a\u200bb\u202ec.pdf",
        display_text="ödə\u200eniş\u2028AZN\u0007",
        signed_fields=((SignedField.REASON, "x\u2029y\u2066z"),)))
    site = on_tk(ui, lambda: texts(dialog.site_area))
    assert f"a{REPLACEMENT}b{REPLACEMENT}c.pdf" in site
    assert f"x{REPLACEMENT}y{REPLACEMENT}z" in site
    assert on_tk(ui, lambda: dialog.page_text.get("1.0", "end-1c")) == \
        f"ödə{REPLACEMENT}niş{REPLACEMENT}AZN{REPLACEMENT}"


# --- the renderer itself (no window needed, but it is what the dialogs call) -------------

@pytest.mark.parametrize(("raw", "shown"), [
    ("  beyanname.pdf    \t\n  Website: e-gov.az ", "beyanname.pdf Website: e-gov.az"),
    ("a\u00a0\u00a0b", "a b"),  # no-break spaces are whitespace too
    ("\u202egpj.exe", f"{REPLACEMENT}gpj.exe"),  # a bidi override is made visible
    ("zero\u200bwidth\ufeff", f"zero{REPLACEMENT}width{REPLACEMENT}"),
    ("line\u2028sep\x85next", f"line{REPLACEMENT}sep{REPLACEMENT}next"),
    ("\ue000private\U000e0041tag", f"{REPLACEMENT}private{REPLACEMENT}tag"),
])
def test_page_line(raw: str, shown: str) -> None:
    assert page_line(raw, 300) == shown


def test_page_line_is_capped() -> None:
    assert page_line("x" * 400, 300) == "x" * 299 + "…"


def test_page_block_keeps_lines_but_not_padding() -> None:
    raw = "\n\n  Bənd 1  \r\n\n\n\n\nBənd   2\t\u200f\n\n"
    assert page_block(raw, 2000) == f"Bənd 1\n\nBənd 2 {REPLACEMENT}"
    assert page_block("y" * 3000, 2000) == "y" * 1999 + "…"
