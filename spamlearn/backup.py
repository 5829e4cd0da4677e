"""Backups of a model and its ledger: one tar archive holding an agreeing pair.

Copying ``model.joblib`` and ``model.ledger`` with ``cp`` while a learner
runs can catch them at different revisions (or a half-written SQLite
file); ``write_backup`` copies both under the model's lock.  The archive is
a plain tar (gzip-compressed when its name ends in ``.gz`` or ``.tgz``)
with two members, so it can be inspected with ``tar tvf`` and restored by
hand in an emergency.  ``restore_backup`` checks the pair (the model's
counts must equal the sum of the ledger's messages) before it replaces
anything, and keeps the replaced pair as ``*.before-restore``.  The ledger
also holds the IMAP trainer's and the sieve hook's state, so a restored
pair goes on where the backup left off.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path

from .errors import BackupError, SpamlearnError
from .modelstore import ModelStore
from .store import fsync_dir, read_header

__all__ = ["BackupSummary", "write_backup", "restore_backup", "MODEL_MEMBER", "LEDGER_MEMBER"]

MODEL_MEMBER = "model.joblib"
LEDGER_MEMBER = "model.ledger"


@dataclasses.dataclass(frozen=True)
class BackupSummary:
    revision: int
    n_spam: int
    n_ham: int

    def describe(self) -> str:
        return f"revision {self.revision}: {self.n_spam} spam, {self.n_ham} ham"


def _tar_mode(name: str, mode: str) -> str:
    compressed = name.endswith((".gz", ".tgz"))
    if mode == "w":
        return "w:gz" if compressed else "w"
    return "r:*"


def write_backup(store: ModelStore, destination: Path | None) -> BackupSummary:
    """Write ``store``'s model and ledger as a tar archive to ``destination``
    (``None``: standard output), replacing it atomically.

    The lock is held only while the two files are copied to a temporary
    folder, not while the archive is written to a slow pipe or disk, so
    learners wait a moment at most.
    """
    with tempfile.TemporaryDirectory(prefix="spamlearn-backup-") as tmp:
        folder = Path(tmp)
        classifier = store.snapshot(folder, MODEL_MEMBER, LEDGER_MEMBER)
        summary = BackupSummary(classifier.revision, classifier.model.n_spam_, classifier.model.n_ham_)
        if destination is None:
            with tarfile.open(fileobj=sys.stdout.buffer, mode="w|") as tar:
                _add_pair(tar, folder)
            sys.stdout.buffer.flush()
            return summary
        fd, partial = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                with tarfile.open(fileobj=out, mode=_tar_mode(destination.name, "w")) as tar:
                    _add_pair(tar, folder)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, destination)
            partial = None
            fsync_dir(destination.parent)
        finally:
            if partial is not None:
                os.unlink(partial)
    return summary


def _add_pair(tar: tarfile.TarFile, folder: Path) -> None:
    for name in (MODEL_MEMBER, LEDGER_MEMBER):
        info = tar.gettarinfo(folder / name, arcname=name)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        with open(folder / name, "rb") as fh:
            tar.addfile(info, fh)


def _extract_pair(archive: Path, folder: Path) -> tuple[Path, Path]:
    """The archive's model and ledger, written into ``folder``.

    Only the two members by their exact names, as regular files, are read:
    an archive is never unpacked as a whole (no paths outside ``folder``,
    links or devices from a tar that someone else made).
    """
    try:
        with tarfile.open(archive, mode=_tar_mode(archive.name, "r")) as tar:
            found = {}
            for member in tar:
                if member.name in (MODEL_MEMBER, LEDGER_MEMBER) and member.isreg() and member.name not in found:
                    source = tar.extractfile(member)
                    target = folder / member.name
                    with open(target, "wb") as out:
                        while chunk := source.read(1 << 20):
                            out.write(chunk)
                        out.flush()
                        os.fsync(out.fileno())
                    found[member.name] = target
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise BackupError(f"{archive} is not a spamlearn backup (not a readable tar archive: {exc})") from None
    missing = [name for name in (MODEL_MEMBER, LEDGER_MEMBER) if name not in found]
    if missing:
        raise BackupError(f"{archive} is not a spamlearn backup: no {' or '.join(missing)} in it")
    return found[MODEL_MEMBER], found[LEDGER_MEMBER]


def restore_backup(store: ModelStore, archive: Path) -> BackupSummary:
    """Replace ``store``'s model and ledger with the pair in ``archive``.

    The pair is unpacked beside the store's files (so it can be renamed
    into place) and checked first; nothing is replaced unless the model's
    counts equal the sum of the ledger's messages.

    Raises
    ------
    BackupError
        The archive is not a spamlearn backup, or its pair disagrees.
    StoreBusyError
        A learner holds the lock for longer than the lock timeout.
    """
    store.model_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".spamlearn-restore-", dir=store.model_path.parent) as tmp:
        model_file, ledger_file = _extract_pair(archive, Path(tmp))
        staged = ModelStore(model_file, ledger_file, lock_timeout=store.lock_timeout)
        try:
            header = read_header(model_file)
            problems = staged.check()
        except SpamlearnError as exc:
            raise BackupError(f"{archive}: {exc}") from None
        if problems:
            raise BackupError(f"{archive}: its model and ledger disagree: {'; '.join(problems)}")
        store.replace_with(model_file, ledger_file)
    return BackupSummary(int(header.get("revision", 0)), int(header["n_spam"]), int(header["n_ham"]))
