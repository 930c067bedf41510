"""Gettext catalogue tools without GNU gettext: read ``.po``, write ``.mo``, find the
messages the code marks with ``_()`` / ``N_()``.

``python -m agent.i18n.catalog`` recompiles every ``.po`` into its ``.mo``;
``python -m agent.i18n.catalog --check`` lists messages that lack a translation.
"""

from __future__ import annotations

import ast
import re
import struct
import sys
from collections.abc import Iterable
from pathlib import Path

from agent.i18n import DOMAIN, LANGUAGES, LOCALE_DIR

# The modules whose strings the user reads.
SOURCE_ROOT = Path(__file__).resolve().parent.parent
UI_SOURCES = ("ui/qt", "cli.py", "commands", "platform/autostart.py",
              "platform/windows/stop_event.py",
              "config.py", "doctor/text.py", "doctor/transports.py", "doctor/trust.py",
              "doctor/verdict.py",
              "tls/trust.py", "journal/command.py", "journal/verify.py", "pcsc/report.py",
              "pinmgmt")
MARKERS = ("_", "N_")
_PLACEHOLDER = re.compile(r"\{[a-z_]+\}")


def po_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def _unquote(token: str) -> str:
    value = ast.literal_eval(token)  # a .po string is a C string; Python's rules fit ours
    if not isinstance(value, str):
        raise ValueError(f"not a quoted string in .po: {token!r}")
    return value


def parse_po(text: str) -> dict[str, str]:
    """msgid → msgstr, the header (msgid "") included; no plurals or contexts needed."""
    entries: dict[str, str] = {}
    current: dict[str, str] = {}
    field = ""

    def flush() -> None:
        if "msgid" in current:
            entries[current["msgid"]] = current.get("msgstr", "")
        current.clear()

    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("msgid "):
            flush()
            field, line = "msgid", line[len("msgid "):]
            current[field] = _unquote(line)
        elif line.startswith("msgstr "):
            field, line = "msgstr", line[len("msgstr "):]
            current[field] = _unquote(line)
        elif line.startswith('"'):
            current[field] += _unquote(line)
        else:
            raise ValueError(f"unexpected line in .po: {raw!r}")
    flush()
    return entries


def compile_mo(entries: dict[str, str]) -> bytes:
    """The GNU .mo format: header, two offset tables, strings (no hash table)."""
    pairs = sorted((k.encode("utf-8"), v.encode("utf-8")) for k, v in entries.items() if v)
    n = len(pairs)
    originals_at = 28
    translations_at = originals_at + 8 * n
    data_at = translations_at + 8 * n
    data = bytearray()
    originals: list[tuple[int, int]] = []
    translations: list[tuple[int, int]] = []
    for table, index in ((originals, 0), (translations, 1)):
        for pair in pairs:
            table.append((len(pair[index]), data_at + len(data)))
            data += pair[index] + b"\0"
    out = struct.pack("<7I", 0x950412DE, 0, n, originals_at, translations_at, 0, data_at)
    for length, offset in originals + translations:
        out += struct.pack("<2I", length, offset)
    return out + bytes(data)


def source_files() -> list[Path]:
    files: list[Path] = []
    for rel in UI_SOURCES:
        path = SOURCE_ROOT / rel
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return [f for f in files if f.exists()]


def marked_messages(files: Iterable[Path]) -> dict[str, list[str]]:
    """Every literal passed to ``_()``/``N_()`` → where it is used."""
    found: dict[str, list[str]] = {}
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in MARKERS and node.args):
                arg = node.args[0]
                if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                    if node.func.id == "N_":
                        raise ValueError(f"{path}:{node.lineno}: N_() needs a literal")
                    continue  # _(variable): the variable holds an N_() message
                found.setdefault(arg.value, []).append(f"{path.name}:{node.lineno}")
    return found


def problems(language: str, messages: dict[str, list[str]]) -> list[str]:
    """Missing or empty translations, and placeholders that do not match."""
    entries = parse_po(po_path(language).read_text(encoding="utf-8"))
    found = []
    for msgid, where in sorted(messages.items()):
        msgstr = entries.get(msgid, "")
        if not msgstr:
            found.append(f"{language}: no translation for {msgid!r} ({where[0]})")
        elif sorted(_PLACEHOLDER.findall(msgid)) != sorted(_PLACEHOLDER.findall(msgstr)):
            found.append(f"{language}: placeholders differ in {msgid!r}")
    return found


def compile_all() -> list[Path]:
    written = []
    for language in LANGUAGES:
        po = po_path(language)
        mo = po.with_suffix(".mo")
        mo.write_bytes(compile_mo(parse_po(po.read_text(encoding="utf-8"))))
        written.append(mo)
    return written


def main(argv: list[str]) -> int:
    if "--check" in argv:
        messages = marked_messages(source_files())
        found = [p for lang in LANGUAGES for p in problems(lang, messages)]
        print("\n".join(found) or f"{len(messages)} messages translated in {len(LANGUAGES)}"
              " languages")
        return 1 if found else 0
    for mo in compile_all():
        print(mo.relative_to(SOURCE_ROOT.parent))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
