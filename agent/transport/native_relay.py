"""The native messaging host's relay: page connections in the browser ↔ connections to the
daemon's local socket (``agent/transport/local.py``), one socket connection per page.

Messages from the extension's background::

    {"type": "open",    "port": 7, "origin": "https://portal.example"}
    {"type": "message", "port": 7, "data": "<JSON-RPC text>"}
    {"type": "close",   "port": 7}

Messages to the background::

    {"type": "opened",  "port": 7}
    {"type": "message", "port": 7, "data": "<JSON-RPC text>"}
    {"type": "part",    "port": 7, "data": "<the start of a longer JSON-RPC text>"}
    {"type": "closed",  "port": 7, "reason": "AGENT_UNAVAILABLE" | "REFUSED" | "CLOSED",
                        "detail": "…"}

Chrome refuses a message from a host over 1 MiB (and disconnects the host), so a longer
reply travels as ``part`` messages followed by one ``message`` that completes it; a reply
over ``max_reply_chars`` is replaced with a TOO_LARGE error for its request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import TooLarge
from agent.platform import current as current_platform
from agent.protocol import jsonrpc
from agent.transport.local import HEADER, FrameTooLarge, encode_frame, read_frame

log = logging.getLogger("imza_agent.native_host")

CHROME_MAX_TO_BROWSER = 1024 * 1024  # Chrome drops the host on a longer message
# Larger than any frame the daemon accepts (8 MiB by default, configurable) after the
# envelope's JSON escaping; anything longer is read and thrown away, not buffered.
MAX_FROM_BROWSER = 64 * 1024 * 1024
MAX_REPLY_CHARS = 64 * 1024 * 1024  # what the background agrees to reassemble
# A JSON string of n characters encodes to at most 6n bytes (\u00XX escapes), so parts of
# this many characters always fit in Chrome's limit with room for the envelope.
PART_CHARS = (CHROME_MAX_TO_BROWSER - 1024) // 6

ToBrowser = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(eq=False)
class _Link:
    port: int | str
    origin: str
    outbox: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


class Relay:
    """Page connections (``port`` ids chosen by the background) ↔ daemon connections."""

    def __init__(self, to_browser: ToBrowser, socket_path: Path,
                 ensure_daemon: Callable[[], Awaitable[None]] | None = None, *,
                 part_chars: int = PART_CHARS, max_reply_chars: int = MAX_REPLY_CHARS,
                 max_frame_bytes: int = MAX_FROM_BROWSER) -> None:
        self.to_browser = to_browser
        self.socket_path = socket_path
        self.ensure_daemon = ensure_daemon
        self.part_chars = part_chars
        self.max_reply_chars = max_reply_chars
        self.max_frame_bytes = max_frame_bytes
        self.links: dict[int | str, _Link] = {}

    async def handle(self, message: Any) -> None:
        """One message from the background. Malformed ones are dropped: the only writer
        is our own extension, so a bad message is a bug, not something to answer."""
        if not isinstance(message, dict):
            return
        port = _valid_port(message.get("port"))
        if port is None:
            return
        kind = message.get("type")
        if kind == "open":
            origin = message.get("origin")
            if port in self.links or not isinstance(origin, str):
                return
            link = self.links[port] = _Link(port, origin)
            link.task = asyncio.create_task(self._run(link))
        elif kind == "message":
            data = message.get("data")
            if port in self.links and isinstance(data, str):
                self.links[port].outbox.put_nowait(data)
        elif kind == "close" and port in self.links:
            self.links[port].outbox.put_nowait(None)

    async def close(self) -> None:
        tasks = [link.task for link in self.links.values() if link.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, link: _Link) -> None:
        reason, detail = "CLOSED", ""
        writer: asyncio.StreamWriter | None = None
        try:
            try:
                reader, writer = await self._connect()
            except OSError as exc:
                reason, detail = "AGENT_UNAVAILABLE", f"cannot reach the agent: {exc}"
                return
            writer.write(encode_frame(json.dumps({"origin": link.origin}).encode()))
            await writer.drain()
            answer = await read_frame(reader, 4096)
            verdict = json.loads(answer) if answer else {}
            if not (isinstance(verdict, dict) and verdict.get("ok") is True):
                reason = "REFUSED"
                detail = str(verdict.get("reason", "refused")) if isinstance(verdict, dict) \
                    else "refused"
                return
            await self.to_browser({"type": "opened", "port": link.port})
            pump_out = asyncio.create_task(self._pump_out(link, writer))
            try:
                await self._pump_in(link, reader)
            finally:
                pump_out.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump_out
        except (OSError, ValueError, FrameTooLarge, asyncio.IncompleteReadError) as exc:
            reason, detail = "AGENT_UNAVAILABLE", f"the agent connection failed: {exc}"
        finally:
            self.links.pop(link.port, None)
            if writer is not None:
                writer.close()
            with contextlib.suppress(Exception):
                await self.to_browser({"type": "closed", "port": link.port,
                                       "reason": reason, "detail": detail})

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # The platform's endpoint: the Unix socket, or Windows' per-user named pipe.
        endpoint = current_platform().relay()
        try:
            return await endpoint.connect(self.socket_path, 2**16)
        except OSError:
            if self.ensure_daemon is None:
                raise
        await self.ensure_daemon()
        return await endpoint.connect(self.socket_path, 2**16)

    async def _pump_out(self, link: _Link, writer: asyncio.StreamWriter) -> None:
        """Page → daemon, in order; None (the page closed) ends the daemon connection."""
        while True:
            data = await link.outbox.get()
            if data is None:
                writer.write_eof()
                return
            writer.write(encode_frame(data.encode("utf-8")))
            await writer.drain()

    async def _pump_in(self, link: _Link, reader: asyncio.StreamReader) -> None:
        """Daemon → page until the daemon (or the page, via write_eof) ends it."""
        while True:
            header = await _read_header(reader)
            if header is None:
                return
            if header > self.max_reply_chars * 4:  # more bytes than any allowed reply
                prefix = await discard_bytes(reader, header)
                await self._too_large(link, prefix)
                continue
            text = (await reader.readexactly(header)).decode("utf-8")
            if len(text) > self.max_reply_chars:
                await self._too_large(link, text[:4096])
                continue
            await self._send_text(link, text)

    async def _send_text(self, link: _Link, text: str) -> None:
        n = self.part_chars
        parts = [text[i:i + n] for i in range(0, len(text), n)] or [""]
        for part in parts[:-1]:
            await self.to_browser({"type": "part", "port": link.port, "data": part})
        await self.to_browser({"type": "message", "port": link.port, "data": parts[-1]})

    async def _too_large(self, link: _Link, prefix: str) -> None:
        log.warning("a reply for %s was too large to relay to the browser", link.origin)
        await self.to_browser({"type": "message", "port": link.port, "data":
                               jsonrpc.error_frame(_reply_id(prefix), TooLarge().to_wire())})


_ID_RE = re.compile(r'"id"\s*:\s*("(?:[^"\\]|\\.){0,256}"|-?\d{1,16})')


def _reply_id(prefix: str) -> str | int | None:
    """The id of a reply known only by its start (the daemon writes ``id`` early)."""
    match = _ID_RE.search(prefix)
    if match is None:
        return None
    try:
        value = json.loads(match.group(1))
    except ValueError:
        return None
    return value if isinstance(value, str | int) else None


async def _read_header(reader: asyncio.StreamReader) -> int | None:
    try:
        raw = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    (size,) = HEADER.unpack(raw)
    return int(size)


async def discard_bytes(reader: asyncio.StreamReader, size: int) -> str:
    """Read and drop ``size`` bytes; return the start as text (to find the reply's id)."""
    prefix = b""
    left = size
    while left:
        chunk = await reader.readexactly(min(left, 1 << 16))
        if len(prefix) < 4096:
            prefix += chunk[: 4096 - len(prefix)]
        left -= len(chunk)
    return prefix.decode("utf-8", errors="replace")


def _valid_port(port: object) -> int | str | None:
    """The background's id for a page connection, or None when it is not one."""
    if isinstance(port, bool):
        return None
    if isinstance(port, int):
        return port if 0 <= port < 2**53 else None
    return port if isinstance(port, str) and 0 < len(port) <= 64 else None
