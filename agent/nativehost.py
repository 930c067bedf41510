"""`imza-agent native-host`: the browser extension's native messaging host.

The browser starts this process when the extension's background connects to it and
talks to it over stdin/stdout (native messaging: a 4-byte length in native byte order,
then UTF-8 JSON). It relays each page connection to the running daemon over the local
socket (``agent/transport/local.py``), starting the daemon when it is not running, so the
user always sees the same agent and the same dialogs.

Messages from the background::

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

import argparse
import asyncio
import contextlib
import fcntl
import json
import logging
import os
import re
import shlex
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import TooLarge
from agent.paths import data_dir
from agent.protocol import jsonrpc
from agent.transport.local import (
    HEADER,
    SOCKET_NAME,
    FrameTooLarge,
    encode_frame,
    read_frame,
)

log = logging.getLogger("imza_agent.native_host")

HOST_NAME = "az.imza.agent"
DESCRIPTION = "imza-agent: e-signature with USB tokens and smart cards"
# The extension's ID in Chromium-family browsers, fixed by the "key" in its manifest
# (tests/e2e/test_browser.py checks the two agree), and its Firefox add-on ID.
CHROMIUM_EXTENSION_ID = "ajnfmipgaekhgddmadkchgoigmjfbhha"
FIREFOX_EXTENSION_ID = "imza-agent@imza.az"

NATIVE_HEADER = struct.Struct("=I")  # native byte order, as the browsers write it
CHROME_MAX_TO_BROWSER = 1024 * 1024  # Chrome drops the host on a longer message
# Larger than any frame the daemon accepts (8 MiB by default, configurable) after the
# envelope's JSON escaping; anything longer is read and thrown away, not buffered.
MAX_FROM_BROWSER = 64 * 1024 * 1024
MAX_REPLY_CHARS = 64 * 1024 * 1024  # what the background agrees to reassemble
# A JSON string of n characters encodes to at most 6n bytes (\u00XX escapes), so parts of
# this many characters always fit in Chrome's limit with room for the envelope.
PART_CHARS = (CHROME_MAX_TO_BROWSER - 1024) // 6
DAEMON_START_TIMEOUT = 30.0
# Environment variables a launcher keeps, so the browser-started host finds the same
# agent as the shell that installed it (tests, portable installs).
KEPT_ENV = ("IMZA_AGENT_HOME", "IMZA_AGENT_SYSTEM_POLICY", "SOFTHSM2_CONF")

ToBrowser = Callable[[dict[str, Any]], Awaitable[None]]


# --- the relay ---------------------------------------------------------------------------


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
        port = message.get("port")
        if not _valid_port(port):
            return
        kind = message.get("type")
        if kind == "open":
            origin = message.get("origin")
            if port in self.links or not isinstance(origin, str):
                return
            link = self.links[port] = _Link(port, origin)
            link.task = asyncio.create_task(self._run(link))
        elif kind == "message":
            link = self.links.get(port)
            data = message.get("data")
            if link is not None and isinstance(data, str):
                link.outbox.put_nowait(data)
        elif kind == "close":
            link = self.links.get(port)
            if link is not None:
                link.outbox.put_nowait(None)

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
        try:
            return await asyncio.open_unix_connection(str(self.socket_path), limit=2**16)
        except OSError:
            if self.ensure_daemon is None:
                raise
        await self.ensure_daemon()
        return await asyncio.open_unix_connection(str(self.socket_path), limit=2**16)

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
                prefix = await _discard(reader, header)
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
    return HEADER.unpack(raw)[0]


async def _discard(reader: asyncio.StreamReader, size: int) -> str:
    """Read and drop ``size`` bytes; return the start as text (to find the reply's id)."""
    prefix = b""
    left = size
    while left:
        chunk = await reader.readexactly(min(left, 1 << 16))
        if len(prefix) < 4096:
            prefix += chunk[: 4096 - len(prefix)]
        left -= len(chunk)
    return prefix.decode("utf-8", errors="replace")


def _valid_port(port: Any) -> bool:
    if isinstance(port, bool):
        return False
    if isinstance(port, int):
        return 0 <= port < 2**53
    return isinstance(port, str) and 0 < len(port) <= 64


# --- starting the daemon -----------------------------------------------------------------


def daemon_command(config_path: Path | None) -> list[str]:
    command = [sys.executable, "-m", "agent.cli"]
    if config_path is not None:
        command += ["--config", str(config_path)]
    return [*command, "run"]


def make_daemon_starter(socket_path: Path, config_path: Path | None,
                        timeout: float = DAEMON_START_TIMEOUT
                        ) -> Callable[[], Awaitable[None]]:
    """An idempotent "make sure the daemon runs": under a lock file, so two browsers
    starting their hosts at once start one daemon, not two."""
    lock = asyncio.Lock()

    async def ensure() -> None:
        async with lock:
            if await _socket_answers(socket_path):
                return
            await asyncio.to_thread(_start_and_wait, socket_path, config_path, timeout)

    return ensure


def _start_and_wait(socket_path: Path, config_path: Path | None, timeout: float) -> None:
    home = data_dir()
    with open(home / "daemon-start.lock", "a+b") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if _socket_answers_sync(socket_path):
            return
        log.info("starting the agent")
        with open(home / "daemon.log", "ab") as log_file:
            # Its own session: the daemon outlives this host (the browser kills the host
            # when the extension disconnects). stdout must not be the browser's pipe.
            subprocess.Popen(daemon_command(config_path), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=log_file,
                             start_new_session=True, close_fds=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _socket_answers_sync(socket_path):
                return
            time.sleep(0.05)
    raise OSError("the agent did not start in time (see daemon.log in its data dir)")


async def _socket_answers(path: Path) -> bool:
    return await asyncio.to_thread(_socket_answers_sync, path)


def _socket_answers_sync(path: Path) -> bool:
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


# --- stdin/stdout ------------------------------------------------------------------------


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
            except asyncio.IncompleteReadError:
                return  # the browser closed the pipe: the extension disconnected
            (size,) = NATIVE_HEADER.unpack(raw)
            if size > MAX_FROM_BROWSER:
                log.warning("dropped a %d-byte message from the browser", size)
                await _discard(stdin, size)
                continue
            body = await stdin.readexactly(size)
            try:
                message = json.loads(body)
            except ValueError:
                log.warning("dropped a message from the browser that is not JSON")
                continue
            await relay.handle(message)
    finally:
        await relay.close()


def run_host(config_path: Path | None) -> int:
    # Logs go to stderr (the browser's log); stdout belongs to the protocol.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="imza-agent native-host: %(levelname)s %(message)s")

    async def main() -> None:
        stdin, stdout = await _stdio()
        await serve(stdin, stdout, data_dir() / SOCKET_NAME, config_path)

    asyncio.run(main())
    return 0


# --- installing the host manifests -------------------------------------------------------


def manifest_dirs(home: Path) -> dict[str, Path]:
    """Per-user native messaging host directories (Linux and macOS)."""
    if sys.platform == "darwin":
        base = home / "Library" / "Application Support"
        return {"chrome": base / "Google/Chrome/NativeMessagingHosts",
                "chromium": base / "Chromium/NativeMessagingHosts",
                "edge": base / "Microsoft Edge/NativeMessagingHosts",
                "firefox": base / "Mozilla/NativeMessagingHosts"}
    config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    return {"chrome": config / "google-chrome/NativeMessagingHosts",
            "chromium": config / "chromium/NativeMessagingHosts",
            "edge": config / "microsoft-edge/NativeMessagingHosts",
            "firefox": home / ".mozilla/native-messaging-hosts"}


def host_manifest(browser: str, launcher: Path, extension_ids: Sequence[str]) -> dict[str, Any]:
    manifest: dict[str, Any] = {"name": HOST_NAME, "description": DESCRIPTION,
                                "path": str(launcher), "type": "stdio"}
    if browser == "firefox":
        manifest["allowed_extensions"] = list(extension_ids)
    else:
        manifest["allowed_origins"] = [f"chrome-extension://{i}/" for i in extension_ids]
    return manifest


def write_launcher(path: Path, config_path: Path | None) -> Path:
    """A script the browser can execute without arguments of ours: it runs this
    interpreter's `imza-agent native-host` with the environment it was installed with."""
    lines = ["#!/bin/sh"]
    for name in KEPT_ENV:
        value = os.environ.get(name)
        if value:
            lines.append(f"export {name}={shlex.quote(value)}")
    command = [sys.executable, "-m", "agent.cli"]
    if config_path is not None:
        command += ["--config", str(config_path.resolve())]
    lines.append(f'exec {shlex.join(command)} native-host "$@"')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def install(argv: Sequence[str], config_path: Path | None) -> int:
    parser = argparse.ArgumentParser(
        prog="imza-agent native-host install",
        description="Register the native messaging host for the browser extension.")
    parser.add_argument("--browser", action="append",
                        choices=["chrome", "chromium", "edge", "firefox"],
                        help="only these browsers (default: all)")
    parser.add_argument("--extension-id", action="append", default=[],
                        help="allowed Chromium extension ID (default: the published one)")
    parser.add_argument("--firefox-id", action="append", default=[],
                        help="allowed Firefox add-on ID (default: the published one)")
    parser.add_argument("--target-dir", type=Path,
                        help="write the Chromium-style manifest into this directory only "
                             "(e.g. <user-data-dir>/NativeMessagingHosts)")
    parser.add_argument("--print", dest="print_only", action="store_true",
                        help="print the manifests instead of writing them")
    args = parser.parse_args(argv)

    launcher = data_dir() / "native-host.sh"
    if not args.print_only:
        write_launcher(launcher, config_path)
    chromium_ids = args.extension_id or [CHROMIUM_EXTENSION_ID]
    firefox_ids = args.firefox_id or [FIREFOX_EXTENSION_ID]
    if args.target_dir is not None:
        targets = {"chromium": args.target_dir}
    else:
        dirs = manifest_dirs(Path.home())
        targets = {b: dirs[b] for b in (args.browser or dirs)}
    for browser, directory in targets.items():
        ids = firefox_ids if browser == "firefox" else chromium_ids
        text = json.dumps(host_manifest(browser, launcher, ids), indent=2) + "\n"
        if args.print_only:
            print(f"# {directory / (HOST_NAME + '.json')}\n{text}")
            continue
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{HOST_NAME}.json").write_text(text, encoding="utf-8")
        print(f"{browser}: {directory / (HOST_NAME + '.json')}")
    if sys.platform == "win32":  # pragma: no cover - the Windows installer's job
        print("On Windows the manifest is registered under HKCU\\Software\\Google\\Chrome\\"
              f"NativeMessagingHosts\\{HOST_NAME} by the installer.")
    return 0


def main(argv: Sequence[str], config_path: Path | None) -> int:
    """``argv`` after ``native-host``: ``install …``, or what the browser passes (the
    caller's origin for Chrome; manifest path and add-on ID for Firefox), ignored: the
    browser only starts hosts whose manifest allows the calling extension."""
    if argv and argv[0] == "install":
        return install(argv[1:], config_path)
    return run_host(config_path)
