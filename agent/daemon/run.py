"""`imza-agent run`: the event loop, logging and signals around the runtime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

from agent.config import Config
from agent.daemon.runtime import AgentRuntime


def run_daemon(config: Config, *, headless: bool) -> int:
    # IMZA_AGENT_LOG=debug for support sessions; secrets are never logged at any level.
    level = getattr(logging, os.environ.get("IMZA_AGENT_LOG", "info").upper(), logging.INFO)
    logging.basicConfig(level=level, format="imza-agent: %(levelname)s %(name)s %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config, headless=headless))
    return 0


async def _serve(config: Config, *, headless: bool) -> None:
    runtime = AgentRuntime(config, headless=headless)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await runtime.start()
    ports = ", ".join(f"{t}://127.0.0.1:{p}/v1" for t, p in runtime.transport.ports.items())
    logging.getLogger("imza_agent").info("ready: %s", ports or "no transport enabled")
    try:
        await stop.wait()
    finally:
        await runtime.stop()
