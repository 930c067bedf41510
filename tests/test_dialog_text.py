"""The PIN dialog's warning lines come from the token's flags (PKCS#11 reports "few tries
left" and "final try", never a count), in the dialog's language; no display needed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent import i18n
from agent.app.dialogs import CertificateChoice, PinRequest
from agent.errors import PinStatus
from agent.ui.tk.dialogs import PinNotice, pin_notices

CERTIFICATE = CertificateChoice(
    holder="Əliyev Əli", issuer="Test CA", serial_hex="01", not_before="2025-01-01",
    not_after="2027-01-01", token_label="Token", usable=True)
WRONG = PinNotice("Wrong PIN.", "Warning.TLabel", 10)
FEW = PinNotice("Only a few tries are left.", "Warning.TLabel", 6)
LAST = PinNotice("Last try: if this PIN is wrong too, the token will be locked.",
                 "Danger.TLabel", 6)


HEALTHY = PinStatus()


def _request(pin: PinStatus = HEALTHY, retry: PinStatus | None = None,
             password: bool = False) -> PinRequest:
    return PinRequest(origin="https://e-gov.az", action="sign", certificate=CERTIFICATE,
                      pin=pin, retry=retry, password=password)


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
                                            expected: list[PinNotice]) -> None:
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
    assert [n.text for n in notices] == ["Wrong password."]


def test_the_notices_are_in_the_dialog_language() -> None:
    i18n.set_language("az")
    texts = [n.text for n in pin_notices(_request(retry=PinStatus(count_low=True)))]
    assert texts == ["PIN kodu yanlışdır.", "Az cəhd qalıb."]
