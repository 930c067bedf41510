"""Every Qt dialog in every language, photographed: the UI process on a private Xvfb, each
dialog sent over its pipe as the daemon sends it, the window captured with ImageMagick's
``import``.

The suite writes the pictures to a temp dir and checks each one shows a drawn window (not
a blank or a one-colour rectangle). With ``IMZA_WRITE_SCREENSHOTS=1`` (what
scripts/screenshots.sh sets) they go to docs/screenshots/<language>/ instead, which the
README and docs/ui.md show.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageStat
from ui_driver import (  # noqa: F401  (display: fixture)
    ROOT,
    Keyboard,
    UiProcess,
    consent_args,
    display,
    document_pdf,
    environment,
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
    SignedField,
)
from agent.errors import PinStatus
from agent.ui.ui_wire import DIALOG_KINDS

pytestmark = [pytest.mark.desktop]

WRITE_ENV = "IMZA_WRITE_SCREENSHOTS"
ORIGIN = "https://e-xidmet.example.az"
ARMING_MS = 400
HOLDER = "Əliyev Əli Vəli oğlu"
GOOD = CertificateChoice(
    holder=HOLDER, issuer="Test Qualified CA", serial_hex="2001F4A7",
    not_before="2025-01-01", not_after="2028-01-01", token_label="Rəqəmsal İmza A",
    usable=True, reader="ACS ACR39U 00 00")
EC = CertificateChoice(
    holder="Məmmədova Leyla", issuer="Test Qualified CA", serial_hex="1F03",
    not_before="2025-03-01", not_after="2027-03-01", token_label="Rəqəmsal İmza B",
    usable=True)
EXPIRED = CertificateChoice(
    holder=HOLDER, issuer="Test Qualified CA", serial_hex="0A11", not_before="2020-01-01",
    not_after="2022-01-01", token_label="Rəqəmsal İmza A", usable=False,
    unusable_reason="expired")
PIN_RULE = PinStatus(min_length=4, max_length=8)
CONTRACT = document_pdf([
    ["Muqavile No 2025-0417", "Terefler: Aliyev Ali ve Portal MMC", "1. Muqavilenin predmeti",
     "2. Odenis sertleri: 1 250,00 AZN", "3. Muddet: 12 ay"],
    ["4. Tereflerin huquqlari", "5. Mubahiselerin hell edilmesi"],
    ["6. Yekun muddealar", "Imza: ____________"],
])
DECLARATION = ("Vergi bəyannaməsi № 2025-0417\nƏDV üzrə rüblük hesabat\n"
               "Dövr: 2025-ci il, I rüb\nMəbləğ: 1 250,00 AZN\n"
               + "\n".join(f"{n}. Bənd {n}: razıyam" for n in range(1, 9)))
INVOICE = ('<?xml version="1.0" encoding="UTF-8"?><Qaime xmlns="urn:example:qaime">'
           "<Nomre>2025-0417</Nomre><Tarix>2025-04-17</Tarix>"
           "<Satici><Ad>Portal MMC</Ad><VOEN>1234567891</VOEN></Satici>"
           "<Alici><Ad>Əliyev Əli Vəli oğlu</Ad></Alici>"
           '<Mebleg valyuta="AZN">1250.00</Mebleg></Qaime>').encode()


def preview(kind: PreviewKind, data: bytes, name: str | None) -> Preview:
    return Preview(kind, len(data), hashlib.sha256(data).hexdigest(), name, data)


def pin(**fields: Any) -> dict[str, Any]:
    return pin_args(PinRequest(ORIGIN, "sign", GOOD, PIN_RULE, **fields))


def dialogs(language: str = "en") -> list[tuple[str, str, dict[str, Any]]]:
    """(file name, kind, args) for every dialog the agent draws (a message's text is the
    daemon's, in ``language``)."""
    said = i18n.translation(language).gettext
    text = DECLARATION.encode()
    digest = hashlib.sha256(b"the portal's own document").hexdigest()
    return [
        ("consent", "consent", consent_args(ORIGIN, ("select", "sign", "auth", "tokens"))),
        ("picker", "pick", pick_args(ORIGIN, "sign", [GOOD, EC, EXPIRED])),
        ("picker-none-matches", "pick", pick_args(ORIGIN, "sign", [], filtered=True)),
        ("pin", "pin", pin(previews=(preview(PreviewKind.TEXT, text, "beyanname.txt"),))),
        ("pin-pdf", "pin", pin(
            previews=(preview(PreviewKind.PDF, CONTRACT, "muqavile.pdf"),),
            signed_fields=((SignedField.REASON, "Müqavilənin təsdiqi"),
                           (SignedField.LOCATION, "Bakı")))),
        ("pin-batch", "pin", pin(count=3, previews=(
            preview(PreviewKind.PDF, CONTRACT, "muqavile.pdf"),
            preview(PreviewKind.TEXT, text, "beyanname.txt"),
            Preview(PreviewKind.BINARY, 48213, hashlib.sha256(b"x").hexdigest(),
                    "hesabat.xlsx")))),
        ("pin-xml", "pin", pin(previews=(preview(PreviewKind.XML, INVOICE, "qaime.xml"),))),
        ("pin-hash", "pin", pin(previews=(Preview(PreviewKind.HASH, 32, digest),),
                                retry=PinStatus(count_low=True))),
        ("pin-final-try", "pin", pin(retry=PinStatus(final_try=True), previews=(
            preview(PreviewKind.TEXT, text, "beyanname.txt"),))),
        ("pin-auth", "pin", pin_args(PinRequest(ORIGIN, "auth", GOOD, PIN_RULE))),
        ("password", "pin", pin_args(PinRequest(
            ORIGIN, "sign", GOOD, PinStatus(), password=True,
            previews=(preview(PreviewKind.PDF, CONTRACT, "muqavile.pdf"),)))),
        ("pin-pad", "pin", pin_args(PinRequest(
            ORIGIN, "sign", GOOD, PinStatus(pin_pad=True),
            previews=(preview(PreviewKind.TEXT, text, "beyanname.txt"),)))),
        ("pin-locked", "pin_locked", pin_locked_args(ORIGIN, "Rəqəmsal İmza A", "PUK")),
        ("pin-change", "pin_change", pin_change_args(
            "Rəqəmsal İmza A", "2001F4A7", "ACS ACR39U 00 00", 4, 8)),
        ("pin-unblock", "pin_unblock", pin_change_args(
            "Rəqəmsal İmza A", "2001F4A7", "ACS ACR39U 00 00", 6, 8, final_try=True)),
        ("extend", "extend", extend_args(ExtendRequest(
            ORIGIN, "pdf", "B-LTA", signatures=2, document_name="muqavile.pdf",
            previews=(preview(PreviewKind.PDF, CONTRACT, "muqavile.pdf"),)))),
        ("message", "message", message_args(  # what the PIN change ends with
            said("The PIN was changed."), said("Use the new PIN from now on."), error=False)),
    ]


def test_every_dialog_kind_is_photographed() -> None:
    """A dialog kind added to the UI process's contract needs its picture here."""
    assert {kind for _name, kind, _args in dialogs()} == DIALOG_KINDS


def test_the_committed_pictures_show_every_dialog_in_every_language() -> None:
    """docs/screenshots/ has each picture in each language (scripts/screenshots.sh)."""
    missing = [f"{language}/{name}.png" for language in i18n.LANGUAGES
               for name, _kind, _args in dialogs(language)
               if not (ROOT / "docs" / "screenshots" / language / f"{name}.png").is_file()]
    assert missing == []


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """docs/screenshots/ when asked for (a test run never rewrites tracked files)."""
    if os.environ.get(WRITE_ENV) == "1":
        return ROOT / "docs" / "screenshots"
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def keyboard(display: str) -> Keyboard:  # noqa: F811
    return Keyboard(display)


def drawn(path: Path) -> tuple[int, float]:
    """(distinct colours, brightness spread) of a picture: a window with text, frames and
    buttons has many colours and a wide spread; a blank capture has one."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20)
        spread = ImageStat.Stat(rgb.convert("L")).stddev[0]
        return (len(colours) if colours else 1 << 20), spread


@pytest.mark.parametrize("language", i18n.LANGUAGES)
def test_screenshot_every_dialog(display: str, keyboard: Keyboard, target: Path,  # noqa: F811
                                 language: str) -> None:
    seen: set[str] = set()
    with UiProcess(environment(display), language=language, theme="light",
                   arming_ms=ARMING_MS) as ui:
        for name, kind, args in dialogs(language):
            dialog_id = ui.dialog(kind, args)
            window = keyboard.wait_window(ui.pid, seen)
            keyboard.focus(window)  # focus drawn, as a person sees it
            time.sleep(ARMING_MS / 1000 + 0.8)  # armed, previews rendered
            title = keyboard.title(window)
            assert title.startswith("imza-agent — "), title
            path = keyboard.screenshot(window, target / language / f"{name}.png")
            colours, spread = drawn(path)
            assert colours > 16 and spread > 10, f"{path} looks blank ({colours}, {spread})"
            with Image.open(path) as image:
                assert image.width >= 400 and image.height >= 150, image.size
            ui.close(dialog_id)
            assert keyboard.wait_gone(ui.pid, window)
            assert not ui.answered(dialog_id)  # closed by the daemon, never answered


def shoot(display: str, keyboard: Keyboard, path: Path,  # noqa: F811
          extra_env: dict[str, str] | None = None, **hello: Any) -> Path:
    """The PIN dialog with a PDF preview, photographed under these settings."""
    seen: set[str] = set()
    with UiProcess(environment(display, extra_env), arming_ms=ARMING_MS, **hello) as ui:
        _name, kind, args = next(d for d in dialogs() if d[0] == "pin-pdf")
        dialog_id = ui.dialog(kind, args)
        window = keyboard.wait_window(ui.pid, seen)
        keyboard.focus(window)
        time.sleep(ARMING_MS / 1000 + 0.8)
        keyboard.screenshot(window, path)
        ui.close(dialog_id)
        assert keyboard.wait_gone(ui.pid, window)
    return path


def test_dark_theme_and_double_scale(display: str, keyboard: Keyboard,  # noqa: F811
                                     target: Path) -> None:
    """The same dialog light, dark, and at twice the scale (HiDPI): dark is darker, the
    scaled one twice the size, and each is a drawn window."""
    light = shoot(display, keyboard, target / "en" / "pin-pdf.png", theme="light")
    dark = shoot(display, keyboard, target / "en" / "pin-pdf-dark.png", theme="dark")
    scaled = shoot(display, keyboard, target / "en" / "pin-pdf-scale-2.png",
                   {"QT_SCALE_FACTOR": "2"}, theme="light")
    brightness = {}
    for path in (light, dark, scaled):
        colours, spread = drawn(path)
        assert colours > 16 and spread > 10, path
        with Image.open(path) as image:
            brightness[path] = ImageStat.Stat(image.convert("L")).mean[0]
    assert brightness[dark] < brightness[light] - 60, brightness
    with Image.open(light) as one, Image.open(scaled) as two:
        assert abs(two.width - 2 * one.width) <= 8, (one.size, two.size)
