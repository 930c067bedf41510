"""The journal's HMAC key and its head record, in the OS keyring or (fallback) a key file.

Per journal (the usernames carry its absolute path), the service ``imza-agent`` holds:

- ``journal-hmac-key:<path>``: 32 random bytes, hex;
- ``journal-head:<path>``: ``{"first", "seq", "hash"}`` of the journal as last written.

The head record is what makes a deleted journal, a cut tail with a rewritten head file,
or a re-chained journal visible: none of it can be changed without the keyring.

Without a usable keyring the same two entries go to ``journal.jsonl.key`` (mode 0600)
next to the journal: tamper evidence against other users only, since the user the agent
runs as can read the key.  That fallback is logged once and shown by ``journal verify``.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from agent.journal.files import Head
from agent.journal.lines import KEY_BYTES, key_id
from agent.platform.secrets import (
    FileSecrets,
    KeyringSecrets,
    SecretStore,
    SecretStoreError,
    open_keyring,
)

log = logging.getLogger(__name__)

FILE_NOTE = "key kept in a file: tamper evidence only against other users"
_warned: set[str] = set()  # "say so once": per journal, per process


def key_file(path: Path) -> Path:
    return path.with_name(path.name + ".key")


def key_name(path: Path) -> str:
    return f"journal-hmac-key:{path.resolve()}"


def head_name(path: Path) -> str:
    return f"journal-head:{path.resolve()}"


def _decode_key(value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        key = bytes.fromhex(value)
    except ValueError:
        return None
    return key if len(key) == KEY_BYTES else None


@dataclass
class WriterKey:
    """The key new lines are made with, and the store their head record goes to."""

    key: bytes
    kid: str
    store: SecretStore
    record: Head | None  # the head record found there, if any
    note: str = ""  # FILE_NOTE when the key lives in a file


def open_writer_key(path: Path, keyring: KeyringSecrets | None, reason: str) -> WriterKey:
    """The key from the keyring when it answers (a key from an earlier fallback file moves
    there), else from the key file; created on first use.  Raises SecretStoreError only
    when even the key file cannot be written."""
    file_store = FileSecrets(key_file(path))
    if keyring is not None:
        try:
            return _from_keyring(path, keyring, file_store)
        except SecretStoreError as exc:
            reason = str(exc)
    _warn_file_once(path, reason)
    key = _decode_key(file_store.get(key_name(path)))
    if key is None:
        key = secrets.token_bytes(KEY_BYTES)
        file_store.set(key_name(path), key.hex())
    record = Head.from_json(file_store.get(head_name(path)))
    return WriterKey(key, key_id(key), file_store, record, FILE_NOTE)


def _from_keyring(path: Path, keyring: KeyringSecrets, file_store: FileSecrets) -> WriterKey:
    key = _decode_key(keyring.get(key_name(path)))
    record = Head.from_json(keyring.get(head_name(path)))
    if key is None:
        # A key file from a time without keyring: its key moves in, so old lines and new
        # share one key; its head record comes along when it is the newer one.
        moved = _decode_key(file_store.get(key_name(path))) if file_store.exists() else None
        key = moved or secrets.token_bytes(KEY_BYTES)
        keyring.set(key_name(path), key.hex())
        if moved is not None:
            file_record = Head.from_json(file_store.get(head_name(path)))
            if file_record is not None and (record is None or file_record.seq > record.seq):
                record = file_record
                keyring.set(head_name(path), record.to_json())
            file_store.path.unlink(missing_ok=True)
    return WriterKey(key, key_id(key), keyring, record)


def _warn_file_once(path: Path, reason: str) -> None:
    if str(path) not in _warned:
        _warned.add(str(path))
        log.warning("journal: the OS keyring is not usable (%s); %s (%s)", reason, FILE_NOTE,
                    key_file(path))


@dataclass
class VerifierKeys:
    """Every key and head record this user can reach for one journal."""

    keys: dict[str, bytes] = field(default_factory=dict)  # kid → key
    records: list[tuple[str, Head | None]] = field(default_factory=list)  # (where, record)
    storage: str = "none"  # "keyring", "file" or "none": where the newest key lives
    notes: list[str] = field(default_factory=list)


def verifier_keys(path: Path, keyring_timeout: float = 10.0) -> VerifierKeys:
    found = VerifierKeys()
    keyring, reason = open_keyring(timeout=keyring_timeout)
    stores: list[tuple[str, SecretStore]] = []
    if keyring is not None:
        stores.append(("the keyring", keyring))
    else:
        found.notes.append(f"the OS keyring is not usable: {reason}")
    file_store = FileSecrets(key_file(path))
    if file_store.exists():
        stores.append(("the key file", file_store))
    for where, store in stores:
        try:
            key_text, head_text = store.get(key_name(path)), store.get(head_name(path))
        except SecretStoreError as exc:
            found.notes.append(str(exc))
            continue
        key = _decode_key(key_text)
        if key is not None:
            found.keys[key_id(key)] = key
            if found.storage == "none":
                found.storage = store.where
        if head_text is not None:
            found.records.append((where, Head.from_json(head_text)))
    if found.storage == "file":
        found.notes.append(FILE_NOTE)
    return found
