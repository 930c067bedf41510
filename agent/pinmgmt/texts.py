"""What the PIN-management dialogs and the CLI say, in the current language.

The tries: PKCS#11 has flags, not numbers ("few left", "last try", "locked"), so the
texts say exactly that much and never invent a count.
"""

from __future__ import annotations

from agent.errors import PinStatus
from agent.i18n import _
from agent.keystores.pkcs11.pin_management import PinProblem, PinState


def length_rule(pin: PinStatus) -> str | None:
    """The token's length rule for a new PIN, e.g. "4–8 characters"."""
    low, high = pin.min_length, pin.max_length
    if low and high and low == high:
        return _("{n} characters").format(n=low)
    if low and high:
        return _("{min}–{max} characters").format(min=low, max=high)
    if low:
        return _("at least {min} characters").format(min=low)
    if high:
        return _("at most {max} characters").format(max=high)
    return None


def pin_notes(state: PinState) -> list[str]:
    if state.pin.locked:
        return [_("The PIN is blocked.")]
    if state.pin.final_try:
        return [_("Last try: if this PIN is wrong too, the token will be locked.")]
    if state.pin.count_low:
        return [_("Only a few tries are left.")]
    return []


def puk_notes(state: PinState) -> list[str]:
    if state.puk_locked:
        return [_("The PUK is blocked too: only your certificate issuer can unblock the "
                  "token now.")]
    if state.puk_final_try:
        return [_("LAST PUK TRY: if this PUK is wrong, the PUK is blocked for good and "
                  "only your certificate issuer can help.")]
    if state.puk_count_low:
        return [_("Only a few PUK tries are left.")]
    return []


def problem_text(problem: PinProblem, state: PinState | None) -> str:
    """One sentence for the person, then what the token now says about the tries."""
    if problem is PinProblem.WRONG_PIN:
        text = _("Wrong PIN.")
    elif problem is PinProblem.WRONG_PUK:
        text = _("Wrong PUK.")
    elif problem is PinProblem.PIN_LOCKED:
        text = _("The PIN is blocked. Unblock it with the PUK first.")
    elif problem is PinProblem.PUK_LOCKED:
        text = _("The PUK is blocked: only your certificate issuer can unblock the token now.")
    elif problem is PinProblem.PIN_LENGTH:
        rule = length_rule(state.pin) if state else None
        text = (_("The new PIN must have {rule}.").format(rule=rule) if rule
                else _("The token does not accept this new PIN."))
    elif problem is PinProblem.PIN_REJECTED:
        text = _("The token does not accept this new PIN. Try another one; many cards take "
                 "digits only.")
    elif problem is PinProblem.MISMATCH:
        text = _("The two new PINs differ.")
    elif problem is PinProblem.TOKEN_NOT_PRESENT:
        text = _("The token is not there any more. Insert it and try again.")
    elif problem is PinProblem.UNSUPPORTED:
        text = _("This token cannot do this through the agent; use the token's own program.")
    else:
        text = _("The token's module failed. Try again; if it fails again, run "
                 "“imza-agent doctor”.")
    if state is None or problem in (PinProblem.PIN_LOCKED, PinProblem.PUK_LOCKED):
        return text
    notes = puk_notes(state) if problem is PinProblem.WRONG_PUK else pin_notes(state)
    return " ".join([text, *notes])
