"""ATR → product → PKCS#11 module: which middleware serves the card in a reader.

An entry's ``atr`` is hex bytes (spaces and colons allowed); ``..`` stands for "any byte"
as in pcsc-tools' smartcard_list.txt, and an explicit ``mask`` (same length) can say the
same bit by bit: a card matches when ``card & mask == atr & mask`` and the lengths agree.

``modules`` names where the product's PKCS#11 module lives, per OS ("linux", "windows",
"darwin" or "any"): either a vendor of ``agent.keystores.pkcs11.modules.KNOWN_MODULES``
(so install paths are written once, there) or an explicit path.  Entries from the user's
config come first, so an administrator can override a built-in one; the built-in table
is ``atr_db.toml`` next to this file.  OpenSC is the fallback for every card it may read.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from agent.keystores.pkcs11.modules import KNOWN_MODULES, current_os

FALLBACK_VENDOR = "OpenSC"
OS_NAMES = ("linux", "windows", "darwin")


class AtrSyntaxError(ValueError):
    """An ATR or mask in the database or the config is not hex bytes."""


def parse_atr(text: str) -> tuple[bytes, bytes]:
    """``"3B 9F .. 81"`` → (ATR bytes, mask bytes); ``..`` becomes a zero mask byte."""
    cleaned = text.replace(":", " ").split()
    if len(cleaned) == 1 and len(cleaned[0]) > 2:  # "3B9F95…" without separators
        word = cleaned[0]
        cleaned = [word[i:i + 2] for i in range(0, len(word), 2)]
    atr, mask = bytearray(), bytearray()
    for item in cleaned:
        if item == "..":
            atr.append(0)
            mask.append(0)
            continue
        try:
            atr.append(int(item, 16))
        except ValueError:
            raise AtrSyntaxError(f"not an ATR byte: {item!r} in {text!r}") from None
        if len(item) != 2:
            raise AtrSyntaxError(f"not an ATR byte: {item!r} in {text!r}")
        mask.append(0xFF)
    if not atr:
        raise AtrSyntaxError("an empty ATR")
    return bytes(atr), bytes(mask)


def atr_hex(atr: bytes) -> str:
    """Upper-case hex bytes separated by spaces, as pcsc_scan and the doctor show them."""
    return " ".join(f"{b:02X}" for b in atr)


@dataclass(frozen=True)
class AtrEntry:
    atr: bytes
    mask: bytes
    name: str
    modules: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # os → vendors/paths
    source: str = "built-in"  # or "config"

    def matches(self, card_atr: bytes) -> bool:
        return len(card_atr) == len(self.atr) and all(
            (c & m) == (a & m) for c, a, m in zip(card_atr, self.atr, self.mask, strict=True))

    def module_refs(self, os_name: str | None = None) -> tuple[str, ...]:
        os_name = os_name or current_os()
        return tuple(self.modules.get(os_name, ())) + tuple(self.modules.get("any", ()))


def entry_from(data: Mapping[str, Any], source: str) -> AtrEntry:
    """One table row (``atr``, optional ``mask``, ``name``, ``modules``) → entry."""
    atr, mask = parse_atr(str(data["atr"]))
    if data.get("mask"):
        explicit, _ = parse_atr(str(data["mask"]))
        if len(explicit) != len(atr):
            raise AtrSyntaxError(f"mask and ATR differ in length for {data['name']!r}")
        mask = bytes(a & b for a, b in zip(mask, explicit, strict=True))
    raw = data.get("modules") or {}
    if isinstance(raw, list | tuple):  # a plain list applies to every OS
        raw = {"any": raw}
    modules = {str(k): tuple(str(v) for v in vals) for k, vals in raw.items()}
    return AtrEntry(atr=atr, mask=mask, name=str(data["name"]), modules=modules,
                    source=source)


def _builtin_rows() -> list[dict[str, Any]]:
    text = resources.files("agent.pcsc").joinpath("atr_db.toml").read_text(encoding="utf-8")
    return list(tomllib.loads(text).get("card", []))


def resolve_module(ref: str, os_name: str | None = None) -> tuple[Path, ...]:
    """A vendor name from KNOWN_MODULES → its candidate paths; anything else is a path."""
    table = KNOWN_MODULES.get(os_name or current_os(), {})
    if ref in table:
        return tuple(Path(p) for p in table[ref])
    return (Path(ref),)


class AtrDatabase:
    def __init__(self, entries: Sequence[AtrEntry]) -> None:
        self.entries = list(entries)

    @classmethod
    def load(cls, config_rows: Iterable[Mapping[str, Any]] = ()) -> AtrDatabase:
        """Config entries first (they win), then the built-in table."""
        entries = [entry_from(row, "config") for row in config_rows]
        entries += [entry_from(row, "built-in") for row in _builtin_rows()]
        return cls(entries)

    def match(self, card_atr: bytes) -> AtrEntry | None:
        for entry in self.entries:
            if entry.matches(card_atr):
                return entry
        return None

    def module_paths(self, entry: AtrEntry | None,
                     os_name: str | None = None) -> list[Path]:
        """Where the card's module may be: the entry's modules, then OpenSC's."""
        refs = list(entry.module_refs(os_name)) if entry else []
        if FALLBACK_VENDOR not in refs:
            refs.append(FALLBACK_VENDOR)
        paths: list[Path] = []
        for ref in refs:
            for path in resolve_module(ref, os_name):
                if path not in paths:
                    paths.append(path)
        return paths


def same_file(a: Path, b: Path) -> bool:
    """Two module paths name one file (symlinks, case on Windows)."""
    def norm(p: Path) -> str:
        return os.path.normcase(os.path.realpath(p))
    return norm(a) == norm(b)
