"""The signing journal: one JSON line per signature or login, hash-chained.

Each line carries ``prev`` (the previous line's ``hash``) and its own ``hash`` over its
canonical JSON without that field, so removing, reordering or editing a line breaks the
chain.  ``journal.head`` holds the last line's sequence number and hash, so cutting lines
off the end is seen too.  This is tamper *evidence* against accidents and casual edits; a
local attacker who rewrites the whole file and its head is out of scope (they own the
account the agent runs as).

Never written: a PIN, a password, document content.  Only digests and fingerprints.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypedDict

GENESIS = "0" * 64


class JournalEntry(TypedDict):
    """One line of the journal, with the wire's key names."""

    seq: int
    time: str  # ISO 8601, UTC, milliseconds
    origin: str
    method: str
    certificate: str | None  # SHA-256 of the certificate, hex
    digestAlgorithm: str | None
    digest: str | None  # hex
    count: int
    result: str  # "ok" or the error reason
    prev: str  # the previous line's hash (GENESIS for the first)
    hash: str  # over the line's canonical JSON without this field


def _line_hash(entry: Mapping[str, object]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class JournalProblem:
    line: int  # 1-based line number in the file; 0 for the head file
    problem: str


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.head_path = path.with_name(path.name + ".head")
        self._seq, self._prev = self._read_head()

    def _read_head(self) -> tuple[int, str]:
        try:
            head = json.loads(self.head_path.read_text(encoding="utf-8"))
            return int(head["seq"]), str(head["hash"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return 0, GENESIS

    def append(self, *, origin: str, method: str, certificate_sha256: str | None,
               digest_algorithm: str | None, digest_hex: str | None, result: str,
               count: int = 1) -> JournalEntry:
        entry: JournalEntry = {
            "seq": self._seq + 1,
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "origin": origin,
            "method": method,
            "certificate": certificate_sha256,
            "digestAlgorithm": digest_algorithm,
            "digest": digest_hex,
            "count": count,
            "result": result,
            "prev": self._prev,
            "hash": "",  # not part of what it hashes
        }
        entry["hash"] = _line_hash(entry)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._write_head(entry["seq"], entry["hash"])
        self._seq, self._prev = entry["seq"], entry["hash"]
        return entry

    def _write_head(self, seq: int, line_hash: str) -> None:
        # Fixed width, overwritten in place: a rename or truncate per signature would make
        # ext4 flush to disk each time (measured: 1-2 ms per request, see performance.md).
        text = json.dumps({"seq": f"{seq:020d}", "hash": line_hash}).encode("ascii")
        mode = "r+b" if self.head_path.exists() else "wb"
        with self.head_path.open(mode) as out:
            out.write(text)


def verify(path: Path) -> list[JournalProblem]:
    """Every break in the chain, or an empty list when the journal is intact."""
    problems: list[JournalProblem] = []
    prev, seq = GENESIS, 0
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    for number, text in enumerate(lines, start=1):
        try:
            entry: object = json.loads(text)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            problems.append(JournalProblem(number, "not a JSON object"))
            continue
        if entry.get("hash") != _line_hash(entry):
            problems.append(JournalProblem(number, "edited: its hash does not match"))
        if entry.get("prev") != prev:
            problems.append(JournalProblem(
                number, "chain broken: a line before it was removed, reordered or edited"))
        line_seq = entry.get("seq")
        if line_seq != seq + 1:
            problems.append(JournalProblem(number, f"sequence jumps from {seq} to "
                                                   f"{line_seq}"))
        # A line whose seq is not a number still takes the next place in the chain.
        prev = str(entry.get("hash"))
        seq = line_seq if isinstance(line_seq, int) else seq + 1
    head_seq, head_hash = Journal(path)._read_head()
    if (head_seq, head_hash) != (seq, prev) and (head_seq, lines) != (0, []):
        problems.append(JournalProblem(
            0, f"the journal ends at line {seq} but was last written at line {head_seq}: "
               "lines were cut off the end or the head file was changed"))
    return problems


def main(action: str) -> int:
    from agent.paths import data_dir

    path = data_dir() / "journal.jsonl"
    if action == "show":
        if path.exists():
            sys.stdout.write(path.read_text(encoding="utf-8"))
        return 0
    problems = verify(path)
    if not problems:
        count = len(path.read_text(encoding="utf-8").splitlines()) if path.exists() else 0
        print(f"journal intact: {count} entries ({path})")
        return 0
    for p in problems:
        where = "head" if p.line == 0 else f"line {p.line}"
        print(f"{where}: {p.problem}")
    return 1
