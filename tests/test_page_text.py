"""Page text posing as the agent's (issue 11, §11, the core's side): page strings reach the
dialog with their whitespace collapsed, every string the signature carries is in the PIN
dialog, and text that is signed may not hold invisible or line-separator characters.

In-process: the real dispatcher, params models and core, with the scripted UI behind
``WatchingUI``, which keeps each whole ``PinRequest``."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from fakes import Bench, Page, make_bench, watch_dialogs
from testbed.pdf import classic_pdf

from agent.app.dialogs import SignedField
from agent.policy.rules import Permission

HANDLE = "h" + "A" * 24


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def one_page_pdf() -> bytes:
    """A one-page PDF with a correct cross-reference table, built here by hand."""
    content = b"BT /F1 18 Tf 72 720 Td (Muqavile) Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    return classic_pdf(objects)


def reason(answer: dict[str, Any]) -> str:
    assert "error" in answer, answer
    value: str = answer["error"]["data"]["reason"]
    return value


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    bench = make_bench(tmp_path)
    bench.issue("signer")
    bench.answers.set(consent="always", certificate="first", pin="cancel")
    bench.policy.record_consent("https://portal.example.az",
                                [Permission.SELECT, Permission.SIGN], "always")
    return bench


@pytest.mark.parametrize(("member", "value"), [
    ("reason", "a\u200eb"),           # LEFT-TO-RIGHT MARK (Cf)
    ("reason", "Approved\u200b"),     # ZERO WIDTH SPACE (Cf)
    ("location", "Bakı\u2028Amount: 1"),  # LINE SEPARATOR (Zl)
    ("location", "Bakı\u2029"),       # PARAGRAPH SEPARATOR (Zp)
    ("stamp", {"box": [10, 10, 200, 60], "text": "\u200fyes"}),  # RIGHT-TO-LEFT MARK
    ("stamp", {"box": [10, 10, 200, 60], "text": "x\u00ady"}),   # SOFT HYPHEN (Cf)
    ("fieldName", "Sig\u200d1"),      # ZERO WIDTH JOINER (Cf)
])
async def test_invisible_characters_in_signed_text_are_refused(
        bench: Bench, member: str, value: object) -> None:
    answer = await Page(bench).call("sign.pdf", {
        "handle": HANDLE, "pdf": b64(one_page_pdf()), "level": "B-B", member: value})
    assert reason(answer) == "INVALID_PARAMS"
    assert bench.answers.shown() == []


async def test_the_pin_dialog_shows_every_signed_string(bench: Bench) -> None:
    watching = watch_dialogs(bench)
    page = Page(bench)
    handle = await page.select()
    answer = await page.call("sign.pdf", {
        "handle": handle, "pdf": b64(one_page_pdf()), "level": "B-B",
        "reason": "Approved", "location": "Bakı", "fieldName": "Imza1",
        "stamp": {"box": [340, 60, 560, 130], "text": "Müqavilə   № 117"}})
    assert reason(answer) == "USER_CANCELLED"  # at the PIN dialog, which is what we look at
    [request] = watching.pin_requests
    assert request.signed_fields == (
        (SignedField.REASON, "Approved"), (SignedField.LOCATION, "Bakı"),
        (SignedField.STAMP_TEXT, "Müqavilə № 117"), (SignedField.FIELD_NAME, "Imza1"))


async def test_sign_hash_has_no_signed_page_strings(bench: Bench) -> None:
    watching = watch_dialogs(bench)
    page = Page(bench)
    handle = await page.select()
    await page.call("sign.hash", {"handle": handle, "hash": b64(bytes(32)),
                                  "hashAlgorithm": "SHA-256"})
    [request] = watching.pin_requests
    assert request.signed_fields == ()


async def test_padded_document_name_reaches_the_dialog_on_one_line(bench: Bench) -> None:
    page = Page(bench)
    handle = await page.select()
    name = "x" + " " * 200 + "Website: e-gov.az (verified)"
    text = ("Declaration\n\n\n\n\n\n\nAmount:   10\u00a0000   AZN  \n"
            + " \n" * 5 + "Signed\u2028by me")
    await page.call("sign.hash", {"handle": handle, "hash": b64(bytes(32)),
                                  "hashAlgorithm": "SHA-256",
                                  "display": {"documentName": name, "text": text}})
    [pin] = [d for d in bench.answers.shown() if d["dialog"] == "pin"]
    assert pin["document_name"] == "x Website: e-gov.az (verified)"
    # Line breaks stay, but no run of blank lines pushes the amount out of sight, and a
    # no-break space is a space, not nothing.
    assert pin["display_text"] == "Declaration\n\nAmount: 10 000 AZN\n\nSigned\nby me"
