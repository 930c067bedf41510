"""The desktop UI: tkinter dialogs on their own thread, awaited from asyncio.

``TkUI`` implements ``agent.app.dialogs.UserInterface``.  Only one dialog is on screen at a
time, whatever origin asks: the others wait their turn (and their timeout keeps running,
so a queue cannot hold a page forever).  tkinter itself is imported on the first dialog,
off the daemon's start-up path.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from agent import i18n
from agent.app.dialogs import CertificateChoice, ConsentAnswer, ConsentRequest, PinRequest
from agent.config import UiConfig
from agent.errors import UserCancelled
from agent.keystores.base import Credential
from agent.ui.preferences import saved_language

if TYPE_CHECKING:  # tkinter and the dialogs load with the first dialog
    import tkinter

    from agent.ui.tk.dialogs import Dialog, PinDialog
    from agent.ui.tk.runner import TkThread

log = logging.getLogger(__name__)

__all__ = ["TkUI"]

T = TypeVar("T")
# Draws one dialog on the Tk thread, given the root window and the future it answers through.
DialogBuilder = Callable[["tkinter.Tk", concurrent.futures.Future[T]], "Dialog[T]"]


class TkUI:
    interactive = True

    def __init__(self, config: UiConfig) -> None:
        self.config = config
        i18n.set_language(i18n.resolve(config.language, saved=saved_language()))
        self._runner: TkThread | None = None
        self._runner_lock = threading.Lock()
        self._turn: asyncio.Lock | None = None
        self._pin_pad_prompt: PinDialog | None = None
        self._waiting = 0
        self.current: Dialog[Any] | None = None  # the dialog on screen (Tk thread's)
        # Told True while a dialog waits for the person, False after (the tray's state).
        self.listeners: list[Callable[[bool], None]] = []

    # --- plumbing ----------------------------------------------------------------------

    def runner(self) -> TkThread:
        """The Tk thread, started on first use (raises TkUnavailable without a display)."""
        with self._runner_lock:
            if self._runner is None:
                from agent.ui.tk.runner import TkThread

                self._runner = TkThread()
            return self._runner

    def _notify(self, waiting: bool) -> None:
        for listener in list(self.listeners):
            try:
                listener(waiting)
            except Exception:
                log.exception("a UI listener failed")

    async def _show(self, build: DialogBuilder[T]) -> T:
        if self._turn is None:
            self._turn = asyncio.Lock()
        async with self._turn:  # one dialog on screen at a time, across origins
            try:
                runner = self.runner()
            except Exception as exc:
                log.error("cannot show a dialog: %s", exc)
                raise UserCancelled("no desktop to ask on") from None
            self.close_pin_pad_prompt()
            answer: concurrent.futures.Future[T] = concurrent.futures.Future()
            dialog = await asyncio.wrap_future(runner.call(lambda: build(runner.root, answer)))
            self.current = dialog
            self._waiting += 1
            self._notify(True)
            try:
                return await asyncio.wrap_future(answer)
            except asyncio.CancelledError:
                runner.call_soon(dialog.close)  # the caller gave up (timeout, closed socket)
                raise
            finally:
                self.current = None
                self._waiting -= 1
                self._notify(self._waiting > 0)

    def close_pin_pad_prompt(self) -> None:
        """The reader's prompt is done with (the next dialog calls this too)."""
        prompt, self._pin_pad_prompt = self._pin_pad_prompt, None
        if prompt is not None:
            self.runner().call_soon(prompt.close)

    pin_pad_finished = close_pin_pad_prompt

    def close(self) -> None:
        if self._runner is not None:
            self.close_pin_pad_prompt()
            self._runner.stop()

    # --- the UserInterface port ----------------------------------------------------------

    async def ask_consent(self, request: ConsentRequest) -> ConsentAnswer:
        from agent.ui.tk.dialogs import ConsentDialog

        timeout, arming = self.config.dialog_timeout, self.config.arming_delay

        def build(root: tkinter.Tk, future: concurrent.futures.Future[ConsentAnswer]
                  ) -> ConsentDialog:
            return ConsentDialog(root, future, request, timeout, arming_delay=arming)

        return await self._show(build)

    async def choose_certificate(self, origin: str, purpose: str,
                                 choices: list[CertificateChoice], *,
                                 filtered: bool = False) -> int:
        from agent.ui.tk.dialogs import CertificatePicker

        timeout, arming = self.config.dialog_timeout, self.config.arming_delay

        def build(root: tkinter.Tk, future: concurrent.futures.Future[int]) -> CertificatePicker:
            return CertificatePicker(root, future, origin, purpose, choices, timeout,
                                     filtered=filtered, arming_delay=arming)

        return await self._show(build)

    async def ask_pin(self, request: PinRequest) -> Credential:
        from agent.keystores.base import PinPad
        from agent.ui.tk.dialogs import PinDialog

        timeout, arming = self.config.dialog_timeout, self.config.arming_delay
        dialogs: list[PinDialog] = []

        def build(root: tkinter.Tk, future: concurrent.futures.Future[Credential]) -> PinDialog:
            dialog = PinDialog(root, future, request, timeout, arming_delay=arming)
            dialog.pin_pad_seconds = timeout
            dialogs.append(dialog)
            return dialog

        credential = await self._show(build)
        if isinstance(credential, PinPad):
            # The window stays as the reader's prompt until the next dialog or its timeout.
            self._pin_pad_prompt = dialogs[0]
        return credential

    async def show_pin_locked(self, origin: str, token_label: str, unlock: str) -> None:
        from agent.ui.tk.dialogs import PinLockedDialog

        timeout, arming = self.config.dialog_timeout, self.config.arming_delay

        def build(root: tkinter.Tk, future: concurrent.futures.Future[None]) -> PinLockedDialog:
            return PinLockedDialog(root, future, origin, token_label, unlock, timeout,
                                   arming_delay=arming)

        await self._show(build)
