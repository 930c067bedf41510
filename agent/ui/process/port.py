"""``QtProcessUI``: the dialog port (agent/app/dialogs.py) and the PIN-management port
(agent/pinmgmt/desktop.py) over the pipe to the Qt UI process.

One dialog on screen at a time, whatever origin asks (the others wait their turn, their
timeout running).  A cancelled caller (timeout, the page left) closes
its dialog.  The answers are checked here: the UI process is trusted code, so an answer
outside its dialog's shape means it is broken (killed, restarted, ``UiCrashed``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from agent import i18n
from agent.app.dialogs import (
    CertificateChoice,
    ConsentAnswer,
    ConsentRequest,
    ExtendRequest,
    PinRequest,
)
from agent.config import UiConfig
from agent.errors import UiCrashed
from agent.keystores.base import PIN_PAD, Credential, Secret
from agent.pipe_frames import FrameError
from agent.ui.preferences import saved_language
from agent.ui.process import args as wire_args
from agent.ui.process.supervisor import UiSupervisor
from agent.ui.ui_wire import secret_from_b64, wipe

if TYPE_CHECKING:
    from agent.keystores.pkcs11.pin_management import PinState
    from agent.pinmgmt.desktop import PinPair
    from agent.pinmgmt.use_case import ManagedToken

log = logging.getLogger(__name__)

T = TypeVar("T")


class QtProcessUI:
    interactive = True

    def __init__(self, config: UiConfig) -> None:
        self.config = config
        i18n.set_language(i18n.resolve(config.language, saved=saved_language()))
        self.process = UiSupervisor(config, self._hello)
        self._turn: asyncio.Lock | None = None
        self._pin_pad_prompt: int | None = None
        self._waiting = 0
        # Told True while a dialog waits for the person, False after (the tray's state).
        self.listeners: list[Callable[[bool], None]] = []

    def _hello(self) -> dict[str, Any]:
        return {"language": i18n.current_language(), "theme": self.config.theme,
                "arming_ms": round(self.config.arming_delay * 1000),
                "timeout_s": self.config.dialog_timeout}

    def start(self) -> None:
        """Start the UI process now (in the background): the tray shows without a page."""
        self.process.start_soon()

    async def close(self) -> None:
        await self.process.close()

    def set_language(self, language: str) -> None:
        """Every open window and the tray re-render in ``language``."""
        i18n.set_language(language)
        self.process.send({"op": "language", "language": language})

    # --- one window at a time -----------------------------------------------------------

    def _notify(self, waiting: bool) -> None:
        for listener in list(self.listeners):
            try:
                listener(waiting)
            except Exception:
                log.exception("a UI listener failed")

    async def _show(self, kind: str, args: dict[str, Any],
                    read: Callable[[dict[str, Any]], T]) -> tuple[int, T]:
        if self._turn is None:
            self._turn = asyncio.Lock()
        async with self._turn:  # one dialog on screen at a time, across origins
            self.pin_pad_finished()
            self._waiting += 1
            self._notify(True)
            try:
                dialog_id, answer = await self.process.dialog(kind, args)
                try:
                    return dialog_id, read(answer)
                except (KeyError, TypeError, ValueError, FrameError):
                    log.warning("the UI process answered a %s dialog out of shape", kind)
                    self.process.restart("an answer out of shape")
                    raise UiCrashed() from None
            finally:
                self._waiting -= 1
                self._notify(self._waiting > 0)

    # --- the UserInterface port ---------------------------------------------------------

    async def ask_consent(self, request: ConsentRequest) -> ConsentAnswer:
        def read(answer: dict[str, Any]) -> ConsentAnswer:
            return ConsentAnswer(answer["result"])

        return (await self._show("consent", wire_args.consent(request), read))[1]

    async def choose_certificate(self, origin: str, purpose: str,
                                 choices: list[CertificateChoice], *,
                                 filtered: bool = False) -> int:
        def read(answer: dict[str, Any]) -> int:
            index = answer["result"]
            if type(index) is not int or not 0 <= index < len(choices):
                raise ValueError("no such choice")
            return index

        args = wire_args.pick(origin, purpose, choices, filtered)
        return (await self._show("pick", args, read))[1]

    async def ask_pin(self, request: PinRequest) -> Credential:
        def read(answer: dict[str, Any]) -> Credential:
            result = answer["result"]
            if result.get("pin_pad") is True:
                return PIN_PAD
            buffer = secret_from_b64(result["pin_b64"])
            try:
                return Secret(buffer)
            finally:
                wipe(buffer)  # the Secret holds its own copy

        dialog_id, credential = await self._show("pin", wire_args.pin(request), read)
        if credential is PIN_PAD:
            # The window stays as the reader's prompt until the next dialog or the end.
            self._pin_pad_prompt = dialog_id
        return credential

    async def show_pin_locked(self, origin: str, token_label: str, unlock: str) -> None:
        await self._show("pin_locked", wire_args.pin_locked(origin, token_label, unlock),
                         _nothing)

    async def ask_extend(self, request: ExtendRequest) -> None:
        def read(answer: dict[str, Any]) -> None:
            if answer["result"] != "extend":
                raise ValueError("not a confirmation")

        await self._show("extend", wire_args.extend(request), read)

    def pin_pad_finished(self) -> None:
        prompt, self._pin_pad_prompt = self._pin_pad_prompt, None
        if prompt is not None:
            self.process.close_dialog(prompt)

    # --- the PIN-management port (agent/pinmgmt/desktop.py) ------------------------------

    async def ask_pin_change(self, item: ManagedToken, state: PinState,
                             error: str | None) -> PinPair:
        args = wire_args.pin_form(item, state, unblock=False, error=error)
        return (await self._show("pin_change", args, _pair("old_b64")))[1]

    async def ask_pin_unblock(self, item: ManagedToken, state: PinState,
                              error: str | None) -> PinPair:
        args = wire_args.pin_form(item, state, unblock=True, error=error)
        return (await self._show("pin_unblock", args, _pair("puk_b64")))[1]

    async def show_message(self, title: str, text: str, *, error: bool) -> None:
        await self._show("message", wire_args.message(title, text, error=error), _nothing)


def _nothing(answer: dict[str, Any]) -> None:
    return None


def _pair(first_field: str) -> Callable[[dict[str, Any]], PinPair]:
    def read(answer: dict[str, Any]) -> PinPair:
        from agent.pinmgmt.desktop import PinPair

        result = answer["result"]
        first = secret_from_b64(result[first_field])
        try:
            new = secret_from_b64(result["new_b64"])
        except BaseException:
            wipe(first)
            raise
        try:
            return PinPair(Secret(first), Secret(new))
        finally:
            wipe(first)
            wipe(new)

    return read
