"""``imza-agent journal show|verify [--json]``; ``show`` is agent/commands/journal_show.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

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


def summary(report: JournalReport) -> str:
    lines = [f"note: {note}" for note in report.notes]
    files = len(report.files)
    if report.intact:
        if report.entries:
            lines.append(f"journal intact: {report.entries:,} entries from seq "
                         f"{report.first_seq} to {report.last_seq} in {files} "
                         f"file{'s' if files != 1 else ''} ({report.path})")
        else:
            lines.append(f"journal intact: 0 entries ({report.path})")
        return "\n".join(lines)
    for p in report.problems:
        where = f"{p.file} line {p.line}: " if p.line else (f"{p.file}: " if p.file else "")
        lines.append(f"{where}{p.problem}")
    lines.append(f"journal NOT intact: {len(report.problems):,} problem"
                 f"{'s' if len(report.problems) != 1 else ''} in {report.entries:,} entries, "
                 f"{files} file{'s' if files != 1 else ''} ({report.path})")
    return "\n".join(lines)
