"""All key stores of the agent behind one object: PKCS#11 modules, PKCS#12 files, the demo.

Stores are queried concurrently, so one slow vendor module does not hold up the others,
and a failing store becomes an entry in ``problems`` instead of failing the whole listing.

When the demo identity is offered
---------------------------------
The intent is "the user has no token and no configured key", so that someone without a
token can still try a portal.  Precisely:

1. ``demo.enabled`` is ``"auto"`` (``"never"`` turns it off), and
2. nothing is configured: ``tokens.modules`` and ``tokens.pkcs12`` are both empty (a
   configured module or file counts even when it is missing: the user meant a real key,
   and a typo should show as a problem, not as a demo certificate).

Then the demo store is built (its identity created once in the data dir).  Known vendor
modules found on disk do *not* prevent it, because having OpenSC or a vendor's middleware
installed says nothing about a card being inserted.  Instead the demo token is shown only
while no other store lists a token: insert a card and the demo token leaves the listing,
remove it and the demo comes back.  ``demo_active`` tells which way the last listing went.

One certificate, one row
------------------------
A card is often read by more than one installed module (a PIV card by OpenSC and by
CACKey), so the same certificate, with the same key on the card, would be listed once per
module.  ``certificates()`` keeps one of them.  Entries with the same DER on the same
reader are one certificate (a module that does not say which reader its slot is, as
CACKey 0.7.11, reads the card where another module saw that certificate).  The one kept
has a private key if any has, and comes from the module the ATR table names first for
the card in that reader (``agent/pcsc/atr_db.toml``, then OpenSC), then from the store
loaded first.  Both facts come from the PC/SC service, which sets ``reader_atrs`` (its
watcher's cards) and ``module_order`` (its ATR table): a key store never looks at PC/SC
itself.  Without the service, the row with a private key from the store loaded first is
kept.  Entries on no reader (files, software tokens) are never merged.

The OS's store and a PKCS#11 module reaching one key
----------------------------------------------------
On Windows and macOS the OS's own certificate store (``[tokens] os_store``, the
platform's ``os_key_store()``) lists a card's certificates through the vendor's
minidriver or CryptoTokenKit extension, while the vendor's PKCS#11 module may read the
same card.  An OS-store row and a PKCS#11 row are one key when the certificate DER is the
same, or the public key is (a card may hold a re-issued certificate for the same key).
Then only one row is kept: the PKCS#11 one when it can sign (it has a private key),
because through PKCS#11 the agent sees the token's PIN state (tries left, locked, PIN
pad) and signs a batch in one worker call, while the minidriver path reports a wrong PIN
without a count and may show the vendor's own prompt; the OS row only when the PKCS#11
row has no private key (a module that cannot see the key is no use for signing).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from agent import paths
from agent.config import Config
from agent.errors import AgentError, InvalidHandle
from agent.keystores.base import (
    JSON,
    CardEvents,
    CertificateEntry,
    KeyStore,
    StoreKind,
    StoreReport,
    TokenInfo,
)

# The demo and PKCS#12 stores (asn1crypto, cryptography's PKCS#12) and cryptography's
# x509 are imported where they are used: a daemon with only PKCS#11 modules configured
# does not need them to start listening (start-up time and idle memory, issue 17).
if TYPE_CHECKING:
    from agent.keystores.demo import DemoStore
    from agent.keystores.pkcs11.modules import ModuleCandidate
    from agent.platform.base import OsKeyStoreHook

OsKeyStoreSource = Callable[[], "OsKeyStoreHook | None"]

# CACKey cuts a reader's name to the 32 bytes of CK_SLOT_INFO.manufacturerID.
READER_NAME_CUT = 32
ReaderAtrs = Callable[[], Mapping[str, bytes]]  # reader name → ATR of the card in it
ModuleOrder = Callable[[bytes | None], Sequence[Path]]  # a card's ATR → its modules, best first


@dataclass(frozen=True)
class StoreProblem:
    """Why one store (or one token of it) could not be listed or loaded."""

    store_id: str | None
    source: str     # module path or file path
    reason: str     # contract reason (AgentError.reason) or an exception class name
    message: str

    def as_dict(self) -> dict[str, JSON]:
        return {"storeId": self.store_id, "source": self.source, "reason": self.reason,
                "message": self.message}


@dataclass(frozen=True)
class ManagedStore:
    store: KeyStore
    source: str                 # module path, file path, or the demo directory
    vendor: str | None = None   # PKCS#11 only: from module discovery
    os_store: bool = False      # the OS's certificate store (Windows CNG, macOS keychain)


def problem_from(exc: BaseException, store_id: str | None, source: str) -> StoreProblem:
    if isinstance(exc, AgentError):
        detail = exc.data.get("detail")
        return StoreProblem(store_id, source, str(detail or exc.reason), exc.message)
    return StoreProblem(store_id, source, type(exc).__name__, str(exc) or type(exc).__name__)


def reader_key(reader: str) -> str:
    """The part of a reader's name every module reports (see ``READER_NAME_CUT``)."""
    cut = reader.encode("utf-8")[:READER_NAME_CUT].decode("utf-8", "ignore")
    return cut.rstrip("\ufffd")


