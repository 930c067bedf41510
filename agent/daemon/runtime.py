"""Builds the running agent from its parts and starts the transports.

Order matters for start-up time (issue 17, bar 6): the first look at the tokens starts
before the transports, so the PKCS#11 workers' interpreters boot on another core while
this one makes its TLS context and listens; the journal (and its keyring) opens after
that look; nothing heavy (pyHanko, Qt) is imported on the way, nor the document methods'
modules (agent/methods/__init__.py: at their first call); Qt never is, it runs in the UI
process, started once the daemon listens. The WebSocket ports may already listen when
this starts (``early``: bound by `imza-agent run` before it imported all this,
agent/daemon/early_listen.py); the transport then serves those sockets, and the pages
the kernel queued on them meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any

from agent import __version__
from agent.app.core import CONSENTABLE, AgentCore
from agent.app.dialogs import UserInterface
from agent.app.services import Services
from agent.config import Config
from agent.daemon.deferred_journal import DeferredJournal
from agent.daemon.instance import token_summary
from agent.daemon.token_watch import (
    TokenSnapshot,
    TokenWatch,
    smartcard_events_flow,
    smartcard_service_down,
)
from agent.formats import available_formats
from agent.keystores.manager import StoreManager
from agent.methods import register_all
from agent.paths import data_dir, sub_dir
from agent.policy.policy import Policy
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.transport.admission import Admission
from agent.transport.heap import release_free_memory
from agent.transport.local import SOCKET_NAME, LocalSocketTransport
from agent.transport.session import SessionLimits
from agent.transport.websocket import WebSocketTransport

if TYPE_CHECKING:
    from agent.daemon.early_listen import EarlySockets
    from agent.journal import Journal

log = logging.getLogger("imza_agent")

RUNTIME_FILE = "runtime.json"
# The orderly stop takes at most STOP_TIMEOUT seconds (the promise is 2 s from the
# signal to the end of the process): closing the transports at most this share of it,
# ending the workers this one, the journal the rest (and at least _JOURNAL_MINIMUM).
STOP_TIMEOUT = 1.5
_SERVING_SHARE = 0.35
_WORKERS_SHARE = 0.4
_JOURNAL_MINIMUM = 0.1
# Loop turns from creating the first look's task to its PKCS#11 workers' spawn (the
# look's gather, the store's call, the subprocess): the spawn then precedes the TLS
# context and the listening sockets rather than following them (agent/keystores/pkcs11/
# client.py). Fewer only makes the workers start later, never anything wrong.
_TURNS_TO_SPAWN = 3
# Seconds from "stores ready" to opening the journal (its keyring thread imports keyring
# and probes the OS keyring: 30-55 ms of CPU that competes for the interpreter lock):
# a page that connects as soon as runtime.json names the ports is answered first. A
# request that reaches the journal earlier opens it itself.
_JOURNAL_AFTER = 0.25
# Seconds from opening the journal (its keyring thread then imports and probes) to handing
# the memory start-up freed back to the system (malloc_trim: ≈ 0.6 MiB of an idle
# daemon's anonymous memory, issue 17 bar 3).
_TRIM_AFTER = 0.3


def make_ui(config: Config, *, headless: bool) -> UserInterface:
    from agent.ui.scripted import NoUI, ScriptedUI

    backend = config.ui.backend
    if backend == "scripted":
        if config.ui.answers_file is None:
            raise SystemExit("imza-agent: [ui] backend = \"scripted\" needs answers_file")
        return ScriptedUI(config.ui.answers_file)
    if backend == "qt" and not headless:
        # The daemon's side of the UI process: no Qt is imported here, ever.
        from agent.ui.process import QtProcessUI

        return QtProcessUI(config.ui)
    return NoUI()


class AgentRuntime:
    def __init__(self, config: Config, *, headless: bool,
                 env: Mapping[str, str] | None = None,
                 early: EarlySockets | None = None) -> None:
        self.config = config
        self.headless = headless
        self.env = env
        # The WebSocket ports `imza-agent run` bound before importing all this: the
        # transport serves these sockets (the pages queued on them included).
        self.early = early
        self.started_at = time.monotonic()
        self.timings: dict[str, float] = {}
        self._runtime_tokens: list[dict[str, Any]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._listening = asyncio.Event()
        # agent.pcsc.service.PcscService while PC/SC is watched: from the first look at
        # the tokens on (``_stores_ready``), not yet when ``start`` returns.
        self.pcsc: Any = None

    async def start(self) -> None:
        config = self.config
        self.policy = Policy.load(remove_defaults=config.policy.remove_defaults)
        self.stores = StoreManager.from_config(config, env=self.env)
        self.ui = make_ui(config, headless=self.headless)
        self.journal = (DeferredJournal(self._open_journal) if config.journal.enabled
                        else None)
        self.core = AgentCore(stores=self.stores, ui=self.ui, policy=self.policy,
                              journal=self.journal, dialog_timeout=config.ui.dialog_timeout,
                              max_pin_attempts=config.ui.max_pin_attempts, limits=config.ui)
        # The one look at the tokens: pages (tokens.changed) and the tray follow it.
        self.token_watch = TokenWatch(
            self.stores, self.core.publish_tokens,
            pages_watching=lambda: bool(self.core.watchers),
            smartcard_down=lambda: smartcard_service_down(self.pcsc),
            card_events=lambda: smartcard_events_flow(self.pcsc))
        self.token_watch.observer = self._tokens_seen
        # Its first look starts now: a few turns of the loop take it to the spawn of the
        # PKCS#11 workers, whose interpreters then start while this one
        # registers the methods, makes its TLS context and listens.
        self._tasks.append(asyncio.create_task(self._stores_ready()))
        for _ in range(_TURNS_TO_SPAWN):
            await asyncio.sleep(0)
        try:
            self._serve_methods()
            await self.transport.start(self._tls_context())
            if self.early is not None:  # what the transport did not take (see early_listen)
                self.early.close()
            await self.local.start()
        except BaseException:
            if self.early is not None:
                self.early.close()
            await self._cancel_tasks()
            await _within(STOP_TIMEOUT * _WORKERS_SHARE,
                          {"the key stores": self.stores.close()})
            raise
        self.timings["listening"] = time.monotonic() - self.started_at
        self._listening.set()
        self._write_runtime_file()
        self._tasks.append(asyncio.create_task(
            self.token_watch.run(config.tokens.poll_interval)))
        # The tray icon on a desktop run; none with --headless.  The Qt UI process draws
        # it (and starts now, so the tray shows without a page).
        self.tray_link: Any = None
        if not self.headless and config.ui.backend == "qt":
            from agent.ui.process import QtProcessUI

            assert isinstance(self.ui, QtProcessUI)
            if config.ui.tray:
                from agent.ui.process.tray_link import TrayLink

                self.tray_link = TrayLink(self, self.ui)
                self.tray_link.start()
            self.ui.start()

    def _serve_methods(self) -> None:
        """The methods and the transports that reach them (not listening yet)."""
        config = self.config
        self.services = Services(self.core, formats=available_formats(),
                                 formats_config=config.formats)
        self.dispatcher = Dispatcher()
        # The document methods' modules (and the document workers, configured then) are
        # imported at their first call: none of it is needed to answer the first page.
        register_all(self.dispatcher, self.services, documents=config.documents)
        # One admission and one set of session limits for every transport: an origin's
        # and a site's limits hold across them rather than doubling with each one.
        server = config.server
        self.admission = Admission(self.policy, dev_origins=server.dev_origins,
                                   max_connections_per_origin=server.max_connections_per_origin,
                                   max_connections_per_site=server.max_connections_per_site,
                                   max_connections=server.max_connections,
                                   reserved_for_granted=server.reserved_for_granted,
                                   has_grant=self.policy.has_any_grant)
        self.limits = SessionLimits.from_settings(server, self._has_grant)
        self.transport = WebSocketTransport(self.dispatcher, self.policy, server,
                                            self.admission, self.limits)
        if self.early is not None:
            self.transport.prebound = self.early.take
        # The native messaging host (browser extension) reaches the same dispatcher here.
        self.local = LocalSocketTransport(self.dispatcher, server, data_dir() / SOCKET_NAME,
                                          self.admission, self.limits)

    def _has_grant(self, origin: str, ctx: CallContext | None) -> bool:
        """Whether ``origin`` holds a grant: by policy or stored answer, or (on ``ctx``)
        an "allow once" of that connection. Until then its frames must be small."""
        if self.policy.has_any_grant(origin):
            return True
        return ctx is not None and any(self.core.allowed_without_asking(ctx, p)
                                       for p in CONSENTABLE)

    def _tls_context(self) -> Any:
        if not self.config.server.wss_enabled:
            return None
        from agent.daemon.first_run import ensure_browser_trust
        from agent.tls.material import ensure_tls_material, ssl_context

        material = ensure_tls_material(sub_dir("tls"))
        # Before any transport listens, so a page opened once the agent answers (`demo`,
        # the native host) finds the certificate trusted; a renewal re-installs it too.
        ensure_browser_trust(material)
        return ssl_context(material)

    async def _stores_ready(self) -> None:
        # The first look, which the tray (if already subscribed) shows at once.
        snapshot = await self.token_watch.refresh()
        await self._listening.wait()  # runtime.json names the ports first
        self.timings["stores_ready"] = time.monotonic() - self.started_at
        self._write_runtime_file()
        log.info("key stores ready: %d token(s)%s", len(snapshot.tokens),
                 " (demo identity offered)" if self.stores.demo_active else "")
        # Card and reader events from now on (None without pyscard: the looks stand in).
        # Started after the first look rather than before the first connection: loading
        # pyscard and the ATR table costs 15-40 ms of this thread.
        from agent.pcsc.service import start_pcsc

        try:
            self.pcsc = start_pcsc(self.config, self.stores, self.token_watch.changed)
        except Exception:  # the daemon serves on; the periodic looks stand in for events
            log.exception("the smart card watch could not start")
        if self.journal is not None:  # its keyring thread, once start-up is over
            await asyncio.sleep(_JOURNAL_AFTER)
            try:
                self.journal.open()
            except Exception:  # a signature then fails as it would have (INTERNAL)
                log.exception("the journal could not be opened")
        await asyncio.sleep(_TRIM_AFTER)
        release_free_memory()

    def _open_journal(self) -> Journal:
        from agent.journal import Journal

        journal = self.config.journal
        return Journal(data_dir() / "journal.jsonl", max_bytes=journal.max_bytes,
                       keep_files=journal.keep_files, keyring_timeout=journal.keyring_timeout)

    def _tokens_seen(self, snapshot: TokenSnapshot) -> None:
        """runtime.json lists the tokens (`imza-agent status`): rewritten when they change."""
        if not self._listening.is_set():  # written once the transports listen
            return
        if token_summary(snapshot) != self._runtime_tokens:
            self._write_runtime_file()

    def _write_runtime_file(self) -> None:
        """Where this agent listens, for `native-host`, the tray and the tests."""
        watch = getattr(self, "token_watch", None)
        self._runtime_tokens = token_summary(watch.latest if watch is not None else None)
        # "unavailable": configured transports that could not listen, and why (doctor).
        info = {"pid": os.getpid(), "version": __version__, "ports": self.transport.ports,
                "unavailable": self.transport.unavailable,
                "socket": self.local.address, "timings": self.timings,
                "tokens": self._runtime_tokens}
        path = data_dir() / RUNTIME_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info), encoding="utf-8")
        tmp.replace(path)

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop serving, end the workers, close the journal: within ``timeout`` seconds.

        Each part runs under a bound; one that takes longer is left behind (and logged)
        and the next one runs, so the journal is closed and the runtime file removed
        whatever hung.  The dialogs of the requests cancelled here close themselves (the
        UI process is told to quit), and agent/daemon/run.py ends the process right after
        (killing any worker still alive)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if getattr(self, "tray_link", None) is not None:
            self.tray_link.stop()
        serving: dict[str, Awaitable[object]] = {
            "the WebSocket transports": self.transport.close(),
            "the extension's socket": self.local.close(),
            "the runtime's tasks": self._cancel_tasks()}
        if self.pcsc is not None:
            serving["the smart card watch"] = self.pcsc.stop()
        close_ui = getattr(self.ui, "close", None)
        if close_ui is not None and asyncio.iscoroutinefunction(close_ui):
            serving["the UI process"] = close_ui()
        await _within(timeout * _SERVING_SHARE, serving)
        self.limits.parser.close()
        workers: dict[str, Awaitable[object]] = {"the key stores": self.stores.close()}
        if "agent.formats.isolation" in sys.modules:  # started by a document request
            from agent.formats.isolation import close_document_workers

            workers["the document workers"] = close_document_workers()
        await _within(min(timeout * _WORKERS_SHARE, deadline - loop.time()), workers)
        if self.journal is not None:  # the last head record into the keyring
            left = max(deadline - loop.time(), _JOURNAL_MINIMUM)
            await _within(left, {"the journal": asyncio.to_thread(self.journal.close, left)})
        with contextlib.suppress(FileNotFoundError):
            (data_dir() / RUNTIME_FILE).unlink()

    async def _cancel_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _within(timeout: float, parts: Mapping[str, Awaitable[object]]) -> None:
    """Run ``parts`` together for at most ``timeout`` seconds; log (never raise) what
    failed or did not finish in time, and leave the latter behind, cancelled."""
    tasks = {asyncio.ensure_future(part): name for name, part in parts.items()}
    done, pending = await asyncio.wait(tasks, timeout=max(timeout, 0.01))
    for task in pending:
        log.warning("stopping: %s did not finish in %.1f s", tasks[task], timeout)
        task.cancel()
    for task in done:
        if not task.cancelled() and (error := task.exception()) is not None:
            log.warning("stopping: %s failed: %r", tasks[task], error)
