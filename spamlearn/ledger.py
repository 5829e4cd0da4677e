"""The ledger: which message was learned, as what, from where (SQLite).

Every way of learning (CLI, IMAP trainer, Dovecot sieve hook, HTTP service)
goes through one ledger per model, so a message is never counted twice and
a relabel unlearns first.  A row holds the message's content digest, its
label, where it was learned from, and the features it was counted under:
unlearning subtracts exactly those, even if the tokenizer has changed
since, so counts can never drift or go negative.  A ledger made since
2026-11-29 (schema 2) keeps each message's 32-bit token hashes, from which
its buckets follow for any model size, so a crowded model can be counted
again into more buckets (``ModelStore.resize``); an older one (schema 1)
keeps the bucket indices themselves, and goes on doing so.  The schema
number tells them apart for older spamlearn too: it refuses a schema 2
ledger plainly instead of reading hashes as bucket numbers.

The ledger and the model file are two files, so they cannot be written in
one atomic step.  Instead each commit is numbered: the ledger commits
revision R+1 together with an undo record of the rows it changed, then the
model file with revision R+1 replaces the old one.  If the process dies in
between, the next opener finds ledger R+1 beside model R and applies the
undo record: both are back at R, agreeing (see ``ModelStore``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np

from .errors import LedgerError, SpamlearnError, StoreBusyError
from .features import TokenHasher
from .regularfile import hand_to_folder_owner, irregular_kind, make_folders

__all__ = ["Ledger", "LedgerRow", "encode_indices", "decode_indices"]

#: The schema of new ledgers; 1 (rows of bucket indices) is still read and written.
SCHEMA_VERSION = 2
_SCHEMAS_READ = ("1", "2")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    digest TEXT PRIMARY KEY,
    label TEXT NOT NULL CHECK (label IN ('ham', 'spam')),
    learned_at REAL NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    indices BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS undo_state (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS undo (
    digest TEXT PRIMARY KEY,
    label TEXT,
    learned_at REAL,
    source TEXT,
    indices BLOB
);
"""


def encode_indices(indices: np.ndarray) -> bytes:
    """Sorted feature indices or hashes, delta-coded and compressed (about 2
    bytes each for the buckets of a 2**21 model, 3 for 32-bit hashes)."""
    deltas = np.diff(np.asarray(indices, dtype=np.int64), prepend=0).astype(np.uint32)
    return zlib.compress(deltas.tobytes(), 1)


def decode_indices(blob: bytes, n_features: int | None = None) -> np.ndarray:
    """``encode_indices``'s inverse; LedgerError for a blob that is not one
    (or holds an index outside ``n_features``): a tampered or damaged row."""
    try:
        indices = np.cumsum(np.frombuffer(zlib.decompress(blob), dtype=np.uint32).astype(np.int64))
    except (zlib.error, ValueError, TypeError) as exc:
        raise LedgerError(f"a ledger row's feature list is corrupt ({type(exc).__name__})") from None
    if n_features is not None and len(indices) and indices[-1] >= n_features:
        raise LedgerError(f"a ledger row's feature list is corrupt (index {indices[-1]} of {n_features})")
    return indices


@dataclasses.dataclass(frozen=True, slots=True)
class LedgerRow:
    digest: str
    label: str
    learned_at: float
    source: str
    indices: bytes