def same_file(a: Path, b: Path) -> bool:
    """Two module paths name one file (symlinks, case on Windows)."""
    def norm(p: Path) -> str:
        return os.path.normcase(os.path.realpath(p))
    return norm(a) == norm(b)


def _public_key_of(der: bytes) -> bytes | None:
    """The certificate's SubjectPublicKeyInfo, None for what does not parse."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        cert = x509.load_der_x509_certificate(der)
        return cert.public_key().public_bytes(Encoding.DER,
                                              PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, TypeError):
        return None


def demo_wanted(config: Config) -> bool:
    """Step 1 and 2 of the module docstring: the static half of the demo rule."""
    return (config.demo.enabled == "auto" and not config.tokens.modules
            and not config.tokens.pkcs12)


class StoreManager:
    def __init__(self, stores: Sequence[ManagedStore], *, demo: DemoStore | None = None,
                 module_candidates: Sequence[ModuleCandidate] = (),
                 problems: Sequence[StoreProblem] = ()) -> None:
        self._managed = list(stores)
        # Set by the PC/SC service (agent/pcsc/service.py): which card each reader holds,
        # and which modules the ATR table names for a card. Unset: no module preference.
        self.reader_atrs: ReaderAtrs | None = None
        self.module_order: ModuleOrder | None = None
        self.demo_store = demo
        self.module_candidates = list(module_candidates)
        self._static_problems = list(problems)
        self._listing_problems: list[StoreProblem] = []
        self._real_tokens_seen = False
        by_id = {m.store.store_id: m for m in self._managed}
        if demo is not None:
            by_id[demo.store_id] = ManagedStore(demo, str(demo.identity.p12_path.parent))
        self._by_id = by_id

    # -- building

    @classmethod
    def from_config(cls, config: Config, *, env: Mapping[str, str] | None = None,
                    data_dir: Path | None = None,
                    os_key_store: OsKeyStoreSource | None = None) -> StoreManager:
        """``os_key_store``: where the OS's certificate store comes from (default: the
        platform layer's ``os_key_store()``; None there on Linux)."""
        from agent.keystores.pkcs11 import Pkcs11Store
        from agent.keystores.pkcs11.modules import discover_modules

        managed: list[ManagedStore] = []
        problems: list[StoreProblem] = []
        candidates = discover_modules(list(config.tokens.modules),
                                      config.tokens.known_modules)
        seen: set[str] = set()
        for cand in candidates:
            path = str(cand.path)
            if path in seen:
                continue
            seen.add(path)
            if not cand.present:
                if cand.source != "known":
                    problems.append(StoreProblem(None, path, "MODULE_NOT_FOUND",
                                                 "the PKCS#11 module file is not there"))
                continue
            try:
                store = Pkcs11Store(Path(cand.path), call_timeout=config.tokens.call_timeout,
                                    pin_pad_timeout=config.tokens.pin_pad_timeout, env=env)
            except Exception as exc:  # a broken module must not stop the agent
                problems.append(problem_from(exc, None, path))
                continue
            managed.append(ManagedStore(store, path, vendor=cand.vendor))
        for p12 in config.tokens.pkcs12:
            try:
                from agent.keystores.pkcs12 import Pkcs12Store

                store12 = Pkcs12Store(p12.path, p12.label)
            except (OSError, ValueError) as exc:  # e.g. a path the file system cannot encode
                problems.append(problem_from(exc, None, str(p12.path)))
                continue
            managed.append(ManagedStore(store12, str(store12.path)))
            if not store12.path.is_file():
                problems.append(StoreProblem(store12.store_id, str(store12.path),
                                             "FILE_NOT_FOUND",
                                             "the PKCS#12 file is not there"))
        if config.tokens.os_store:
            managed.extend(cls._os_store(os_key_store, problems))
        demo = None
        if demo_wanted(config):
            try:
                from agent.keystores.demo import DemoStore, ensure_demo_identity

                demo = DemoStore(ensure_demo_identity(data_dir or paths.data_dir()))
            except OSError as exc:
                problems.append(StoreProblem("demo", str(data_dir or ""), "DEMO_UNAVAILABLE",
                                             f"the demo identity cannot be created: "
                                             f"{exc.strerror or exc}"))
        return cls(managed, demo=demo, module_candidates=candidates, problems=problems)

    @staticmethod
    def _os_store(source: OsKeyStoreSource | None,
                  problems: list[StoreProblem]) -> list[ManagedStore]:
        if source is None:
            from agent import platform

            source = platform.current().os_key_store
        try:
            hook = source()
            if hook is None or not hook.available():
                return []
            return [ManagedStore(hook.open(), hook.name, os_store=True)]
        except Exception as exc:  # a broken OS store must not stop the agent
            problems.append(problem_from(exc, None, "os-store"))
            return []

    # -- state

    @property
    def managed(self) -> list[ManagedStore]:
        """The real stores (not the demo), with where each comes from."""
        return list(self._managed)

    @property
    def demo_active(self) -> bool:
        """The demo token is (or, before any listing, would be) offered."""
        return self.demo_store is not None and not self._real_tokens_seen

    @property
    def problems(self) -> list[StoreProblem]:
        """Configuration problems plus those of the most recent listing."""
        return self._static_problems + self._listing_problems

    def card_stores(self) -> list[CardEvents]:
        """The stores that follow PC/SC card events (``agent/pcsc/sync.py`` drives them)."""
        return [m.store.card_events for m in self._managed if m.store.card_events is not None]

    async def diagnostics(self) -> list[StoreReport]:
        """What every store, the demo included, tells ``doctor`` about itself; a store
        that cannot say is a row of the "problems" section."""
        managed = list(self._by_id.values())

        async def one(m: ManagedStore) -> StoreReport:
            try:
                return await m.store.diagnostics()
            except Exception as exc:
                problem = problem_from(exc, m.store.store_id, m.source)
                return StoreReport("problems", dict(problem.as_dict()))

        return list(await asyncio.gather(*(one(m) for m in managed)))

    def store(self, store_id: str) -> KeyStore:
        managed = self._by_id.get(store_id)
        if managed is None:
            raise InvalidHandle("no such key store", store=store_id)
        return managed.store

    def source_of(self, store_id: str) -> str:
        managed = self._by_id.get(store_id)
        return managed.source if managed else ""

    # -- listing

    async def _tokens_of(self, m: ManagedStore,
                         problems: list[StoreProblem]) -> list[TokenInfo]:
        try:
            return await m.store.tokens()
        except Exception as exc:
            problems.append(problem_from(exc, m.store.store_id, m.source))
            return []

    async def _certificates_of(self, m: ManagedStore, problems: list[StoreProblem],
                               ) -> tuple[list[TokenInfo], list[CertificateEntry]]:
        tokens = await self._tokens_of(m, problems)
        entries: list[CertificateEntry] = []
        for token in tokens:  # one module serves its tokens one at a time anyway
            try:
                entries.extend(await m.store.certificates(token))
            except Exception as exc:
                problems.append(problem_from(exc, m.store.store_id, m.source))
        return tokens, entries

    def _finish(self, real_tokens: list[TokenInfo], problems: list[StoreProblem]) -> bool:
        self._listing_problems = problems
        self._real_tokens_seen = bool(real_tokens)
        return self.demo_active

    async def tokens(self) -> list[TokenInfo]:
        problems: list[StoreProblem] = []
        results = await asyncio.gather(*(self._tokens_of(m, problems) for m in self._managed))
        real = [t for ts in results for t in ts]
        if self.demo_store is not None and not real:
            demo_m = self._by_id[self.demo_store.store_id]
            real_and_demo = real + await self._tokens_of(demo_m, problems)
            self._finish(real, problems)
            return real_and_demo
        self._finish(real, problems)
        return real

    async def certificates(self, *, distinct: bool = True) -> list[CertificateEntry]:
        """Every store's certificates; with ``distinct``, a certificate that several
        modules read from one card is listed once (module docstring)."""
        problems: list[StoreProblem] = []
        results = await asyncio.gather(
            *(self._certificates_of(m, problems) for m in self._managed))
        real_tokens = [t for ts, _ in results for t in ts]
        entries = [e for _, es in results for e in es]
        if self.demo_store is not None and not real_tokens:
            _, demo_entries = await self._certificates_of(
                self._by_id[self.demo_store.store_id], problems)
            entries.extend(demo_entries)
        self._finish(real_tokens, problems)
        return await self._distinct(entries) if distinct else entries

    async def certificates_in(self, store_id: str) -> list[CertificateEntry]:
        """One store's certificates, every module's own view (no merging): what a handle,
        which names its store, needs; asking the other modules costs card round trips
        (CACKey reads the card's certificates again at every slot listing)."""
        managed = self._by_id.get(store_id)
        if managed is None:
            return []
        _tokens, entries = await self._certificates_of(managed, [])
        return entries

    # -- one row per certificate and card

    async def _distinct(self, entries: list[CertificateEntry]) -> list[CertificateEntry]:
        return self._merge_os_rows(await self._distinct_cards(entries))

    def _merge_os_rows(self, entries: list[CertificateEntry]) -> list[CertificateEntry]:
        """One row per key reached by the OS store and PKCS#11 (module docstring)."""
        os_ids = {m.store.store_id for m in self._managed if m.os_store}
        mine = [e.token.store_id in os_ids for e in entries]
        if not any(mine) or all(mine):  # nothing to compare: no certificate is parsed
            return entries
        by_der: dict[bytes, int] = {}
        by_spki: dict[bytes, int] = {}
        for index, entry in enumerate(entries):
            if entry.token.store_id not in os_ids:
                by_der.setdefault(entry.der, index)
                spki = _public_key_of(entry.der)
                if spki is not None:
                    by_spki.setdefault(spki, index)
        dropped: set[int] = set()
        for index, entry in enumerate(entries):
            if entry.token.store_id not in os_ids:
                continue
            twin = by_der.get(entry.der)
            if twin is None:
                spki = _public_key_of(entry.der)
                twin = by_spki.get(spki) if spki is not None else None
            if twin is None:
                continue
            if entries[twin].key is not None or entry.key is None:
                dropped.add(index)  # PKCS#11 can sign: its row stays
            else:
                dropped.add(twin)  # only the OS store reaches the key
        return [e for i, e in enumerate(entries) if i not in dropped]

    async def _distinct_cards(self, entries: list[CertificateEntry]
                              ) -> list[CertificateEntry]:
        # A module that does not say which reader its slot is (CACKey 0.7.11) reads the
        # card where another module saw the same certificate, if that is one reader.
        seen_in: dict[bytes, set[str]] = {}
        for entry in entries:
            if entry.token.reader:
                seen_in.setdefault(entry.der, set()).add(reader_key(entry.token.reader))
        groups: dict[tuple[bytes, str], list[int]] = {}
        for index, entry in enumerate(entries):
            readers = seen_in.get(entry.der, set())
            if entry.token.reader:
                reader = reader_key(entry.token.reader)
            elif entry.token.kind is StoreKind.PKCS11 and len(readers) == 1:
                [reader] = readers
            else:
                continue
            groups.setdefault((entry.der, reader), []).append(index)
        shared = [(reader, rows) for (_der, reader), rows in groups.items() if len(rows) > 1]
        if not shared:
            return entries
        atrs = await self._current_atrs()
        kept = list(entries)
        dropped: set[int] = set()
        for reader, rows in shared:
            full_name = next((name for name in atrs if reader_key(name) == reader), None)
            order = self._module_order(atrs.get(full_name) if full_name else None)
            best = min(rows, key=lambda i: (entries[i].key is None,
                                            self._rank(entries[i], order), i))
            dropped.update(i for i in rows if i != best)
            # The row names the reader in full where one module cut its name short.
            name = full_name or max((entries[i].token.reader or "" for i in rows), key=len)
            if entries[best].token.reader != name:
                kept[best] = replace(entries[best],
                                     token=replace(entries[best].token, reader=name))
        return [entry for i, entry in enumerate(kept) if i not in dropped]

    async def _current_atrs(self) -> Mapping[str, bytes]:
        return self.reader_atrs() if self.reader_atrs is not None else {}

    def _module_order(self, atr: bytes | None) -> Sequence[Path]:
        """The modules the ATR table names for the card (OpenSC last, or alone)."""
        return self.module_order(atr) if self.module_order is not None else ()

    def _rank(self, entry: CertificateEntry, order: Sequence[Path]) -> int:
        source = Path(self.source_of(entry.token.store_id))
        return next((i for i, path in enumerate(order) if same_file(source, path)),
                    len(order))

    async def close(self) -> None:
        stores = [m.store for m in self._managed]
        if self.demo_store is not None:
            stores.append(self.demo_store)
        results = await asyncio.gather(*(s.close() for s in stores), return_exceptions=True)
        del results  # closing is best effort: a dead module has nothing left to release
