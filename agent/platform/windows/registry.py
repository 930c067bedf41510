"""The Windows registry behind a seam: ``Registry`` is what the Windows pieces of the
platform layer call; ``WinReg`` is the real one (``winreg``, imported only on Windows), and
the tests use a dictionary with the same methods, so every key path they write is checked
on any OS.

Keys are written as Windows shows them, ``HKCU\\Software\\...``: the hive, then the path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Literal, Protocol

Hive = Literal["HKCU", "HKLM"]


def join(hive: Hive, path: str) -> str:
    return f"{hive}\\{path}"


class Registry(Protocol):
    def get(self, hive: Hive, path: str, name: str) -> str | None:
        """A string value (``""`` is the key's default value); None when absent."""

    def set(self, hive: Hive, path: str, name: str, value: str) -> None:
        """Create the key when needed and set the REG_SZ value."""

    def delete_value(self, hive: Hive, path: str, name: str) -> None:
        """Absent values and keys are not an error."""

    def values(self, hive: Hive, path: str) -> Mapping[str, object] | None:
        """Every value of the key (REG_SZ → str, REG_DWORD → int, REG_MULTI_SZ →
        list[str]); None when the key does not exist."""
        ...

    def delete_key(self, hive: Hive, path: str) -> None:
        """Delete a key without subkeys; an absent key is not an error."""


class WinReg:
    """The real registry, always the 64-bit view: browsers read theirs there."""

    def __init__(self) -> None:
        import winreg  # type: ignore[import-not-found,unused-ignore]

        self._w: Any = winreg
        self._view = int(self._w.KEY_WOW64_64KEY)

    def _hive(self, hive: Hive) -> Any:
        return self._w.HKEY_CURRENT_USER if hive == "HKCU" else self._w.HKEY_LOCAL_MACHINE

    def get(self, hive: Hive, path: str, name: str) -> str | None:
        try:
            with self._w.OpenKey(self._hive(hive), path, 0,
                                 self._w.KEY_READ | self._view) as key:
                value, _kind = self._w.QueryValueEx(key, name)
        except FileNotFoundError:
            return None
        return str(value)

    def set(self, hive: Hive, path: str, name: str, value: str) -> None:
        with self._w.CreateKeyEx(self._hive(hive), path, 0,
                                 self._w.KEY_SET_VALUE | self._view) as key:
            self._w.SetValueEx(key, name, 0, self._w.REG_SZ, value)

    def delete_value(self, hive: Hive, path: str, name: str) -> None:
        try:
            with self._w.OpenKey(self._hive(hive), path, 0,
                                 self._w.KEY_SET_VALUE | self._view) as key:
                self._w.DeleteValue(key, name)
        except FileNotFoundError:
            pass

    def values(self, hive: Hive, path: str) -> Mapping[str, object] | None:
        found: dict[str, object] = {}
        try:
            with self._w.OpenKey(self._hive(hive), path, 0,
                                 self._w.KEY_READ | self._view) as key:
                index = 0
                while True:
                    try:
                        name, value, _kind = self._w.EnumValue(key, index)
                    except OSError:  # no more values
                        return found
                    found[str(name)] = value
                    index += 1
        except FileNotFoundError:
            return None

    def delete_key(self, hive: Hive, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._w.DeleteKeyEx(self._hive(hive), path, self._view, 0)
