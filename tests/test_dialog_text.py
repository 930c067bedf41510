"""The PIN dialog's warning lines come from the token's flags (PKCS#11 reports "few tries
left" and "final try", never a count), in the dialog's language: the Qt dialog's
``pin_notices`` on the request as the daemon sends it over the pipe; and what the scripted
UI answers and records for the dialogs issue 11 added.  No display needed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import i18n
from agent.app.dialogs import (
    CertificateChoice,
    ConsentAnswer,
    ConsentRequest,
    PinRequest,
    SignedField,
)
from agent.errors import PinStatus, UserCancelled
from agent.ui.process import args as wire_args
from agent.ui.qt.dialogs.pin import pin_notices as notices_of
from agent.ui.scripted import ScriptedUI

CERTIFICATE = CertificateChoice(
    holder="Əliyev Əli", issuer="Test CA", serial_hex="01", not_before="2025-01-01",
    not_after="2027-01-01", token_label="Token", usable=True)
WRONG = ("Wrong PIN.", "warning")
FEW = ("Only a few tries are left.", "warning")
LAST = ("Last try: if this PIN is wrong too, the token will be locked.", "danger")


HEALTHY = PinStatus()


def _request(pin: PinStatus = HEALTHY, retry: PinStatus | None = None,
             password: bool = False) -> PinRequest:
    return PinRequest(origin="https://e-gov.az", action="sign", certificate=CERTIFICATE,
                      pin=pin, retry=retry, password=password)


def pin_notices(request: PinRequest) -> list[tuple[str, str]]:
    """(text, look) of each warning line, the request encoded as the daemon does."""
    return notices_of(wire_args.pin(request))


@pytest.fixture(autouse=True)
def english() -> Iterator[None]:
    i18n.set_language("en")
    yield
    i18n.set_language("en")


def test_first_ask_on_a_healthy_token_warns_of_nothing() -> None:
    assert pin_notices(_request()) == []


@pytest.mark.parametrize(("retry", "expected"), [
    (PinStatus(), [WRONG]),  # the token says nothing more: no count is made up
    (PinStatus(count_low=True), [WRONG, FEW]),
    (PinStatus(count_low=True, final_try=True), [WRONG, LAST]),  # the final try wins
    (PinStatus(final_try=True), [WRONG, LAST]),
])
def test_after_a_wrong_pin_the_flags_decide(retry: PinStatus,
                                            expected: list[tuple[str, str]]) -> None:
    assert pin_notices(_request(retry=retry)) == expected


def test_a_token_already_low_warns_before_the_first_try() -> None:
    assert pin_notices(_request(pin=PinStatus(count_low=True))) == [FEW]
    assert pin_notices(_request(pin=PinStatus(final_try=True))) == [LAST]


def test_the_state_after_the_wrong_pin_replaces_the_earlier_one() -> None:
    # Low before the first try; after it the token reports its final try.
    request = _request(pin=PinStatus(count_low=True), retry=PinStatus(final_try=True))
    assert pin_notices(request) == [WRONG, LAST]


def test_a_pkcs12_file_says_password() -> None:
    notices = pin_notices(_request(retry=PinStatus(), password=True))
    assert [text for text, _look in notices] == ["Wrong password."]


def test_the_notices_are_in_the_dialog_language() -> None:
    i18n.set_language("az")
    texts = [text for text, _look in pin_notices(_request(retry=PinStatus(count_low=True)))]
    assert texts == ["PIN kodu yanlışdır.", "Az cəhd qalıb."]


# --- the scripted UI -----------------------------------------------------------------------

def _scripted(tmp_path: Path, answers: dict[str, object]) -> ScriptedUI:
    answers_file = tmp_path / "answers.json"
    answers_file.write_text(json.dumps(answers), encoding="utf-8")
    return ScriptedUI(answers_file)


def _transcript(ui: ScriptedUI) -> list[dict[str, object]]:
    return [json.loads(line) for line in ui.transcript.read_text(encoding="utf-8").splitlines()]


async def test_scripted_block_answers_block(tmp_path: Path) -> None:
    ui = _scripted(tmp_path, {"consent": "block"})
    answer = await ui.ask_consent(ConsentRequest("https://e-gov.az", ("select",)))
    assert answer is ConsentAnswer.BLOCK


@pytest.mark.parametrize("filtered", [True, False])
async def test_scripted_empty_picker_is_recorded_and_first_cancels(tmp_path: Path,
                                                                   filtered: bool) -> None:
    ui = _scripted(tmp_path, {"certificate": "first"})
    with pytest.raises(UserCancelled):
        await ui.choose_certificate("https://e-gov.az", "sign", [], filtered=filtered)
    assert _transcript(ui) == [{"dialog": "certificate", "origin": "https://e-gov.az",
                                "purpose": "sign", "choices": [], "filtered": filtered}]


async def test_scripted_pin_dialog_records_the_signed_strings(tmp_path: Path) -> None:
    ui = _scripted(tmp_path, {"pin": "cancel"})
    request = PinRequest(origin="https://e-gov.az", action="sign", certificate=CERTIFICATE,
                         pin=HEALTHY, signed_fields=((SignedField.REASON, "Təsdiq"),
                                                     (SignedField.LOCATION, "Bakı")))
    with pytest.raises(UserCancelled):
        await ui.ask_pin(request)
    assert _transcript(ui)[0]["signed_fields"] == [["reason", "Təsdiq"], ["location", "Bakı"]]
