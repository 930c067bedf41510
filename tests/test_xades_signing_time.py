"""D3 (issue 14) for XAdES: SigningTime is taken after the user answered the PIN dialog,
through a running agent whose scripted user holds the dialog open (as
tests/test_signing_time.py does for CAdES and PAdES)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pki_services
import pytest
from daemon import Daemon, b64, unb64
from lxml import etree
from pki_services import ORIGIN, FormatsBed, pin_dialogs, select_handle
from xades_checks import UBL_INVOICE, UBL_PLACEMENT, XADES

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon, pytest.mark.verifiers]

formats_bed = pki_services.formats_bed
formats_daemon = pki_services.formats_daemon

# How long the scripted user keeps the PIN dialog open before answering: over a second,
# so the answer falls in a later whole second than the moment the dialog was seen
# (SigningTime has whole seconds, cut down).
HOLD_SECONDS = 2.5


async def _sign_with_held_dialog(daemon: Daemon, bed: FormatsBed,
                                 params: dict[str, object]) -> tuple[bytes, datetime]:
    """sign.xml with the PIN dialog held open; the signed XML and the moment (UTC) the
    PIN dialog was seen on screen, which is before the user answered it."""
    async with daemon.client(ORIGIN) as client:
        handle = await select_handle(client, bed.serial("ec"))
        daemon.set_answers({"consent": "always", "certificate": "first",
                            "pin": bed.token.pin, "delay": HOLD_SECONDS})
        try:
            mark = daemon.transcript_mark()
            call = client.start("sign.xml", {"handle": handle, **params})
            shown: datetime | None = None
            while shown is None and not call.done():
                if pin_dialogs(daemon, mark):
                    shown = datetime.now(UTC)
                else:
                    await asyncio.sleep(0.02)
            reply = await asyncio.wait_for(call, 60)
        finally:
            daemon.set_answers({"consent": "always", "certificate": "first",
                                "pin": bed.token.pin})
    assert "result" in reply, reply
    assert shown is not None, "the PIN dialog was never seen"
    return unb64(reply["result"]["xml"]), shown


@pytest.mark.parametrize("level", ["B-B", "B-T"])
async def test_xades_signing_time_is_after_the_pin_dialog(
        formats_daemon: Daemon, formats_bed: FormatsBed, level: str) -> None:
    params: dict[str, object] = {"xml": b64(UBL_INVOICE), "level": level,
                                 "mode": "enveloped", "placement": UBL_PLACEMENT}
    if level != "B-B":
        params["tsaUrl"] = formats_bed.services.url("/tsa")
    signed, shown = await _sign_with_held_dialog(formats_daemon, formats_bed, params)
    text = etree.fromstring(signed).findtext(f".//{{{XADES}}}SigningTime")
    assert text is not None
    signing_time = datetime.fromisoformat(text)
    assert signing_time >= shown.replace(microsecond=0), (signing_time, shown)
