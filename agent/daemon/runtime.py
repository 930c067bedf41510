"""Builds the running agent from its parts and starts the transports.

Order matters for start-up time: the listening sockets come up first; the key stores
(worker processes, the demo identity) are ready shortly after, and nothing heavy
(pyHanko, tkinter) is imported on the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from agent import __version__
from agent.app.core import AgentCore
from agent.app.dialogs import UserInterface
from agent.app.services import Services
from agent.config import Config
from agent.daemon.token_watch import TokenWatch, smartcard_service_down
from agent.formats import available_formats
from agent.journal import Journal
from agent.keystores.manager import StoreManager
from agent.limits import RateLimiter
from agent.methods import register_all
from agent.paths import data_dir, sub_dir
from agent.policy.policy import Policy
from agent.protocol.dispatch import Dispatcher
from agent.transport.admission import Admission
from agent.transport.local import SOCKET_NAME, LocalSocketTransport
from agent.transport.websocket import WebSocketTransport

log = logging.getLogger("imza_agent")

RUNTIME_FILE = "runtime.json"


def make_ui(config: Config, *, headless: bool) -> UserInterface:
    from agent.ui.scripted import NoUI, ScriptedUI

    backend = config.ui.backend
    if backend == "scripted":
        if config.ui.answers_file is None:
            raise SystemExit("imza-agent: [ui] backend = \"scripted\" needs answers_file")
        return ScriptedUI(config.ui.answers_file)
    if backend == "tk" and not headless:
        try:
            from agent.ui.tk import TkUI
        except ImportError:
            log.warning("desktop dialogs are not available in this build; "
                        "requests that need the user will be refused")
            return NoUI()
        return TkUI(config.ui)  # pragma: no cover - desktop issue
    return NoUI()


class AgentRuntime:
    def __init__(self, config: Config, *, headless: bool,
                 env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.headless = headless
        self.env = env
        self.started_at = time.monotonic()
        self.timings: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.pcsc: Any = None  # agent.pcsc.service.PcscService while PC/SC is watched

    async def start(self) -> None:
        config = self.config
        self.policy = Policy.load(remove_defaults=config.policy.remove_defaults)
        self.stores = StoreManager.from_config(config, env=self.env)
        self.ui = make_ui(config, headless=self.headless)
        self.journal = (Journal(data_dir() / "journal.jsonl")
                        if config.journal.enabled else None)
        self.core = AgentCore(stores=self.stores, ui=self.ui, policy=self.policy,
                              journal=self.journal, dialog_timeout=config.ui.dialog_timeout,
                              max_pin_attempts=config.ui.max_pin_attempts)
        self.services = Services(self.core, formats=available_formats(),
                                 formats_config=config.formats)
        self.dispatcher = Dispatcher()
        register_all(self.dispatcher, self.services)

        # One admission and one rate limiter for every transport: an origin's limits hold
        # across them rather than doubling with each one.
        server = config.server
        self.admission = Admission(self.policy, dev_origins=server.dev_origins,
                                   max_connections_per_origin=server.max_connections_per_origin)
        rate = RateLimiter(server.rate_per_second, server.rate_burst)
        self.transport = WebSocketTransport(self.dispatcher, self.policy, server,
                                            self.admission, rate)
        await self.transport.start(self._tls_context())
        # The native messaging host (browser extension) reaches the same dispatcher here.
        self.local = LocalSocketTransport(self.dispatcher, server, data_dir() / SOCKET_NAME,
                                          self.admission, rate)
        await self.local.start()
        self.timings["listening"] = time.monotonic() - self.started_at
        self._write_runtime_file()
        # The one look at the tokens: pages (tokens.changed) and the tray follow it.
        self.token_watch = TokenWatch(
            self.stores, self.core.publish_tokens,
            pages_watching=lambda: bool(self.core.watchers),
            smartcard_down=lambda: smartcard_service_down(self.pcsc))
        self._tasks.append(asyncio.create_task(self._stores_ready()))
        self._tasks.append(asyncio.create_task(
            self.token_watch.run(config.tokens.poll_interval)))
        # Card and reader events, at once (None without pyscard: the look above stands in).
        from agent.pcsc.service import start_pcsc

        self.pcsc = start_pcsc(config, self.stores, self.token_watch.changed)
        # The tray icon on a desktop run (agent/ui/tray.py); none with --headless.
        self.tray: Any = None
        if not self.headless and config.ui.backend == "tk" and config.ui.tray:
            from agent.ui.tray import start_tray

            self.tray = start_tray(self)

    def _tls_context(self) -> Any:
        if not self.config.server.wss_enabled:
            return None
        from agent.tls.material import ensure_tls_material, ssl_context

        material = ensure_tls_material(sub_dir("tls"))
        if material.renewed and material.previous_ca_fingerprint_sha256:
            log.warning("the local TLS certificate was renewed: run `imza-agent trust install`")
        return ssl_context(material)

    async def _stores_ready(self) -> None:
        # The first look, which the tray (if already subscribed) shows at once.
        snapshot = await self.token_watch.refresh()
        self.timings["stores_ready"] = time.monotonic() - self.started_at
        self._write_runtime_file()
        log.info("key stores ready: %d token(s)%s", len(snapshot.tokens),
                 " (demo identity offered)" if self.stores.demo_active else "")

    def _write_runtime_file(self) -> None:
        """Where this agent listens, for `native-host`, the tray and the tests."""
        info = {"pid": os.getpid(), "version": __version__, "ports": self.transport.ports,
                "socket": self.local.address, "timings": self.timings}
        path = data_dir() / RUNTIME_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info), encoding="utf-8")
        tmp.replace(path)

    async def stop(self) -> None:
        if getattr(self, "tray", None) is not None:
            self.tray.stop()
        if self.pcsc is not None:
            await self.pcsc.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.transport.close()
        await self.local.close()
        await self.stores.close()
        with contextlib.suppress(FileNotFoundError):
            (data_dir() / RUNTIME_FILE).unlink()
