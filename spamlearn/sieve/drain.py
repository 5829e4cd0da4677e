"""Learn what the spool holds, through the same ModelStore and ledger as every learner.

The order of work is what makes the queue safe:

1. take the spool's lock (one drain at a time);
2. read ``new/`` in the order the pipe program ran;
3. per model (a user's own, if configured, else the shared one) open one
   ``ModelStore`` session and learn each message;
4. leave the session, which commits ledger and model;
5. only then delete the spool files.

A crash before 4 loses nothing (the files are still queued and the model
was not written); a crash between 4 and 5 leaves files whose messages the
ledger already knows, so the next drain finds them "already known" and
learns nothing twice.  A user who moved a message into Junk and back out
before the drain ran leaves two files for one message: only the last
verdict is learned (the earlier one is "superseded"), which is what the
ledger would end with anyway, minus a needless relabel.

What cannot be learned (a file the drain may not read, anything that is not
a regular file, a body that is not a message) is moved to ``failed/`` and
counted as failed, and the rest of the queue is learned: one bad file must
not stop the queue for good.  What cannot even be moved is left, logged and
counted, on every run until someone removes it.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from ..config import Settings
from ..errors import MessageError, SpamlearnError
from ..modelstore import Action, ModelStore
from ..sources import sieve_source
from .spool import Spool, SpoolEntry

__all__ = ["DrainReport", "drain_spool"]

log = logging.getLogger("spamlearn.sieve")

#: Messages learned per session before a commit and the deletion of their
#: files: bounds both the memory used and what a crash makes us redo.
DEFAULT_BATCH = 500

#: Read errors that are the drain's own trouble, not the file's: the file
#: stays queued for the next run instead of going to failed/ with a
#: healthy message in it.
_DRAIN_TROUBLE = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM})


@dataclasses.dataclass
class DrainReport:
    """What one drain did, for the summary line and ``--json``."""

    learned: int = 0
    relabelled: int = 0
    already_known: int = 0
    superseded: int = 0
    failed: int = 0
    stale_tmp_removed: int = 0
    models: set[str] = dataclasses.field(default_factory=set)
    errors: list[SpamlearnError] = dataclasses.field(default_factory=list)

    @property
    def processed(self) -> int:
        return self.learned + self.relabelled + self.already_known + self.superseded

    def count(self, action: str) -> None:
        if action == Action.LEARNED:
            self.learned += 1
        elif action == Action.RELABELLED:
            self.relabelled += 1
        elif action == Action.SUPERSEDED:
            self.superseded += 1
        else:
            self.already_known += 1

    def summary(self) -> str:
        line = (f"sieve drain: learned {self.learned}, relabelled {self.relabelled}, "
                f"already known {self.already_known}, superseded {self.superseded}, "
                f"failed {self.failed}")
        if self.errors:
            line += f", not drained: {len(self.errors)} model(s) unavailable"
        return line

    def as_dict(self) -> dict:
        return {"learned": self.learned, "relabelled": self.relabelled,
                "already_known": self.already_known, "superseded": self.superseded,
                "failed": self.failed, "stale_tmp_removed": self.stale_tmp_removed,
                "models": sorted(self.models), "errors": [str(e) for e in self.errors]}


def drain_spool(spool: Spool, settings: Settings, *, batch_size: int = DEFAULT_BATCH,
                lock_timeout: float = 0.0,
                on_committed: Callable[[list[SpoolEntry]], None] | None = None) -> DrainReport:
    """Learn every queued message once, then delete its file.

    Parameters
    ----------
    spool : Spool
    settings : Settings
        Picks the model per user (``ModelStore.from_settings``).
    batch_size : int
        Messages per commit.
    lock_timeout : float
        Seconds to wait for another drain.
    on_committed : callable, optional
        Called with a batch's entries after their commit and before their
        files are deleted (tests use it to stand in for a crash there).

    Returns
    -------
    DrainReport
        A model that could not be opened (busy, corrupt) is reported in
        ``errors``; its files stay queued and the other models are drained.

    Raises
    ------
    ConfigError
        The spool's folders are missing.
    StoreBusyError
        Another drain holds the spool's lock.
    """
    spool.check()
    report = DrainReport()
    with spool.lock(lock_timeout):
        report.stale_tmp_removed = spool.remove_stale_tmp()
        entries, strays = spool.entries()
        for path, reason in strays:
            _set_aside(spool, path, reason, report)
        by_model: dict[Path, list[SpoolEntry]] = {}
        for entry in entries:
            by_model.setdefault(settings.model_path_for(entry.user), []).append(entry)
        for model_entries in by_model.values():
            for start in range(0, len(model_entries), batch_size):
                batch = model_entries[start:start + batch_size]
                try:
                    _drain_batch(spool, settings, batch, report, on_committed)
                except SpamlearnError as exc:
                    # This model is busy or broken: keep its files, drain the others.
                    log.warning("%s", exc)
                    report.errors.append(exc)
                    break
    return report


def _set_aside(spool: Spool, path: Path, reason: str, report: DrainReport) -> None:
    """Move ``path`` to failed/ and count it; one that cannot be moved is left and counted."""
    try:
        spool.set_aside(path, reason)
    except FileNotFoundError:
        return  # deleted by hand meanwhile: nothing to set aside
    except OSError as exc:
        # Left in new/, it is met (and reported) again by every drain until
        # someone removes it; the rest of the queue is learned meanwhile.
        log.warning("%s: %s; cannot move it to %s (%s): skipped", path.name, reason,
                    spool.failed, exc.strerror or exc)
    else:
        log.warning("%s: %s; moved to %s", path.name, reason, spool.failed)
    report.failed += 1


def _read(spool: Spool, entry: SpoolEntry, report: DrainReport) -> bytes | None:
    """The entry's bytes, or None when there is nothing to read (set aside, or gone)."""
    try:
        return entry.read()
    except FileNotFoundError:
        return None  # deleted by hand meanwhile: nothing to learn
    except OSError as exc:
        if exc.errno in _DRAIN_TROUBLE:
            raise
        _set_aside(spool, entry.path, f"cannot be read: {exc.strerror or exc}", report)
        return None


