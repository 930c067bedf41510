"""Per-connection certificate handles: opaque strings the page holds instead of key ids.

A handle is random, so one connection cannot guess another's, and it dies with its
connection.  Issuing the same target twice gives the same handle, which keeps the table
bounded by the number of certificates rather than the number of requests.
"""

from __future__ import annotations

import secrets
from collections.abc import Hashable
from typing import Generic, TypeVar

from agent.errors import InvalidHandle

T = TypeVar("T", bound=Hashable)


class HandleTable(Generic[T]):
    def __init__(self) -> None:
        self._by_handle: dict[str, T] = {}
        self._by_target: dict[T, str] = {}

    def issue(self, target: T) -> str:
        """The handle for ``target`` (a stable, hashable description of one certificate
        on one token, e.g. store id + token id + certificate hash)."""
        handle = self._by_target.get(target)
        if handle is None:
            handle = "h" + secrets.token_urlsafe(18)
            self._by_handle[handle] = target
            self._by_target[target] = handle
        return handle

    def resolve(self, handle: str) -> T:
        try:
            return self._by_handle[handle]
        except KeyError:
            raise InvalidHandle() from None

    def forget(self, handle: str) -> None:
        target = self._by_handle.pop(handle, None)
        if target is not None:
            self._by_target.pop(target, None)

    def clear(self) -> None:
        self._by_handle.clear()
        self._by_target.clear()

    def __len__(self) -> int:
        return len(self._by_handle)

    def __contains__(self, handle: object) -> bool:
        return handle in self._by_handle
