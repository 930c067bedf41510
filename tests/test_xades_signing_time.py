"""D3 (issue 14) for XAdES: SigningTime is taken after the user answered the PIN dialog,
through a running agent whose scripted user holds the dialog open (as
tests/test_signing_time.py does for CAdES and PAdES)."""

from __future__ import annotations

from datetime import datetime

import pki_services
import pytest
from daemon import Daemon, b64, unb64
from lxml import etree
from pki_services import FormatsBed, sign_with_held_pin_dialog
from xades_checks import UBL_INVOICE, UBL_PLACEMENT, XADES

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon, pytest.mark.verifiers]

formats_bed = pki_services.formats_bed
formats_daemon = pki_services.formats_daemon

# How long the scripted user keeps the PIN dialog open before answering: over a second,
# so the answer falls in a later whole second than the moment the dialog was seen
# (SigningTime has whole seconds, cut down).
HOLD_SECONDS = 2.5


@pytest.mark.parametrize("level", ["B-B", "B-T"])
async def test_xades_signing_time_is_after_the_pin_dialog(
        formats_daemon: Daemon, formats_bed: FormatsBed, level: str) -> None:
    params: dict[str, object] = {"xml": b64(UBL_INVOICE), "level": level,
                                 "mode": "enveloped", "placement": UBL_PLACEMENT}
    if level != "B-B":
        params["tsaUrl"] = formats_bed.services.url("/tsa")
    result, shown = await sign_with_held_pin_dialog(formats_daemon, formats_bed, "ec",
                                                    "sign.xml", params, HOLD_SECONDS)
    signed = unb64(result["xml"])
    text = etree.fromstring(signed).findtext(f".//{{{XADES}}}SigningTime")
    assert text is not None
    signing_time = datetime.fromisoformat(text)
    assert signing_time >= shown.replace(microsecond=0), (signing_time, shown)