def _latest_per_message(spool: Spool, batch: Sequence[SpoolEntry], report: DrainReport,
                        key: Callable[[bytes], str]) -> tuple[list[tuple[SpoolEntry, str]], list[SpoolEntry]]:
    """The last entry per message to learn, and every readable entry to delete.

    ``key``: the session's ledger key of a message (``LearningSession.key``),
    not the bare digest: a ledger from before the digest left delivery
    headers out holds each user's copy of a delivery as a message of its
    own, and one user's move out of Junk was dropped as the other's
    duplicate (a helper's review)."""
    latest: dict[str, SpoolEntry] = {}
    done: list[SpoolEntry] = []
    for entry in batch:
        raw = _read(spool, entry, report)
        if raw is None:
            continue
        try:
            digest = key(raw)
        except MessageError as exc:
            _set_aside(spool, entry.path, f"not a message: {exc}", report)
            continue
        latest[digest] = entry
        done.append(entry)
    return [(entry, digest) for digest, entry in latest.items()], done


def _drain_batch(spool: Spool, settings: Settings, batch: Sequence[SpoolEntry],
                 report: DrainReport,
                 on_committed: Callable[[list[SpoolEntry]], None] | None) -> None:
    store = ModelStore.from_settings(settings, batch[0].user)
    counts = DrainReport()
    with store.session(source="sieve") as session:
        to_learn, done = _latest_per_message(spool, batch, report, session.key)
        for entry, _digest in sorted(to_learn, key=lambda pair: pair[0]):
            # Read again rather than held since the first pass, to bound the
            # memory a batch takes; it may have changed since.
            raw = _read(spool, entry, report)
            if raw is None:
                continue
            try:
                # The time the pipe ran: an HTTP request for an older move,
                # still waiting for the model, cannot land after this one.
                outcome = session.learn(raw, entry.label, source=sieve_source(entry.user),
                                        verdict_at=entry.given_at)
            except MessageError as exc:  # e.g. an empty file: nothing was learned from it
                _set_aside(spool, entry.path, f"not a message: {exc}", report)
                continue
            counts.count(outcome.action)
            log.info("%s (%s): %s", entry.path.name, store.model_path, outcome.describe())
    # Committed: now, and only now, the queued files may go.
    report.learned += counts.learned
    report.relabelled += counts.relabelled
    report.already_known += counts.already_known
    report.superseded += counts.superseded + len(done) - len(to_learn)
    report.models.add(str(store.model_path))
    if on_committed is not None:
        on_committed(done)
    for entry in done:  # oldest first: a crash midway leaves only the newer verdicts
        entry.remove()
