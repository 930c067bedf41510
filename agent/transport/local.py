"""The local transport: a Unix domain socket in the user data dir, for the native
messaging host (`imza-agent native-host`) that relays the browser extension.

Only this user can reach the socket (the directory is 0700 and the socket 0600), so the
daemon believes the origin the native host names in the handshake: the host got it from
the extension's background, which computed it from the browser's ``sender.url``. The
origin then passes the admission every transport shares (``agent/transport/admission.py``:
policy and the connection limits, counted together with the WebSocket's), frames pass the
same session limits (``agent/transport/session.py``), and the dispatcher sees transport
``"extension"``.

Framing, both directions: a 4-byte big-endian length, then that many bytes of UTF-8
JSON. One socket connection carries one page connection:

* first frame from the host: ``{"origin": "https://portal.example"}``;
* first frame from the daemon: ``{"ok": true}`` or ``{"ok": false, "reason": "…"}``
  (then the daemon closes);
* afterwards every frame is one JSON-RPC text, exactly as a WebSocket text frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import struct
from pathlib import Path

from agent.config import ServerConfig
from agent.errors import TooLarge
from agent.platform import current as current_platform
from agent.protocol import jsonrpc
from agent.protocol.dispatch import CallContext, Dispatcher
from agent.transport.admission import Admission, Admitted, Attempt
from agent.transport.session import FrameSession, OversizedFrame, SessionLimits

log = logging.getLogger("imza_agent.transport")

SOCKET_NAME = "agent.sock"
HEADER = struct.Struct(">I")
HANDSHAKE_MAX_BYTES = 4096
HANDSHAKE_TIMEOUT = 10.0
# sun_path is 108 bytes on Linux; a longer path cannot be bound.
MAX_SOCKET_PATH = 107


class FrameTooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(f"frame of {size} bytes is over the limit")
        self.size = size


async def read_frame(reader: asyncio.StreamReader, limit: int) -> bytes | None:
    """One frame's payload, or None at a clean end of stream."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ConnectionError("stream ended inside a frame header") from None
        return None
    (size,) = HEADER.unpack(header)
    if size > limit:
        raise FrameTooLarge(size)
    return await reader.readexactly(size)


def encode_frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


class LocalSocketTransport:
    """Serves the dispatcher on ``<data_dir>/agent.sock`` for the native messaging host.

    ``admission`` and ``limits`` are the WebSocket transport's objects, so an origin's
    limits hold across transports rather than doubling with each one."""

    def __init__(self, dispatcher: Dispatcher, settings: ServerConfig,
                 path: Path, admission: Admission, limits: SessionLimits) -> None:
        self.dispatcher = dispatcher
        self.settings = settings
        self.path = path
        self.admission = admission
        self.limits = limits
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str | None:
        """The socket's path while listening (for runtime.json), else None."""
        return str(self.path) if self._server is not None else None

    async def start(self) -> bool:
        """Listen; on failure log why and return False: the WebSocket transports still
        serve, so a too-long data dir path or a second agent must not stop the daemon."""
        try:
            await self._listen()
        except OSError as exc:
            log.warning("the browser extension transport is off: %s", exc)
            return False
        log.info("listening on %s (browser extension)", self.path)
        return True

    async def _listen(self) -> None:
        if len(os.fsencode(self.path)) > MAX_SOCKET_PATH:
            raise OSError(f"socket path too long for a Unix socket: {self.path}")
        os.chmod(self.path.parent, 0o700)
        # A stale socket from a crashed run: connecting to it fails, so it is safe to
        # replace. A live one belongs to another agent of this user: leave it alone.
        if self.path.exists() or self.path.is_symlink():
            if await _is_alive(self.path):
                raise OSError(f"another agent is serving {self.path}")
            self.path.unlink()
        # The platform's endpoint: a 0600 Unix socket, or Windows' per-user named pipe.
        self._server = await current_platform().relay().listen(self.path, self._serve, 2**16)

    async def close(self) -> None:
        if self._server is None:
            return  # never listened: the path, if any, is not ours to remove
        self._server.close()
        for writer in list(self._open):
            writer.close()
        with contextlib.suppress(Exception):
            await self._server.wait_closed()
        self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    # --- one connection ------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            admitted = await self._handshake(reader, writer)
            if admitted is not None:
                try:
                    await self._messages(admitted.origin, reader, writer)
                finally:
                    admitted.release()
        except (ConnectionError, asyncio.IncompleteReadError, FrameTooLarge) as exc:
            log.info("extension connection ended: %s", type(exc).__name__)
        finally:
            self._open.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _handshake(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> Admitted | None:
        """The admitted connection (its slot taken), or None after a refusal."""
        try:
            raw = await asyncio.wait_for(read_frame(reader, HANDSHAKE_MAX_BYTES),
                                         HANDSHAKE_TIMEOUT)
        except (TimeoutError, FrameTooLarge):
            return None
        if raw is None:
            return None
        verdict = self.admission.admit(Attempt("extension", _hello_origin(raw)))
        if not isinstance(verdict, Admitted):
            writer.write(encode_frame(json.dumps({"ok": False,
                                                  "reason": verdict.reason}).encode()))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            return None
        try:
            writer.write(encode_frame(b'{"ok":true}'))
            await writer.drain()
        except BaseException:
            verdict.release()
            raise
        return verdict

    async def _messages(self, origin: str, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        send_lock = asyncio.Lock()

        async def send(text: str) -> None:
            async with send_lock:
                writer.write(encode_frame(text.encode("utf-8")))
                await writer.drain()

        ctx = CallContext(origin=origin, transport="extension",
                          connection_id=secrets.token_hex(6), send=send)
        session = FrameSession(self.dispatcher, ctx, send, self.limits, (ConnectionError,))
        try:
            while True:
                try:
                    # The limit of the moment: small until the origin holds a grant.
                    raw = await read_frame(reader, session.frame_limit)
                except FrameTooLarge:
                    # The frame cannot be read (hence no id): say why, then hang up, as a
                    # WebSocket closes on an oversized frame.
                    await session.send_quietly(jsonrpc.error_frame(None, TooLarge().to_wire()))
                    break
                if raw is None:
                    break
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    break  # not a text frame: as a binary WebSocket frame, close
                try:
                    await session.submit(text)
                except OversizedFrame:  # cannot happen: read_frame checked the same limit
                    break
        finally:
            await session.close()


def _hello_origin(raw: bytes) -> str | None:
    """The origin the host's first frame names; None for anything else (refused)."""
    try:
        hello = json.loads(raw)
    except ValueError:
        return None
    origin = hello.get("origin") if isinstance(hello, dict) else None
    return origin if isinstance(origin, str) else None


async def _is_alive(path: Path) -> bool:
    try:
        _, writer = await asyncio.open_unix_connection(str(path))
    except OSError:
        return False
    writer.close()
    return True
