"""Small secrets kept outside the agent's data directory: the OS keyring.

The ``keyring`` package picks the platform's store (Secret Service over D-Bus on Linux,
Credential Manager on Windows, Keychain on macOS).  This is the only module that imports
it.  When no usable backend exists (a headless server, ``keyring.backends.fail``, a locked
collection whose unlock prompt was dismissed), callers fall back to a :class:`FileSecrets`
in the data directory: readable by the same OS user only, so it protects against other
users and nothing more.

Values are short strings.  A store is used from one thread at a time.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Protocol

SERVICE = "imza-agent"


class SecretStore(Protocol):
    where: str  # "keyring" or "file": said to the user, never a secret

    def get(self, name: str) -> str | None: ...

    def set(self, name: str, value: str) -> None: ...


class SecretStoreError(Exception):
    """The store could not be read or written (the reason, never a value)."""


class KeyringSecrets:
    """Entries of the OS keyring under one service name."""

    where = "keyring"

    def __init__(self, backend: Any, service: str = SERVICE) -> None:
        self._backend = backend
        self._service = service

    def get(self, name: str) -> str | None:
        try:
            value = self._backend.get_password(self._service, name)
        except Exception as exc:  # D-Bus, locked collection, OS errors: all "unavailable"
            raise SecretStoreError(f"keyring read failed: {type(exc).__name__}") from None
        return value if isinstance(value, str) else None

    def set(self, name: str, value: str) -> None:
        try:
            self._backend.set_password(self._service, name, value)
        except Exception as exc:
            raise SecretStoreError(f"keyring write failed: {type(exc).__name__}") from None


def open_keyring(service: str = SERVICE, *,
                 timeout: float | None = None) -> tuple[KeyringSecrets | None, str]:
    """The OS keyring if a real backend answers, else ``None`` and why not.

    The probe reads one entry, so a locked collection (and its unlock prompt) is met here
    rather than on the first write.  With ``timeout``, a keyring that does not answer in
    time (a D-Bus peer that never replies, a prompt nobody sees) counts as unusable; the
    probe's thread is left to finish or hang on its own.
    """
    if timeout is None:
        return _open_keyring(service)
    result: list[tuple[KeyringSecrets | None, str]] = []
    probe = threading.Thread(target=lambda: result.append(_open_keyring(service)),
                             name="keyring-probe", daemon=True)
    probe.start()
    probe.join(timeout)
    return result[0] if result else (None, f"the keyring did not answer within {timeout:g} s")


def _open_keyring(service: str) -> tuple[KeyringSecrets | None, str]:
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:  # pragma: no cover - a dependency; broken installs only
        return None, "the keyring package is not installed"
    try:
        backend = keyring.get_keyring()
    except Exception as exc:
        return None, f"no keyring backend ({type(exc).__name__})"
    # The chainer wraps the real backends; with none of them usable it holds none.
    inner = getattr(backend, "backends", None)
    if isinstance(backend, fail.Keyring) or (inner is not None and not inner):
        return None, "no keyring backend is available"
    store = KeyringSecrets(backend, service)
    try:
        store.get("probe")
    except SecretStoreError as exc:
        return None, str(exc)
    return store, ""


class FileSecrets:
    """A JSON object in one file, mode 0600 from its creation, replaced atomically."""

    where = "file"

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise SecretStoreError(f"key file unreadable: {type(exc).__name__}") from None
        if not isinstance(data, dict):
            raise SecretStoreError("key file is not a JSON object")
        return {str(k): v for k, v in data.items() if isinstance(v, str)}

    def exists(self) -> bool:
        return self.path.exists()

    def get(self, name: str) -> str | None:
        return self._read().get(name)

    def set(self, name: str, value: str) -> None:
        data = self._read()
        data[name] = value
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(json.dumps(data, sort_keys=True).encode("utf-8"))
            os.replace(tmp, self.path)
        except OSError as exc:
            raise SecretStoreError(f"key file not written: {type(exc).__name__}") from None
