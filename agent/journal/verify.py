"""Checking the journal: every kept file, line by line, against the keys and the records.

A problem is reported with its file and line and checking goes on; nothing in a file makes
verify crash (bytes that are not UTF-8, JSON that is not an object or nests too deep, a
``seq`` that is not an integer).  The records (the head file, and the head record in the
keyring or key file) are what catch a journal that was deleted, cut at the end or rewritten
as a whole: the lines alone cannot show what is no longer there.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path

from agent.i18n import N_, _
from agent.journal.files import Head, head_path, kept_files, read_head, rotated
from agent.journal.keys import VerifierKeys, verifier_keys
from agent.journal.lines import GENESIS, keyed_hash, plain_hash


@dataclass(frozen=True)
class JournalProblem:
    line: int  # 1-based line number in ``file``; 0 for what is not one line
    problem: str  # English, as ``--json`` reports it
    file: str = ""  # the file's name; "" when the problem is not in a file
    # The message before its values went in, so a person reads it in the CLI's language.
    template: str = field(default="", compare=False)
    params: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def shown(self) -> str:
        """The problem in the current language (``problem`` when it has no template)."""
        if not self.template:
            return self.problem
        values = {k: _(_WORDS[v]) if v in _WORDS else v for k, v in self.params}
        return _(self.template).format(**values)


# Words that go into a problem as values: where a head record is kept (agent/journal/keys.py
# names the stores in English), and the seq of nothing (``_shown``).
_WORDS = {"the head file": N_("the head file"), "the keyring": N_("the keyring"),
          "the key file": N_("the key file"), "nothing": N_("nothing")}


def _problem(line: int, template: str, file: str = "", /, **params: object) -> JournalProblem:
    values = {k: str(v) for k, v in params.items()}
    return JournalProblem(line, template.format(**values), file, template,
                          tuple(values.items()))


@dataclass
class JournalReport:
    path: Path
    files: list[str] = field(default_factory=list)  # oldest first
    entries: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    problems: list[JournalProblem] = field(default_factory=list)
    key_storage: str = "none"  # "keyring", "file" or "none"
    notes: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return {"path": str(self.path), "intact": self.intact, "entries": self.entries,
                "first_seq": self.first_seq, "last_seq": self.last_seq, "files": self.files,
                "key_storage": self.key_storage, "notes": self.notes,
                "problems": [{"file": p.file, "line": p.line, "problem": p.problem}
                             for p in self.problems]}


def verify(path: Path) -> list[JournalProblem]:
    """Every problem found, or an empty list when the journal is intact."""
    return verify_report(path).problems


def verify_report(path: Path, keys: VerifierKeys | None = None, *,
                  keyring_timeout: float = 10.0) -> JournalReport:
    keys = keys if keys is not None else verifier_keys(path, keyring_timeout)
    report = JournalReport(path, key_storage=keys.storage, notes=list(keys.notes))
    files = kept_files(path)
    report.files = [f.name for f in files]
    _missing_numbers(path, files, report)
    chain = _Chain(keys.keys, report)
    for file in files:
        chain.read(file)
    for kid, count in chain.unknown.items():
        if count > 1:
            report.problems.append(_problem(
                0, N_("{count} more lines made with key {kid} cannot be checked"),
                count=f"{count - 1:,}", kid=repr(kid)))
    records: list[tuple[str, Head | None, bool]] = [(w, r, False) for w, r in keys.records]
    head_file = head_path(path)
    if head_file.exists():
        records.insert(0, ("the head file", read_head(head_file), True))
    elif chain.last_seq is not None:
        report.problems.append(_problem(0, N_("the head file is missing"), head_file.name))
    for where, record, exact in records:
        _check_record(chain, where, record, exact, report)
    if chain.start_seq is not None and chain.start_seq != 1 and not records:
        report.problems.append(_problem(
            0, N_("the journal starts at seq {seq} and nothing records a rotation: "
                  "earlier lines are missing"), seq=chain.start_seq))
    report.first_seq, report.last_seq = chain.start_seq, chain.last_seq
    return report


def _missing_numbers(path: Path, files: list[Path], report: JournalReport) -> None:
    numbers = {int(f.name.rsplit(".", 1)[1]) for f in files if f != path}
    for number in range(1, max(numbers, default=0)):
        if number not in numbers:
            report.problems.append(_problem(
                0, N_("a rotated file between the kept ones is missing"),
                rotated(path, number).name))


class _Chain:
    """Walks the lines of all files in order, oldest first."""

    def __init__(self, keys: dict[str, bytes], report: JournalReport) -> None:
        self.keys = keys
        self.report = report
        self.start_seq: int | None = None
        self.last_seq: int | None = None
        self.hashes: dict[int, str] = {}  # seq → hash, to compare with the records
        self.prev: str | None = None  # None: unknown (the line before was unreadable)
        self.keyed = False  # a keyed line was seen: plain lines may no longer follow
        self.started = False
        self.unknown: dict[str, int] = {}  # kid without a key → lines made with it

    def problem(self, file: Path, line: int, text: str, **params: object) -> None:
        self.report.problems.append(_problem(line, text, file.name, **params))

    def read(self, file: Path) -> None:
        try:
            data = file.read_bytes()
        except OSError as exc:
            self.problem(file, 0, N_("cannot be read ({reason})"), reason=type(exc).__name__)
            return
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        for number, raw in enumerate(lines, start=1):
            self.line(file, number, raw)

    def line(self, file: Path, number: int, raw: bytes) -> None:
        self.report.entries += 1
        entry = _parse(raw)
        if isinstance(entry, str):
            self.problem(file, number, entry)
            self._advance(None, None)
            return
        seq = entry.get("seq")
        seq_ok = isinstance(seq, int) and not isinstance(seq, bool)
        expected = (self.last_seq or 0) + 1
        if not self.started:
            self.started = True
            self.start_seq = seq if seq_ok and isinstance(seq, int) else 1
            expected = self.start_seq
            # The very first entry starts the chain; a later start follows a rotation and
            # is checked against the records.
            self.prev = GENESIS if self.start_seq == 1 else None
        if not seq_ok:
            self.problem(file, number, N_("sequence jumps from {before} to {after}: seq is not "
                                          "an integer"),
                         before=_shown(expected - 1), after=_shown(seq))
        elif seq != expected:
            self.problem(file, number, N_("sequence jumps from {before} to {after}"),
                         before=_shown(expected - 1), after=_shown(seq))
        self._check_hash(file, number, entry)
        if self.prev is not None and entry.get("prev") != self.prev:
            self.problem(file, number,
                         N_("chain broken: a line before it was removed, reordered or edited"))
        line_hash = entry.get("hash")
        self._advance(seq if seq_ok and isinstance(seq, int) else expected,
                      line_hash if isinstance(line_hash, str) else None)

    def _check_hash(self, file: Path, number: int, entry: dict[str, object]) -> None:
        line_hash = entry.get("hash")
        if not isinstance(line_hash, str):
            self.problem(file, number, N_("edited: it has no hash"))
            return
        if "kid" in entry:
            self.keyed = True
            kid = entry["kid"]
            key = self.keys.get(kid) if isinstance(kid, str) else None
            if key is None:
                name = str(kid)[:16]
                self.unknown[name] = self.unknown.get(name, 0) + 1
                if self.unknown[name] == 1:  # one line named; the others counted at the end
                    self.problem(file, number, N_("made with key {kid}, which is not in the "
                                                  "keyring or key file here: cannot be checked"),
                                 kid=repr(name))
            elif not hmac.compare_digest(line_hash, keyed_hash(key, entry)):
                self.problem(file, number, N_("edited: its HMAC does not match"))
        elif self.keyed:
            self.problem(file, number, N_("a line without the key's HMAC after keyed lines: "
                                          "inserted or re-chained"))
        elif line_hash != plain_hash(entry):
            self.problem(file, number, N_("edited: its hash does not match"))

    def _advance(self, seq: int | None, line_hash: str | None) -> None:
        if not self.started:  # an unreadable first line: the chain starts at 1
            self.started, self.start_seq = True, 1
            seq = 1
        seq = seq if seq is not None else (self.last_seq or 0) + 1
        self.last_seq = seq
        self.prev = line_hash
        if line_hash is not None:
            self.hashes[seq] = line_hash
        else:
            self.hashes.pop(seq, None)


def _shown(value: object) -> str:
    """A value from the file, short enough for one message line."""
    text = "nothing" if value is None else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _parse(raw: bytes) -> dict[str, object] | str:
    """The line as an object, or what is wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return N_("unreadable: not UTF-8 text")
    try:
        entry = json.loads(text)
    except (ValueError, RecursionError):
        return N_("unreadable: not JSON (cut off while written, or edited)")
    if not isinstance(entry, dict):
        return N_("unreadable: not a JSON object")
    return entry


