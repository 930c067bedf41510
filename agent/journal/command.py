"""``imza-agent journal show|verify [--json]``; ``show`` is agent/commands/journal_show.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from agent.i18n import N_, _
from agent.journal.files import kept_files
from agent.journal.verify import JournalReport, verify_report


def journal_path() -> Path:
    from agent.paths import data_dir

    return data_dir() / "journal.jsonl"


def main(action: str, *, json_output: bool = False, path: Path | None = None,
         keyring_timeout: float = 10.0, since: str | None = None,
         origin: str | None = None) -> int:
    path = path or journal_path()
    if action == "show":
        from agent.commands.journal_show import show

        # kept_files: oldest first, so the entries run in order across rotated files.
        return show(kept_files(path), path.parent, json_output=json_output, since=since,
                    origin=origin, out=sys.stdout, err=sys.stderr)
    report = verify_report(path, keyring_timeout=keyring_timeout)
    if json_output:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        print(summary(report))
    return 0 if report.intact else 1


# agent/journal/keys.py words its notes in English (``--json`` and the logs keep them so);
# the two it makes itself are translated for a person (a test checks the texts agree).
FILE_NOTE_TEXT = N_("key kept in a file: tamper evidence only against other users")
_KEYRING_UNUSABLE = "the OS keyring is not usable: "


def _shown_note(note: str) -> str:
    if note == FILE_NOTE_TEXT:
        return _(FILE_NOTE_TEXT)
    if note.startswith(_KEYRING_UNUSABLE):
        return _("the OS keyring is not usable: {reason}").format(
            reason=note[len(_KEYRING_UNUSABLE):])
    return note


def summary(report: JournalReport) -> str:
    """What ``verify`` prints for a person, in the CLI's language (``--json``: English)."""
    lines = [_("note: {note}").format(note=_shown_note(note)) for note in report.notes]
    files = len(report.files)
    if report.intact:
        if report.entries:
            # Two messages rather than gettext plurals: Russian counts files in three forms,
            # and the translations say "files: N" instead.
            text = (_("journal intact: {entries} entries from seq {first} to {last} in "
                      "{files} file ({path})") if files == 1 else
                    _("journal intact: {entries} entries from seq {first} to {last} in "
                      "{files} files ({path})"))
            lines.append(text.format(
                entries=f"{report.entries:,}", first=report.first_seq, last=report.last_seq,
                files=files, path=report.path))
        else:
            lines.append(_("journal intact: 0 entries ({path})").format(path=report.path))
        return "\n".join(lines)
    for p in report.problems:
        if p.line:
            where = _("{file} line {line}: ").format(file=p.file, line=p.line)
        else:
            where = f"{p.file}: " if p.file else ""
        lines.append(f"{where}{p.shown()}")
    lines.append(_("journal NOT intact: {problems} problem(s) in {entries} entries, "
                   "{files} file(s) ({path})").format(
        problems=f"{len(report.problems):,}", entries=f"{report.entries:,}", files=files,
        path=report.path))
    return "\n".join(lines)
