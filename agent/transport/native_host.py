"""`imza-agent native-host`: the browser extension's native messaging host.

The browser starts this process when the extension's background connects to it and talks
to it over stdin/stdout (native messaging: a 4-byte length in native byte order, then UTF-8
JSON). Each page connection is relayed to the running daemon over its local socket
(``agent/transport/native_relay.py``), and the daemon is started when it is not running
(``agent/daemon/launcher.py``), so the user always sees the same agent and the same
dialogs. Registering the host with the browsers is ``agent/platform/native_messaging.py``.

The host's life is the pipe's: end of input ends it with status 0, also when the input
stops in the middle of a message (a length prefix cut short, or fewer bytes than it
announced). That only means the browser or the extension went away mid-write; there is
nobody left to answer, so it is one warning line on stderr, not a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import struct
import sys
from pathlib import Path
from typing import Any

from agent.daemon.launcher import make_daemon_starter
from agent.paths import data_dir
from agent.transport.local import SOCKET_NAME
from agent.transport.native_relay import (
    CHROME_MAX_TO_BROWSER,
    MAX_FROM_BROWSER,
    Relay,
    discard_bytes,
)

log = logging.getLogger("imza_agent.native_host")

NATIVE_HEADER = struct.Struct("=I")  # native byte order, as the browsers write it


async def _stdio() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**16)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                 os.fdopen(sys.stdin.fileno(), "rb", buffering=0,
                                           closefd=False))
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin,
        os.fdopen(sys.stdout.fileno(), "wb", buffering=0, closefd=False))
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return reader, writer


def encode_native(message: dict[str, Any]) -> bytes:
    payload = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(payload) > CHROME_MAX_TO_BROWSER:
        raise ValueError("native message over Chrome's 1 MiB limit")
    return NATIVE_HEADER.pack(len(payload)) + payload


async def serve(stdin: asyncio.StreamReader, stdout: asyncio.StreamWriter,
                socket_path: Path, config_path: Path | None) -> None:
    send_lock = asyncio.Lock()

    async def to_browser(message: dict[str, Any]) -> None:
        async with send_lock:
            stdout.write(encode_native(message))
            await stdout.drain()

    relay = Relay(to_browser, socket_path, make_daemon_starter(socket_path, config_path))
    try:
        while True:
            try:
                raw = await stdin.readexactly(NATIVE_HEADER.size)
            except asyncio.IncompleteReadError as cut:
                if cut.partial:  # else: the browser closed the pipe between messages
                    _log_truncated(len(cut.partial), NATIVE_HEADER.size, "length prefix")
                return
            (size,) = NATIVE_HEADER.unpack(raw)
            try:
                if size > MAX_FROM_BROWSER:
                    log.warning("dropped a %d-byte message from the browser", size)
                    await discard_bytes(stdin, size)
                    continue
                body = await stdin.readexactly(size)
            except asyncio.IncompleteReadError as cut:
                # discard_bytes reads in chunks: its count is of the last chunk only.
                _log_truncated(None if size > MAX_FROM_BROWSER else len(cut.partial), size,
                               "message")
                return
            try:
                message = json.loads(body)
            except ValueError:
                log.warning("dropped a message from the browser that is not JSON")
                continue
            await relay.handle(message)
    finally:
        await relay.close()


def _log_truncated(got: int | None, expected: int, what: str) -> None:
    received = f"fewer than {expected}" if got is None else f"{got} of {expected}"
    log.warning("input ended inside a %s (%s bytes): the browser closed the pipe; exiting",
                what, received)


def run_host(config_path: Path | None) -> int:
    # Logs go to stderr (the browser's log); stdout belongs to the protocol.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="imza-agent native-host: %(levelname)s %(message)s")

    async def main() -> None:
        stdin, stdout = await _stdio()
        await serve(stdin, stdout, data_dir() / SOCKET_NAME, config_path)

    asyncio.run(main())
    return 0
