"""The tray's PIN management: the form, the token, and the form again until it worked,
the person cancelled, or nothing more can be done here.

A wrong PIN or PUK, or a new PIN the token refused, opens the form again with the reason
and the token's fresh state (so the last-try warning appears when it applies).  A blocked
PIN (for a change), a blocked PUK, a token gone or a failing module end with a message.
The forms are drawn through ``PinForms``, a port the desktop UI implements (the Qt UI
process: agent/ui/process); they queue behind any site's dialog (one window at a time).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Literal, NamedTuple, Protocol

from agent.errors import UserCancelled, UserTimeout
from agent.i18n import _
from agent.keystores.base import Secret
from agent.keystores.pkcs11.pin_management import PinManagementError, PinProblem, PinState
from agent.pinmgmt.texts import problem_text
from agent.pinmgmt.use_case import ManagedToken, change_pin, unblock_pin

log = logging.getLogger(__name__)

Action = Literal["change", "unblock"]
# These let the person try again in the same form; any other problem ends the flow.
_RETRY = {PinProblem.WRONG_PIN, PinProblem.WRONG_PUK, PinProblem.PIN_LENGTH,
          PinProblem.PIN_REJECTED, PinProblem.MISMATCH}


class PinPair(NamedTuple):
    """A form's answer: the current PIN (or the PUK), and the new PIN."""

    first: Secret
    new: Secret


class PinForms(Protocol):
    """The PIN-management dialogs; each raises UserCancelled when the person cancels.
    ``error`` says why the last try failed (None on the first)."""

    async def ask_pin_change(self, item: ManagedToken, state: PinState,
                             error: str | None) -> PinPair: ...

    async def ask_pin_unblock(self, item: ManagedToken, state: PinState,
                              error: str | None) -> PinPair: ...

    async def show_message(self, title: str, text: str, *, error: bool) -> None: ...


async def run(ui: PinForms, item: ManagedToken, action: Action) -> bool:
    """Show the form for ``action`` until done; True when the PIN was changed or set."""
    state, notice = item.state, None
    if action == "change" and state.pin.locked:
        await _result(ui, _("Change PIN"), problem_text(PinProblem.PIN_LOCKED, state), True)
        return False
    if action == "unblock" and state.puk_locked:
        await _result(ui, _("Unblock PIN"), problem_text(PinProblem.PUK_LOCKED, state), True)
        return False
    while True:
        try:
            if action == "change":
                answer = await ui.ask_pin_change(item, state, notice)
            else:
                answer = await ui.ask_pin_unblock(item, state, notice)
        except (UserCancelled, UserTimeout):
            return False
        try:
            with answer.first, answer.new:
                if action == "change":
                    await change_pin(item, answer.first, answer.new)
                else:
                    await unblock_pin(item, answer.first, answer.new)
        except PinManagementError as exc:
            log.info("PIN %s on a token failed: %s", action, exc.problem.value)
            state = exc.state or state
            notice = problem_text(exc.problem, state)
            if exc.problem in _RETRY and not state.puk_locked and not (
                    action == "change" and state.pin.locked):
                continue
            title = _("Change PIN") if action == "change" else _("Unblock PIN")
            await _result(ui, title, notice, True)
            return False
        done = (_("The PIN was changed.") if action == "change"
                else _("The PIN was unblocked and set anew."))
        await _result(ui, done, _("Use the new PIN from now on."), False)
        return True


async def _result(ui: PinForms, title: str, message: str, danger: bool) -> None:
    with contextlib.suppress(UserCancelled, UserTimeout):
        await ui.show_message(title, message, error=danger)

