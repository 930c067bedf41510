"""Writing the journal: append a keyed line, rotate at the size cap, record the head.

``append`` runs on the daemon's event loop, so it must stay cheap.  A keyring write goes
over D-Bus to the Secret Service (measured here: about 17 ms with gnome-keyring, against
well under a millisecond for the line itself), so the head record reaches the keyring from
a background thread that always writes the newest head and skips the ones in between.
Two writes happen in the caller's thread because losing them would look like tampering:
the record made when the journal file is created (it says "a journal exists") and the one
made at a rotation (it moves the first kept sequence number).  Opening the keyring (the
import and the probe, ~0.2 s) also happens in that thread, so starting the daemon does not
wait for it; the first line waits for it at most ``keyring_timeout`` seconds and then keeps
its key in the fallback file.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from datetime import UTC, datetime
from pathlib import Path

from agent.journal.files import (
    EMPTY,
    Head,
    append_bytes,
    first_seq,
    head_path,
    kept_files,
    private_dir,
    read_head,
    rotate,
    tighten,
    write_head,
)
from agent.journal.keys import WriterKey, head_name, key_file, open_writer_key
from agent.journal.lines import JournalEntry, encode, keyed_hash
from agent.platform.secrets import SecretStoreError, open_keyring

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 5 * 1024 * 1024
DEFAULT_KEEP_FILES = 5
DEFAULT_KEYRING_TIMEOUT = 10.0
# After writing a head record the thread waits this long before the next one: heads
# submitted meanwhile are written as one (the newest), so a burst of signatures costs one
# keyring or key-file write per interval instead of one each (each took CPU from the
# requests: ~0.2 ms per line measured with the key file).  flush() and close() cut it short.
HEAD_WRITE_INTERVAL = 0.1


class _HeadRecorder:
    """Opens the key store in its own thread, then writes head records to it."""

    def __init__(self, path: Path, initial: Head) -> None:
        self._path = path
        self._initial = initial
        self._lock = threading.Lock()  # one store call at a time
        self._wake = threading.Condition()
        self._ready = threading.Event()
        self._key: WriterKey | None = None
        self._error: SecretStoreError | None = None
        self._pending: Head | None = None
        self._busy = False
        self._closed = False
        self._failed_once = False
        self._serving = False  # the thread has its key and writes what is submitted
        self._hurry = 0  # flush() calls waiting: no pause between writes
        self._thread = threading.Thread(target=self._run, name="journal-keyring", daemon=True)
        self._thread.start()

    def key(self, timeout: float) -> WriterKey:
        if not self._ready.wait(timeout):
            with self._wake:
                if self._key is None:  # the keyring did not answer: this run uses a file
                    self._key = open_writer_key(
                        self._path, None, f"it did not answer within {timeout:g} s")
                    self._ready.set()
        if self._key is None:
            assert self._error is not None
            raise self._error
        return self._key

    def _run(self) -> None:
        keyring, reason = open_keyring()
        try:
            found = open_writer_key(self._path, keyring, reason)
        except SecretStoreError as exc:
            with self._wake:
                self._error = exc
                self._ready.set()
            return
        if found.record is None and self._initial.seq > 0:
            # A journal from before the head record: say it exists before any new line.
            try:
                found.store.set(head_name(self._path), self._initial.to_json())
            except SecretStoreError as exc:
                log.warning("journal: head record not written to the %s: %s",
                            found.store.where, exc)
        with self._wake:
            if self._key is None:
                self._key = found
                self._ready.set()
            self._serving = True
        while True:
            with self._wake:
                while self._pending is None and not self._closed:
                    self._wake.wait()
                head, self._pending = self._pending, None
                if head is None:
                    return
                self._busy = True
            self._write(head)
            with self._wake:
                self._busy = False
                self._wake.notify_all()
                self._wake.wait_for(lambda: self._closed or self._hurry > 0,
                                    HEAD_WRITE_INTERVAL)

    def _write(self, head: Head) -> None:
        key = self._key
        if key is None:
            return
        try:
            with self._lock:
                key.store.set(head_name(self._path), head.to_json())
        except SecretStoreError as exc:
            if not self._failed_once:
                self._failed_once = True
                log.warning("journal: head record not written to the %s: %s",
                            key.store.where, exc)

    def submit(self, head: Head) -> None:
        key = self._key
        if key is not None and key.store.where == "file" and not self._serving:
            # The thread is still stuck on a keyring that never answered (the timeout
            # fallback): write the file here.  Once the thread serves, it writes the file
            # too: replacing it costs a rename, which ext4 flushes (0.5-2 ms measured
            # here), and that must not be paid on the signing request.
            self._write(head)
            return
        with self._wake:
            self._pending = head
            self._wake.notify_all()

    def write_now(self, head: Head) -> None:
        with self._wake:
            self._pending = None  # older than this one
        self._write(head)

    def flush(self, timeout: float) -> bool:
        """Waits until the newest head is written; False on timeout."""
        if not self._ready.wait(timeout):
            return False
        with self._wake:
            if self._error is not None or not self._thread.is_alive():
                pending, self._pending = self._pending, None
            else:
                self._hurry += 1
                self._wake.notify_all()
                try:
                    return self._wake.wait_for(
                        lambda: self._pending is None and not self._busy, timeout)
                finally:
                    self._hurry -= 1
        if pending is not None:
            self._write(pending)
        return True

    def close(self, timeout: float) -> None:
        self.flush(timeout)
        with self._wake:
            self._closed = True
            self._wake.notify_all()


class Journal:
    """The journal at ``path``; see the package docstring for the format."""

    def __init__(self, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 keep_files: int = DEFAULT_KEEP_FILES,
                 keyring_timeout: float = DEFAULT_KEYRING_TIMEOUT) -> None:
        self.path = path
        self.head_path = head_path(path)
        self.max_bytes = max_bytes
        self.keep_files = keep_files
        self.keyring_timeout = keyring_timeout
        self._lock = threading.Lock()
        self._reconciled = False
        private_dir(path.parent)
        for existing in (*kept_files(path), self.head_path, key_file(path)):
            tighten(existing)
        self._head = read_head(self.head_path) or EMPTY
        self._size = path.stat().st_size if path.exists() else 0
        self._recorder = _HeadRecorder(path, self._head)
        # A daemon stopped without close() still leaves the newest head in the keyring.
        atexit.register(_close_at_exit, weakref.ref(self))

    @property
    def key_note(self) -> str:
        """"key kept in a file: …" when the keyring was not usable; else empty."""
        return self._recorder.key(self.keyring_timeout).note

    def append(self, *, origin: str, method: str, certificate_sha256: str | None,
               digest_algorithm: str | None, digest_hex: str | None, result: str,
               count: int = 1) -> JournalEntry:
        key = self._recorder.key(self.keyring_timeout)
        with self._lock:
            head = self._start(key)
            entry: JournalEntry = {
                "seq": head.seq + 1,
                "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "origin": origin,
                "method": method,
                "certificate": certificate_sha256,
                "digestAlgorithm": digest_algorithm,
                "digest": digest_hex,
                "count": count,
                "result": result,
                "prev": head.hash,
                "kid": key.kid,
                "hash": "",  # not part of what it hashes
            }
            entry["hash"] = keyed_hash(key.key, entry)
            data = encode(entry)
            first = head.first
            rotated = self._size > 0 and self._size + len(data) > self.max_bytes
            if rotated:
                rotate(self.path, self.keep_files)
                oldest = kept_files(self.path)
                start = first_seq(oldest[0]) if oldest else None
                first = start if start is not None else entry["seq"]
            created = not self.path.exists()
            self._size = append_bytes(self.path, data)
            self._head = Head(first, entry["seq"], entry["hash"])
            write_head(self.head_path, self._head)
            if created or rotated:
                self._recorder.write_now(self._head)
            else:
                self._recorder.submit(self._head)
            return entry

    def _start(self, key: WriterKey) -> Head:
        """At the first line: the store's head record wins when it is further along, so a
        journal deleted or cut while the agent was stopped continues where it was (and
        verify shows the hole) instead of starting over as if nothing had been."""
        if not self._reconciled:
            self._reconciled = True
            record = key.record
            if record is not None and record.seq > self._head.seq:
                self._head = record
            elif record is not None:
                self._head = Head(min(record.first, self._head.first), self._head.seq,
                                  self._head.hash)
        return self._head

    def flush(self, timeout: float = 10.0) -> bool:
        """Waits until the keyring holds the newest head (tests, shutdown)."""
        return self._recorder.flush(timeout)

    def close(self, timeout: float = 5.0) -> None:
        self._recorder.close(timeout)


def _close_at_exit(ref: weakref.ref[Journal]) -> None:
    journal = ref()
    if journal is not None:
        journal.close(timeout=2.0)
