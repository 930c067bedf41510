"""D3 (issue 14): the signing time a signature claims is taken after the user answered the
PIN dialog, not when the request arrived.  The scripted user holds the PIN dialog open for
a while; the test notes the moment it saw the dialog on screen (a moment before the
answer), and the CAdES signing-time attribute and the PAdES signing time (/M and the CMS
as pyHanko reads it) must not be earlier than that moment."""

from __future__ import annotations

from io import BytesIO

import pki_services
import pytest
from asn1crypto import cms
from daemon import Daemon, b64, unb64
from pki_services import FormatsBed, sign_with_held_pin_dialog
from pyhanko.pdf_utils.reader import PdfFileReader
from test_formats_pdf import minimal_pdf

pytestmark = [pytest.mark.softhsm, pytest.mark.daemon, pytest.mark.verifiers]

formats_bed = pki_services.formats_bed
formats_daemon = pki_services.formats_daemon

# How long the scripted user keeps the PIN dialog open before answering.  Signatures state
# their time in whole seconds, cut down: held for more than a second, the dialog's answer
# falls in a later second than the moment it was seen, so a time taken after the answer is
# never earlier than that moment, and one taken before the dialog always is.
HOLD_SECONDS = 2.5


async def test_cades_signing_time_is_after_the_pin(formats_daemon: Daemon,
                                                   formats_bed: FormatsBed) -> None:
    result, dialog_shown = await sign_with_held_pin_dialog(
        formats_daemon, formats_bed, "rsa", "sign.cms",
        {"data": b64(b"D3: signing time"), "hashAlgorithm": "SHA-256", "level": "B"},
        HOLD_SECONDS)
    signer_info = cms.ContentInfo.load(unb64(result["cms"]))["content"]["signer_infos"][0]
    [signing_time] = [a["values"][0].native for a in signer_info["signed_attrs"]
                      if a["type"].native == "signing_time"]
    assert signing_time >= dialog_shown, (signing_time, dialog_shown)


async def test_pades_signing_time_is_after_the_pin(formats_daemon: Daemon,
                                                   formats_bed: FormatsBed) -> None:
    result, dialog_shown = await sign_with_held_pin_dialog(
        formats_daemon, formats_bed, "rsa", "sign.pdf",
        {"pdf": b64(minimal_pdf("D3")), "level": "B-B",
         "stamp": {"page": 1, "box": [72, 72, 272, 132]}},
        HOLD_SECONDS)
    reader = PdfFileReader(BytesIO(unb64(result["pdf"])), strict=False)
    [signature] = reader.embedded_signatures
    claimed = signature.self_reported_timestamp  # the signature dictionary's /M
    assert claimed is not None
    assert claimed >= dialog_shown, (claimed, dialog_shown)
