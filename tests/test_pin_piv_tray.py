"""The tray's PIN-management flow (agent/pinmgmt/desktop.py) on the virtual PIV card
through OpenSC: the flow the tray's "Change PIN…" and "Unblock PIN…" start, with the
forms answered by a script standing in for the person (tests/test_ui_qt_ported.py drives
the same flow through the real Qt forms, on SoftHSM).  What is checked is what the
forms are told between tries and what the card ends up with.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from piv_card import CardInReader
from test_pin_piv import _sign_with, card, pki, store  # noqa: F401  (fixtures)

from agent import i18n
from agent.errors import UserCancelled
from agent.keystores.base import Secret
from agent.keystores.pkcs11.pin_management import PinState
from agent.keystores.pkcs11.store import Pkcs11Store
from agent.pinmgmt import desktop as flow
from agent.pinmgmt.use_case import ManagedToken, manageable_tokens

pytestmark = [pytest.mark.pcscd]


class ScriptedForms:
    """The person at the tray's forms: each form gets the next (first, new) pair, and
    cancels when none is left; what each form and message was told is kept."""

    def __init__(self, answers: list[tuple[str, str]]) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, str | None, PinState]] = []
        self.messages: list[tuple[str, str, bool]] = []

    def _next(self, form: str, state: PinState, error: str | None) -> flow.PinPair:
        self.asked.append((form, error, state))
        if not self.answers:
            raise UserCancelled()
        first, new = self.answers.pop(0)
        return flow.PinPair(Secret(first), Secret(new))

    async def ask_pin_change(self, item: ManagedToken, state: PinState,
                             error: str | None) -> flow.PinPair:
        return self._next("change", state, error)

    async def ask_pin_unblock(self, item: ManagedToken, state: PinState,
                              error: str | None) -> flow.PinPair:
        return self._next("unblock", state, error)

    async def show_message(self, title: str, text: str, *, error: bool) -> None:
        self.messages.append((title, text, error))


@pytest.fixture(autouse=True)
def english() -> Iterator[None]:
    i18n.set_language("en")
    yield
    i18n.set_language("en")


async def _item(store: Pkcs11Store) -> ManagedToken:  # noqa: F811
    [item] = await manageable_tokens([store])
    return item


async def test_the_tray_unblocks_a_blocked_card_after_a_wrong_puk(
        store: Pkcs11Store, card: CardInReader) -> None:  # noqa: F811
    card.piv.pin_tries = 0  # blocked, as three wrong PINs leave it
    item = await _item(store)
    assert item.state.pin.locked

    # "Change PIN…" on a blocked card: no form, a message that says to unblock first.
    forms = ScriptedForms([("000000", "135790")])
    assert await flow.run(forms, item, "change") is False
    assert forms.asked == []
    assert forms.messages == [("Change PIN", "The PIN is blocked. Unblock it with the PUK "
                                             "first.", True)]

    # "Unblock PIN…": a wrong PUK costs one PUK try and brings the form back, saying so;
    # the right one sets the new PIN and says that.
    forms = ScriptedForms([("87654321", "246810"), (card.piv.puk, "246810")])
    assert await flow.run(forms, item, "unblock") is True
    assert [(form, error) for form, error, _state in forms.asked] == [
        ("unblock", None), ("unblock", "Wrong PUK.")]
    assert forms.asked[0][2].pin.locked
    assert forms.messages == [("The PIN was unblocked and set anew.",
                               "Use the new PIN from now on.", False)]
    assert card.piv.pin == "246810" and card.piv.pin_tries == card.piv.pin_max_tries
    assert card.piv.puk_tries == card.piv.puk_max_tries  # the right PUK restored them
    assert await _sign_with(store, "246810") == 2


async def test_the_tray_changes_the_pin_after_a_wrong_old_pin(
        store: Pkcs11Store, card: CardInReader) -> None:  # noqa: F811
    old = card.piv.pin
    item = await _item(store)
    forms = ScriptedForms([("111111", "135790"), ("12345", "135790"), (old, "12345"),
                           (old, "135790")])
    assert await flow.run(forms, item, "change") is True
    errors = [error for _form, error, _state in forms.asked]
    assert errors[0] is None
    assert errors[1] is not None and errors[1].startswith("Wrong PIN.")
    # With one try left OpenSC reports it, and the form shows the last-try warning.
    assert errors[2] is not None and errors[2].startswith("Wrong PIN. Last try")
    assert forms.asked[2][2].pin.final_try
    # A new PIN the card refuses (PIV: 6–8 digits) costs no try and says why.
    assert errors[3] is not None and errors[3].startswith(
        "The token does not accept this new PIN.")
    assert forms.messages == [("The PIN was changed.", "Use the new PIN from now on.", False)]
    assert card.piv.pin == "135790" and card.piv.pin_tries == card.piv.pin_max_tries
    assert await _sign_with(store, "135790") == 2


async def test_the_tray_stops_when_the_puk_blocks(
        store: Pkcs11Store, card: CardInReader) -> None:  # noqa: F811
    card.piv.pin_tries = 0
    card.piv.puk_tries = 1
    item = await _item(store)
    forms = ScriptedForms([("87654321", "246810"), (card.piv.puk, "246810")])
    assert await flow.run(forms, item, "unblock") is False
    assert len(forms.asked) == 1  # no second form: nothing more can be done here
    assert forms.messages == [("Unblock PIN", "The PUK is blocked: only your certificate "
                                              "issuer can unblock the token now.", True)]
    assert card.piv.puk_blocked and card.piv.pin_blocked and card.piv.pin != "246810"