def _check_record(chain: _Chain, where: str, record: Head | None, exact: bool,
                  report: JournalReport) -> None:
    def problem(text: str, **params: object) -> None:
        report.problems.append(_problem(0, text, where=where, **params))

    if record is None:
        problem(N_("the head record in {where} is damaged"))
        return
    if chain.last_seq is None:
        if record.seq > 0:
            count = record.seq - record.first + 1
            problem(N_("journal missing although {where} says {count} entries exist "
                       "(up to seq {seq})"), count=f"{count:,}", seq=record.seq)
        return
    start = chain.start_seq or 1
    if record.first < start:
        problem(N_("entries from seq {first} to {last} are missing: {where} says "
                   "the journal starts at seq {first}"), first=record.first, last=start - 1)
    if record.seq > chain.last_seq:
        problem(N_("the journal ends at seq {last} but {where} says seq {seq} "
                   "was written: lines were cut off the end"),
                last=chain.last_seq, seq=record.seq)
    elif record.seq >= start and chain.hashes.get(record.seq) != record.hash:
        problem(N_("the line at seq {seq} is not the one {where} recorded: "
                   "the journal was rewritten"), seq=record.seq)
    elif exact and record.seq < chain.last_seq:
        problem(N_("{where} says the journal ends at seq {seq} but it goes on to seq "
                   "{last}: lines were added without the agent"),
                seq=record.seq, last=chain.last_seq)
