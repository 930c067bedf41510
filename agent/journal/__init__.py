"""The signing journal: one JSON line per signature or login, chained by an HMAC.

Each line carries ``prev`` (the previous line's ``hash``) and its own ``hash``, an
HMAC-SHA256 under a key kept in the OS keyring, so removing, reordering, editing or
re-chaining lines is seen, and rewriting them needs the key.  The keyring also holds the
head (first and last sequence number, last hash), so a deleted journal or a cut tail is
seen even when the head file next to the journal was rewritten.  Files rotate at a size
cap and the chain runs on across them.  See docs/journal.md.

This is tamper *evidence*: against other local users and accidents.  Malware running as
the same user can read the keyring too (out of scope, docs/security.md).

Never written: a PIN, a password, document content.  Only digests and fingerprints.

Modules: ``lines`` (the format), ``files`` (rotation, 0600 files, the head file),
``keys`` (key and head record in the keyring or key file), ``writer`` (``Journal``),
``verify`` and ``command`` (the CLI).
"""

from agent.journal.command import main
from agent.journal.lines import GENESIS, JournalEntry
from agent.journal.verify import JournalProblem, JournalReport, verify, verify_report
from agent.journal.writer import Journal

__all__ = ["GENESIS", "Journal", "JournalEntry", "JournalProblem", "JournalReport", "main",
           "verify", "verify_report"]
