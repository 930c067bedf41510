"""The messages between the daemon and the UI process (docs/ui-process.md), both ends.

Frames are ``agent/pipe_frames.py``'s: a 4-byte length and a UTF-8 JSON object, at most
``[ui] ui_frame_bytes``.  Stdlib only: the UI process imports this before Qt, and the
daemon without Qt.

Secrets (PIN, PUK) cross once, UI → daemon, as base64 of their UTF-8 bytes; the helpers
here decode them straight into a ``bytearray`` the caller wipes, so no immutable copy of
the decoded bytes is ever made on this side.
"""

from __future__ import annotations

import base64
from typing import Any

from agent.pipe_frames import HEADER_SIZE, FrameError, decode_json_object, encode_json, frame_length

__all__ = [
    "ACTIONS",
    "DAEMON_OPS",
    "DIALOG_KINDS",
    "UI_OPS",
    "FrameBuffer",
    "FrameError",
    "b64",
    "encode",
    "secret_b64",
    "secret_from_b64",
    "unb64",
    "wipe",
]

# What each side may send; anything else from the UI process means it is broken.
DAEMON_OPS = frozenset({"hello", "dialog", "close", "tray", "language", "ping", "quit"})
UI_OPS = frozenset({"ready", "answer", "pong", "action"})
DIALOG_KINDS = frozenset({"consent", "pick", "pin", "pin_locked", "pin_change",
                          "pin_unblock", "message", "extend"})
ACTIONS = frozenset({"revoke", "language", "autostart", "repair_trust", "open_journal",
                     "pin_change", "pin_unblock", "refresh", "quit"})

HEADER_BYTES = HEADER_SIZE


def encode(message: dict[str, Any], limit: int) -> bytes:
    """One frame; ``FrameError`` when it would be over ``limit``."""
    return encode_json(message, limit)


class FrameBuffer:
    """Frames out of a byte stream that arrives in arbitrary pieces (a non-blocking read).

    The announced length is checked against ``limit`` before the body is waited for, so a
    broken peer cannot make this side hold more than one frame's worth."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._data = bytearray()
        self._need: int | None = None  # body length of the frame being read

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        self._data += chunk
        messages: list[dict[str, Any]] = []
        while True:
            if self._need is None:
                if len(self._data) < HEADER_SIZE:
                    return messages
                self._need = frame_length(bytes(self._data[:HEADER_SIZE]), self.limit)
                del self._data[:HEADER_SIZE]
            if len(self._data) < self._need:
                return messages
            body = bytes(self._data[:self._need])
            del self._data[:self._need]
            self._need = None
            messages.append(decode_json_object(body))

    @property
    def pending(self) -> bool:
        """Part of a frame is buffered (the stream ended inside a frame if it ends now)."""
        return bool(self._data) or self._need is not None


# --- bytes as text ---------------------------------------------------------------------------

def b64(data: bytes | bytearray) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: object) -> bytes:
    """Decode a base64 field; ``FrameError`` when it is not one."""
    if not isinstance(text, str):
        raise FrameError("a base64 field is not a string")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise FrameError("a base64 field is not base64") from exc


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_VALUES = {c: i for i, c in enumerate(_ALPHABET)}


def secret_b64(secret: bytearray) -> str:
    """A secret's bytes as base64 text for the answer frame (the UI side; the caller
    wipes ``secret``, the str cannot be wiped and is dropped with the frame)."""
    return base64.b64encode(secret).decode("ascii")


def secret_from_b64(text: object) -> bytearray:
    """Decode a secret into a fresh bytearray, bit by bit, without an intermediate
    ``bytes`` object; the caller wipes the result (``wipe``) or hands it to ``Secret``."""
    if not isinstance(text, str) or len(text) % 4:
        raise FrameError("a secret field is not base64")
    body = text.rstrip("=")
    if len(text) - len(body) > 2:
        raise FrameError("a secret field is not base64")
    out = bytearray()
    acc = bits = 0
    try:
        for char in body:
            acc = ((acc << 6) | _VALUES[char]) & 0xFFFFFF
            bits += 6
            if bits >= 8:
                bits -= 8
                out.append((acc >> bits) & 0xFF)
    except KeyError:
        wipe(out)
        raise FrameError("a secret field is not base64") from None
    acc = 0
    return out


def wipe(buffer: bytearray) -> None:
    buffer[:] = bytes(len(buffer))
    buffer.clear()
