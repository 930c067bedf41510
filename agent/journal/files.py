"""The journal's files: the current one, the rotated ones, the head; all mode 0600.

``journal.jsonl`` is written; at the size cap it becomes ``journal.jsonl.1`` (older ones
shift to ``.2`` … and the one past ``keep_files`` is deleted).  ``journal.jsonl.head``
holds the first kept and the last written sequence number and the last line's hash.
Every file is created by ``os.open(..., 0o600)``, never chmod-ed afterwards, so there is
no moment in which another user could open it.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from agent.journal.lines import GENESIS

PRIVATE = 0o600


@dataclass(frozen=True)
class Head:
    """Where the chain stands: the first kept entry, the last one and its hash."""

    first: int
    seq: int
    hash: str

    def to_json(self) -> str:
        return json.dumps({"first": self.first, "seq": self.seq, "hash": self.hash},
                          sort_keys=True)

    @staticmethod
    def from_json(text: str | bytes | None) -> Head | None:
        """``None`` for a missing or damaged record (verify says which)."""
        if text is None:
            return None
        try:
            data = json.loads(text)
            seq = int(data["seq"])
            # Heads written before rotation existed have no "first": the chain began at 1.
            first = int(data.get("first", 1))
            line_hash = data["hash"]
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError):
            return None
        if not isinstance(line_hash, str) or seq < 0 or first < 1:
            return None
        return Head(first, seq, line_hash)


EMPTY = Head(1, 0, GENESIS)


def private_dir(path: Path) -> None:
    """The journal's directory, created 0700 if the journal is the one creating it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)


def tighten(path: Path) -> None:
    """Files written by older versions were 0644 (umask): narrow them once, at open."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if mode & 0o077:
        path.chmod(mode & 0o700)


def append_bytes(path: Path, data: bytes) -> int:
    """Appends ``data`` and returns the file's size afterwards."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE)
    try:
        os.write(fd, data)
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def write_head(path: Path, head: Head) -> None:
    # Fixed width, overwritten in place: a rename or truncate per signature would make
    # ext4 flush to disk each time (measured: 1-2 ms per request, see performance.md).
    text = json.dumps({"first": f"{head.first:020d}", "seq": f"{head.seq:020d}",
                       "hash": head.hash}).encode("ascii")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE)
    try:
        if os.fstat(fd).st_size != len(text):  # an older, shorter format: rewrite once
            os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)  # not os.pwrite: Windows has none
        os.write(fd, text)
    finally:
        os.close(fd)


def read_head(path: Path) -> Head | None:
    try:
        return Head.from_json(path.read_bytes())
    except FileNotFoundError:
        return None


def head_path(path: Path) -> Path:
    return path.with_name(path.name + ".head")


def rotated(path: Path, number: int) -> Path:
    return path.with_name(f"{path.name}.{number}")


def kept_files(path: Path) -> list[Path]:
    """The journal's files, oldest first: ``journal.jsonl.N`` … ``.1``, ``journal.jsonl``."""
    pattern = re.compile(re.escape(path.name) + r"\.([1-9][0-9]{0,5})")
    numbers = []
    if path.parent.is_dir():
        for entry in path.parent.iterdir():
            match = pattern.fullmatch(entry.name)
            if match:
                numbers.append(int(match.group(1)))
    files = [rotated(path, n) for n in sorted(numbers, reverse=True)]
    return [*files, path] if path.exists() else files


def rotate(path: Path, keep_files: int) -> None:
    """``journal.jsonl`` → ``.1``, ``.1`` → ``.2`` …; the one past ``keep_files`` goes."""
    numbers = sorted((int(p.name.rsplit(".", 1)[1]) for p in kept_files(path) if p != path),
                     reverse=True)
    for number in numbers:
        if number >= keep_files:
            rotated(path, number).unlink(missing_ok=True)
        else:
            os.replace(rotated(path, number), rotated(path, number + 1))
    if keep_files > 0:
        os.replace(path, rotated(path, 1))
    else:
        path.unlink(missing_ok=True)


def first_seq(path: Path) -> int | None:
    """The sequence number of a file's first line, if it has a readable one."""
    try:
        with path.open("rb") as source:
            line = source.readline(1 << 20)
        value = json.loads(line)["seq"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