class Ledger:
    """One SQLite file recording the learned messages of one model.

    Writers are serialised by the model's lock (``ModelStore``); SQLite's own
    locking keeps readers (``spamlearn info``) consistent meanwhile.
    """

    def __init__(self, path: Path, busy_timeout: float = 30.0):
        """``busy_timeout``: how long to wait for another program's lock on the
        file (the model lock keeps spamlearn's own writers apart; this is for
        an admin's ``sqlite3`` shell or a backup that holds a transaction)."""
        self.path = Path(path)
        try:
            # SQLite opens a device or a FIFO as a database (a "disk I/O
            # error", leaving <name>-journal beside it: SPAMLEARN_LEDGER=/dev/null
            # made /dev/null-journal), and a folder as "unable to open".
            kind = irregular_kind(os.stat(self.path).st_mode)
        except FileNotFoundError:
            kind = None
        except OSError as exc:
            raise LedgerError(f"cannot open ledger {self.path}: {exc.strerror}") from exc
        if kind is not None:
            raise LedgerError(f"ledger {self.path} is {kind}, not a ledger file")
        try:
            make_folders(self.path.parent)
            new = not os.path.lexists(self.path)
            self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None)
            self._db.executescript(_SCHEMA)
            if new:
                fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
                try:
                    hand_to_folder_owner(fd, self.path.parent)
                finally:
                    os.close(fd)
            version = self._meta("schema_version")
            if version is None:
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                                 (str(SCHEMA_VERSION),))
                version = str(SCHEMA_VERSION)
            elif version not in _SCHEMAS_READ:
                raise LedgerError(f"ledger {self.path} has schema version {version}; "
                                  f"this spamlearn reads versions {' and '.join(_SCHEMAS_READ)}")
        except sqlite3.DatabaseError as exc:
            raise self._error("open", exc) from exc
        except OSError as exc:
            raise LedgerError(f"cannot open ledger {self.path}: {exc.strerror}") from exc
        #: Rows hold token hashes (schema 2) or the bucket indices of one model size (1).
        self.holds_hashes = version == "2"

    def _error(self, what: str, exc: sqlite3.DatabaseError) -> SpamlearnError:
        """A locked file is "try again later" (exit 75), not a broken ledger (74)."""
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return StoreBusyError(f"ledger {self.path} is locked by another program (an open "
                                  f"sqlite3 shell or backup?); try again later")
        if isinstance(exc, sqlite3.OperationalError) and "readonly" in str(exc):
            # SQLite writes a journal beside the file, so a read-only folder
            # fails here too, as "attempt to write a readonly database".
            return LedgerError(f"cannot {what} ledger {self.path}: the file or its folder "
                               f"{self.path.parent} is not writable by this user")
        return LedgerError(f"cannot {what} ledger {self.path}: {exc}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def connection(self) -> sqlite3.Connection:
        return self._db

    # -- reading ------------------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    @property
    def revision(self) -> int:
        try:
            value = self._meta("revision") or 0
        except sqlite3.DatabaseError as exc:
            raise self._error("read", exc) from exc
        try:
            return int(value)
        except ValueError:
            raise LedgerError(f"ledger {self.path} is corrupt (revision {value!r})") from None

    def _row(self, row: tuple) -> LedgerRow:
        if row[1] not in ("spam", "ham"):
            raise LedgerError(f"ledger {self.path} is corrupt: message {row[0]} has label {row[1]!r}")
        return LedgerRow(*row)

    def encode_features(self, hashes: np.ndarray, indices: np.ndarray) -> bytes:
        """A learned message's features as this ledger keeps them."""
        return encode_indices(hashes if self.holds_hashes else indices)

    def row_indices(self, row: LedgerRow, n_features: int) -> np.ndarray:
        """The bucket indices ``row`` was counted under in a model of ``n_features``."""
        if not self.holds_hashes:
            return decode_indices(row.indices, n_features)
        return TokenHasher(n_features).fold(decode_indices(row.indices, 2**32))

    def get(self, digest: str) -> LedgerRow | None:
        try:
            row = self._db.execute(
                "SELECT digest, label, learned_at, source, indices FROM messages WHERE digest = ?",
                (digest,)).fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._error("read", exc) from exc
        return self._row(row) if row else None

    def integrity_problems(self) -> list[str]:
        """What SQLite's quick check finds wrong with the file, and schema
        objects spamlearn never makes (a trigger would change rows behind
        the model's back)."""
        try:
            found = [row[0] for row in self._db.execute("PRAGMA quick_check").fetchall()]
            extra = self._db.execute("SELECT type, name FROM sqlite_master "
                                     "WHERE type IN ('trigger', 'view')").fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._error("read", exc) from exc
        problems = [] if found == ["ok"] else [f"the ledger file is damaged ({'; '.join(found[:3])})"]
        problems += [f"the ledger holds a {kind} ({name}) spamlearn never makes" for kind, name in extra]
        return problems

    def _all(self, sql: str) -> list[tuple]:
        try:
            return self._db.execute(sql).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._error("read", exc) from exc

    def counts(self) -> dict[str, int]:
        rows = self._all("SELECT label, COUNT(*) FROM messages GROUP BY label")
        out = {"ham": 0, "spam": 0}
        out.update({label: n for label, n in rows})
        return out

    def last_learned_at(self) -> float | None:
        rows = self._all("SELECT MAX(learned_at) FROM messages")
        return rows[0][0] if rows else None

    def by_source(self) -> list[tuple[str, str, int, float]]:
        """(source, label, count, last learned) for ``spamlearn info``."""
        return self._all("SELECT source, label, COUNT(*), MAX(learned_at) FROM messages "
                         "GROUP BY source, label ORDER BY source, label")

    def rows(self) -> Iterable[LedgerRow]:
        try:
            for row in self._db.execute("SELECT digest, label, learned_at, source, indices FROM messages"):
                yield self._row(row)
        except sqlite3.DatabaseError as exc:
            raise self._error("read", exc) from exc

    # -- writing ------------------------------------------------------------------
    @contextlib.contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction; any failure rolls it back whole."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            raise self._error(what, exc) from exc

    @staticmethod
    def _put_row(db: sqlite3.Connection, digest: str, row: tuple | None) -> None:
        """Store (label, learned_at, source, indices) for ``digest``, or delete it (None)."""
        if row is None or row[0] is None:
            db.execute("DELETE FROM messages WHERE digest = ?", (digest,))
        else:
            db.execute("INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?, ?)", (digest, *row))

    @staticmethod
    def _put_state(db: sqlite3.Connection, key: str, value: str | None) -> None:
        if value is None:
            db.execute("DELETE FROM state WHERE key = ?", (key,))
        else:
            db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (key, value))

    # The state readers translate SQLite's errors as every other reader does:
    # raw, a damaged state table or another program's lock was an "internal
    # error (a bug)", exit 70, in `spamlearn status` and each IMAP pass.
    def get_state(self, key: str) -> str | None:
        """A value that a learner keeps with the ledger (e.g. IMAP folder state)."""
        try:
            row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._error("read", exc) from exc
        return row[0] if row else None

    def state_items(self, prefix: str = "") -> list[tuple[str, str]]:
        try:
            return self._db.execute("SELECT key, value FROM state WHERE substr(key, 1, ?) = ? "
                                    "ORDER BY key", (len(prefix), prefix)).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._error("read", exc) from exc

    def commit(self, changes: Mapping[str, LedgerRow | None], revision: int,
               state: Mapping[str, str | None] | None = None) -> None:
        """Apply ``changes`` (digest -> new row, or None to delete) as ``revision``.

        One SQLite transaction: the rows, the ``state`` values (the IMAP
        trainer's folder positions), an undo record of what they replaced,
        and the new revision number all land together or not at all.
        """
        with self._transaction("write") as db:
            db.execute("DELETE FROM undo")
            for digest, row in changes.items():
                old = db.execute("SELECT label, learned_at, source, indices FROM messages "
                                 "WHERE digest = ?", (digest,)).fetchone()
                db.execute("INSERT INTO undo VALUES (?, ?, ?, ?, ?)", (digest, *(old or (None,) * 4)))
                self._put_row(db, digest, None if row is None else
                              (row.label, row.learned_at, row.source, row.indices))
            db.execute("DELETE FROM undo_state")
            for key, value in (state or {}).items():
                old = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
                db.execute("INSERT INTO undo_state VALUES (?, ?)", (key, old[0] if old else None))
                self._put_state(db, key, value)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('revision', ?)", (str(revision),))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('committed_at', ?)", (str(time.time()),))

    def undo_last(self, to_revision: int) -> int:
        """Revert the last commit (its model file never landed); returns rows restored."""
        with self._transaction("repair") as db:
            undo = db.execute("SELECT digest, label, learned_at, source, indices FROM undo").fetchall()
            for digest, *row in undo:
                self._put_row(db, digest, tuple(row))
            for key, value in db.execute("SELECT key, value FROM undo_state").fetchall():
                self._put_state(db, key, value)
            db.execute("DELETE FROM undo")
            db.execute("DELETE FROM undo_state")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('revision', ?)", (str(to_revision),))
        return len(undo)
