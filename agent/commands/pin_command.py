"""``imza-agent pin change|unblock [--token SERIAL|LABEL]``: the token's PIN, from a terminal.

The command loads the PKCS#11 modules itself, each in its own worker process as the daemon
does, and never asks the running agent.  Why: the daemon's only doors are the ones pages
knock on (the WebSocket ports and the extension's socket), and PIN management must have no
door a page could reach; a new local control channel would be one more thing to defend.
Loading the module here keeps every PIN inside this terminal's own process tree: read with
``getpass`` (never echoed, never in argv or the environment), held in ``Secret``s, passed
to the worker over its pipe and wiped there.  PKCS#11 sessions belong to a process, so a
running agent is not disturbed; its next signature simply asks for the new PIN.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Callable
from pathlib import Path

from agent.commands.text import error
from agent.config import Config
from agent.i18n import _
from agent.keystores.base import KeyStore, Secret
from agent.keystores.pkcs11.modules import discover_modules
from agent.keystores.pkcs11.pin_management import PinManagementError, PinProblem
from agent.keystores.pkcs11.store import Pkcs11Store
from agent.pinmgmt.texts import length_rule, pin_notes, problem_text, puk_notes
from agent.pinmgmt.use_case import (
    ManagedToken,
    TokenChoiceError,
    change_pin,
    check_new_pin,
    choose_token,
    manageable_tokens,
    unblock_pin,
)

OK, FAILED, USAGE = 0, 1, 2
Prompt = Callable[[str], str]


def main(action: str, config: Config, *, token: str | None,
         prompt: Prompt = getpass.getpass, ask: Prompt = input) -> int:
    return asyncio.run(_run(action, config, token, prompt, ask))


def _stores(config: Config) -> list[KeyStore]:
    tokens = config.tokens
    return [Pkcs11Store(Path(c.path), call_timeout=tokens.call_timeout)
            for c in discover_modules(list(tokens.modules), tokens.known_modules) if c.present]


async def _run(action: str, config: Config, wanted: str | None, prompt: Prompt,
               ask: Prompt) -> int:
    stores = _stores(config)
    try:
        tokens = await manageable_tokens(stores)
        try:
            item = choose_token(tokens, wanted)
        except TokenChoiceError as exc:
            return _no_choice(exc)
        print(_("Token: {token}").format(token=item.name))
        if action == "change":
            return await _change(item, prompt)
        return await _unblock(item, prompt, ask)
    finally:
        for store in stores:
            await store.close()


def _no_choice(exc: TokenChoiceError) -> int:
    if exc.wanted is None and not exc.matches:
        error(_("No token found. Insert your token or card."))
        return FAILED
    if exc.wanted is None:
        error(_("More than one token is present: name one with --token SERIAL or LABEL."))
    elif exc.matches:
        error(_("More than one token matches “{token}”: name it by its serial.").format(
            token=exc.wanted))
    else:
        error(_("No token matches “{token}”.").format(token=exc.wanted))
    for found in exc.matches:
        print(f"  {found.name}", file=sys.stderr)
    return USAGE


def _new_pin(item: ManagedToken, prompt: Prompt) -> Secret | None:
    """The new PIN typed twice and checked against the token's rule; None (said why)
    when it fails the check, before the token spends a try on it."""
    rule = length_rule(item.state.pin)
    label = _("New PIN ({rule}): ").format(rule=rule) if rule else _("New PIN: ")
    new, again = Secret(prompt(label)), Secret(prompt(_("New PIN again: ")))
    with again:
        problem = check_new_pin(new, again, item.state.pin)
    if problem is not None:
        new.wipe()
        error(problem_text(problem, item.state))
        return None
    return new


async def _change(item: ManagedToken, prompt: Prompt) -> int:
    if item.state.pin.locked:
        error(problem_text(PinProblem.PIN_LOCKED, item.state))
        print(_("Unblock it with: imza-agent pin unblock"), file=sys.stderr)
        return FAILED
    for note in pin_notes(item.state):
        print(note)
    with Secret(prompt(_("Current PIN: "))) as old:
        new = _new_pin(item, prompt)
        if new is None:
            return FAILED
        with new:
            try:
                await change_pin(item, old, new)
            except PinManagementError as exc:
                error(problem_text(exc.problem, exc.state or item.state))
                return FAILED
    print(_("The PIN was changed."))
    return OK


async def _unblock(item: ManagedToken, prompt: Prompt, ask: Prompt) -> int:
    state = item.state
    if state.puk_locked:
        error(problem_text(PinProblem.PUK_LOCKED, state))
        return FAILED
    if not state.pin.locked:
        print(_("The PIN is not blocked; unblocking sets a new PIN all the same."))
    for note in puk_notes(state):
        print(note)
    if state.puk_final_try:
        answer = ask(_("Type “{yes}” to use the last PUK try: ").format(yes=_("yes")))
        if answer.strip().casefold() != _("yes").casefold():
            print(_("Nothing was changed."))
            return FAILED
    with Secret(prompt(_("PUK (or security officer PIN): "))) as puk:
        new = _new_pin(item, prompt)
        if new is None:
            return FAILED
        with new:
            try:
                await unblock_pin(item, puk, new)
            except PinManagementError as exc:
                error(problem_text(exc.problem, exc.state or item.state))
                return FAILED
    print(_("The PIN was unblocked and set anew."))
    return OK
