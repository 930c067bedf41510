"""The tray drawn by the UI process, wired to the running daemon.

The facts (agent/ui/tray_model.py) go out when a UI process becomes ready, when the
tokens change, after every action and after every dialog (a consent may have added a
grant).  The menu's actions come back here and are carried out on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent.platform.stop import stop_this_process
from agent.ui import tray_model

if TYPE_CHECKING:
    from agent.ui.process.port import QtProcessUI

log = logging.getLogger(__name__)


class TrayLink:
    def __init__(self, runtime: Any, ui: QtProcessUI) -> None:
        self.runtime = runtime
        self.ui = ui
        self._tasks: set[asyncio.Task[None]] = set()
        self._pushing: asyncio.Task[None] | None = None
        self._again = False
        self._detach: list[Callable[[], None]] = []

    def start(self) -> None:
        self.ui.process.on_ready = self.push_soon
        self.ui.process.on_action = self.on_action
        self._detach.append(tray_model.watch_changes(self.runtime, self.push_soon))
        # A dialog ending may have changed the grants (consent "always", "block").
        self.ui.listeners.append(self._dialogs_changed)
        self._detach.append(lambda: self.ui.listeners.remove(self._dialogs_changed))

    def stop(self) -> None:
        for detach in self._detach:
            with contextlib.suppress(Exception):
                detach()
        self._detach.clear()
        self.ui.process.on_ready = None
        self.ui.process.on_action = None
        for task in list(self._tasks):
            task.cancel()

    def _dialogs_changed(self, waiting: bool) -> None:
        if not waiting:
            self.push_soon()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def push_soon(self) -> None:
        """Send the facts again; pushes asked for while one is built coalesce."""
        if self._pushing is not None and not self._pushing.done():
            self._again = True
            return
        self._pushing = asyncio.ensure_future(self._push())

    async def _push(self) -> None:
        while True:
            self._again = False
            try:
                facts = await tray_model.tray_facts(self.runtime)
            except Exception:
                log.warning("the tray's facts could not be gathered", exc_info=True)
                return
            self.ui.process.send({"op": "tray", "facts": facts})
            if not self._again:
                return

    def on_action(self, name: str, args: dict[str, Any]) -> None:
        log.info("tray action: %s", name)  # the name only: origins are the person's
        self._spawn(self._act(name, args))

    async def _act(self, name: str, args: dict[str, Any]) -> None:
        try:
            if name == "quit":
                stop_this_process()  # the daemon's own orderly stop
                return
            if name in ("pin_change", "pin_unblock"):
                await self._manage_pin(name, args)
            else:
                await tray_model.run_action(self.runtime, name, args)
                if name == "language":
                    self.ui.set_language(str(args["language"]))
        except tray_model.ActionError as exc:
            log.warning("a tray action was refused: %s", exc)
        except Exception:
            log.exception("the tray action %s failed", name)
        self.push_soon()

    async def _manage_pin(self, name: str, args: dict[str, Any]) -> None:
        from agent.pinmgmt.desktop import run

        key = args.get("token")
        item = await tray_model.pin_token(self.runtime, key) if isinstance(key, str) else None
        if item is None:
            log.warning("no PIN form: the token is gone")
            return
        await run(self.ui, item, "change" if name == "pin_change" else "unblock")
