"""Backups of a model and its ledger: one tar archive holding an agreeing pair.

Copying ``model.joblib`` and ``model.ledger`` with ``cp`` while a learner
runs can catch them at different revisions (or a half-written SQLite
file); ``write_backup`` copies both under the model's lock and checks the
copy (the model's counts must equal the sum of the ledger's messages)
before it writes the archive.  The archive is a plain tar (compressed as
its name says: ``.gz``/``.tgz``, ``.bz2``, ``.xz``) with two members, so it
can be inspected with ``tar tvf`` and restored by hand in an emergency.
``restore_backup`` reads only those two members, checks the pair, and
renames both into place, keeping the replaced pair as ``*.before-restore``.
The ledger also holds the IMAP trainer's and the sieve hook's state, so a
restored pair goes on where the backup left off.
"""

from __future__ import annotations

import contextlib
import dataclasses
import lzma
import os
import re
import shutil
import signal
import sqlite3
import stat
import sys
import tarfile
import tempfile
import time
import zlib
from pathlib import Path
from typing import BinaryIO

from .errors import BackupError, LedgerError, ModelFileError, SpamlearnError
from .modelstore import ModelStore
from .regularfile import hand_to_folder_owner, make_folders, new_file_mode
from .store import fsync_dir, read_header

__all__ = ["BackupSummary", "write_backup", "restore_backup", "archive_compression", "archive_label",
           "own_files", "MODEL_MEMBER", "LEDGER_MEMBER"]

MODEL_MEMBER = "model.joblib"
LEDGER_MEMBER = "model.ledger"
_ASIDE = ".before-restore"
_SQLITE_MAGIC = b"SQLite format 3\0"
# What SQLite may leave beside a ledger after a crash: applied to a new
# file of the same name, they corrupt it.
_SQLITE_LEFTOVERS = ("-journal", "-wal", "-shm")


@dataclasses.dataclass(frozen=True)
class _Leftover:
    """A temporary file or folder backup or restore makes (``tempfile``'s
    names: prefix, 8 characters of [a-z0-9_], suffix)."""

    prefix: str
    folder: bool
    suffix: str = ""

    def matches(self, name: str, mode: int) -> bool:
        shape = re.escape(self.prefix) + "[a-z0-9_]{8}" + re.escape(self.suffix)
        return (stat.S_ISDIR(mode) if self.folder else stat.S_ISREG(mode)) and bool(re.fullmatch(shape, name))


#: What a backup's or restore's temporary folder can hold.
_COPY_NAMES = frozenset({MODEL_MEMBER, LEDGER_MEMBER, MODEL_MEMBER + ".lock"}
                        | {LEDGER_MEMBER + x for x in _SQLITE_LEFTOVERS})   # the lock: its check's
_BACKUP_COPY = _Leftover("spamlearn-backup-", folder=True)               # in $TMPDIR
_PARTIAL_ARCHIVE = _Leftover(".spamlearn-partial-", folder=False, suffix=".tmp")  # beside the archive
_RESTORE_STAGING = _Leftover(".spamlearn-restore-", folder=True)         # beside the model

_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")      # gzip, bzip2, xz
_COMPRESSION = {".gz": "gz", ".tgz": "gz", ".bz2": "bz2", ".tbz": "bz2", ".tbz2": "bz2", ".xz": "xz",
                ".txz": "xz", ".tar": ""}


def own_files(store: ModelStore) -> list[Path]:
    """Every file a store keeps, or a restore leaves, beside its model: none
    may be overwritten by an archive."""
    files = [store.model_path, store.ledger_path, store.lock_path, store.restore_marker]
    files += [Path(f"{store.ledger_path}{suffix}") for suffix in _SQLITE_LEFTOVERS]
    files += [f.with_name(f.name + _ASIDE) for f in (store.model_path, store.ledger_path)]
    return files


@dataclasses.dataclass(frozen=True)
class BackupSummary:
    revision: int
    n_spam: int
    n_ham: int
    kept_previous: bool = False

    def describe(self) -> str:
        return f"revision {self.revision}: {self.n_spam} spam, {self.n_ham} ham"


def archive_compression(name: str) -> str:
    """tarfile's compression for an archive called ``name`` ("" for none).

    Raises
    ------
    ValueError
        A compression tarfile cannot write (``.zst``, ``.lz4``...).
    """
    suffix = Path(name.lower()).suffix
    if suffix in _COMPRESSION:
        return _COMPRESSION[suffix]
    if suffix in (".zst", ".zstd", ".lz4", ".lzma", ".lz", ".z", ".zip"):
        raise ValueError(f"cannot write {suffix} archives; use .tar, .tar.gz, .tar.bz2 or .tar.xz")
    return ""


# -- backup ----------------------------------------------------------------------------------
def write_backup(store: ModelStore, destination: Path | None) -> BackupSummary:
    """Write ``store``'s model and ledger as a tar archive to ``destination``
    (``None``: standard output), replacing it atomically.

    The lock is held only while the two files are copied to a temporary
    folder, not while the copy is checked or the archive written to a slow
    pipe or disk, so learners wait a moment at most.

    Raises
    ------
    LedgerError
        The model and ledger disagree (``spamlearn info --check``): an
        archive of them could not be restored.
    """
    _remove_stale(Path(tempfile.gettempdir()), _BACKUP_COPY, own_only=True)
    if destination is not None:
        _remove_stale(destination.parent, _PARTIAL_ARCHIVE, own_only=True)
    with tempfile.TemporaryDirectory(prefix=_BACKUP_COPY.prefix) as tmp:
        folder = Path(tmp)
        classifier = store.snapshot(folder, MODEL_MEMBER, LEDGER_MEMBER)
        problems = ModelStore(folder / MODEL_MEMBER, folder / LEDGER_MEMBER).check()
        if problems:
            raise LedgerError(f"{store.model_path} and its ledger disagree ({'; '.join(problems)}): "
                              f"not backed up; see `spamlearn info --check`")
        summary = BackupSummary(classifier.revision, classifier.model.n_spam_, classifier.model.n_ham_)
        if destination is None:
            with tarfile.open(fileobj=sys.stdout.buffer, mode="w|") as tar:
                _add_pair(tar, folder)
            sys.stdout.buffer.flush()
            return summary
        compression = archive_compression(destination.name)
        # mkstemp makes it 0600, which it keeps: it holds what users' mail taught the model.
        fd, partial = tempfile.mkstemp(prefix=_PARTIAL_ARCHIVE.prefix, suffix=_PARTIAL_ARCHIVE.suffix,
                                       dir=destination.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                with tarfile.open(fileobj=out, mode=f"w:{compression}" if compression else "w") as tar:
                    _add_pair(tar, folder)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, destination)
            partial = None
            fsync_dir(destination.parent)
        except OSError as exc:
            if exc.filename is not None:
                raise
            # A failed write names no file: "disk full: writing the output"
            # left the admin to guess where (which of --all's archives?).
            raise OSError(exc.errno, exc.strerror, str(destination)) from exc
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


# -- restore ---------------------------------------------------------------------------------
def _member_name(member: tarfile.TarInfo) -> str:
    return member.name[2:] if member.name.startswith("./") else member.name


def _open_archive(source: Path | BinaryIO) -> tarfile.TarFile:
    # A stream (standard input) is read once, front to back: tarfile's
    # stream mode, which still detects gzip, bzip2 and xz.
    if isinstance(source, Path):
        return tarfile.open(source, mode="r:*")
    return tarfile.open(fileobj=source, mode="r|*")


def _plain_tar_size(source: Path | BinaryIO) -> int | None:
    """An uncompressed archive file's size (its members must fit in it), or None."""
    if not isinstance(source, Path):
        return None
    with contextlib.suppress(OSError):
        with open(source, "rb") as fh:
            if not fh.read(6).startswith(_COMPRESSED_MAGIC):
                return os.fstat(fh.fileno()).st_size
    return None


def archive_label(source: Path | BinaryIO) -> str:
    """How messages name an archive: its path, or "standard input"."""
    return str(source) if isinstance(source, Path) else "standard input"


def _extract_pair(source: Path | BinaryIO, model_target: Path, ledger_target: Path) -> None:
    """The archive's model and ledger, written to the two targets.

    Only the two members by their names (``./`` allowed, as ``tar -C dir .``
    writes), as regular files, are read: an archive is never unpacked as a
    whole (no paths outside the targets, links or devices from a tar that
    someone else made).  Each is checked by its first bytes and its size
    against the free space before it is written.  The archive is read in
    one pass, so it may come from a pipe.
    """
    archive = archive_label(source)
    plain_size = _plain_tar_size(source)
    targets = {MODEL_MEMBER: model_target, LEDGER_MEMBER: ledger_target}
    found: set[str] = set()
    try:
        with _open_archive(source) as tar:
            for member in tar:
                name = _member_name(member)
                if name not in targets:
                    continue
                if name in found:
                    raise BackupError(f"{archive} holds {name} twice: which one is meant is not clear")
                if not member.isreg() or member.issparse():
                    raise BackupError(f"{archive}: {name} is not a plain file in the archive")
                _extract_member(archive, tar, member, name, targets[name], plain_size)
                found.add(name)
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError, TypeError, MemoryError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        # TypeError: tarfile's stream reader calls ord() on a read that came
        # back empty when a gzip header is cut short (Python 3.11-3.13).
        # MemoryError: a pax header claiming a terabyte, which tarfile reads whole.
        if isinstance(exc, TypeError) and isinstance(source, Path):
            raise
        first_line = ("cut short" if isinstance(exc, TypeError) else
                      "a header claims more than memory holds" if isinstance(exc, MemoryError) else
                      (str(exc).splitlines() or [type(exc).__name__])[0].rstrip(": "))
        if first_line.startswith("file could not be opened successfully"):
            # tarfile tried each compression in turn; its list says the same.
            first_line = "neither plain nor gzip, bzip2 or xz compressed"
        raise BackupError(f"{archive} is not a spamlearn backup (not a readable tar archive: "
                          f"{first_line})") from None
    missing = [name for name in targets if name not in found]
    if missing:
        raise BackupError(f"{archive} is not a spamlearn backup: no {' or '.join(missing)} in it")


def _extract_member(archive: str, tar: tarfile.TarFile, member: tarfile.TarInfo, name: str,
                    target: Path, plain_size: int | None) -> None:
    source = tar.extractfile(member)
    head = source.read(len(_SQLITE_MAGIC))
    if (name == LEDGER_MEMBER and head != _SQLITE_MAGIC) or (
            name == MODEL_MEMBER and (not head or head[0] not in (0x78, 0x80))):
        raise BackupError(f"{archive} is not a spamlearn backup: its {name} is not "
                          f"{'a ledger' if name == LEDGER_MEMBER else 'a model file'}")
    if plain_size is not None and member.offset_data + member.size > plain_size:
        # A plain tar holds its members' bytes as they are: a size past its
        # end is a damaged header (or a cut-short file), not a lack of space.
        raise BackupError(f"{archive} is damaged or cut short: its {name} says it is "
                          f"{member.size:,} bytes, past the archive's end")
    # The staging folder's own name, not the /proc/self/fd one it is held by.
    staging = Path(os.path.realpath(target.parent))
    free = shutil.disk_usage(staging).free
    if member.size > free:
        if plain_size is None and _ends_before(source, min(free, _PROBE_BYTES)):
            raise BackupError(f"{archive} is damaged or cut short: its {name} says it is "
                              f"{member.size:,} bytes, but the archive ends first")
        raise ModelFileError(f"{archive}: its {name} says it is {member.size:,} bytes, more than the "
                             f"{free:,} free beside {target.name} ({staging.parent})")
    with open(target, "wb") as out:
        out.write(head)
        while chunk := source.read(1 << 20):
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())


#: How far a compressed archive's member is read, when its header claims
#: more than the free space, to tell a damaged header from a real lack of
#: space (its size cannot be checked against the file's, as a plain tar's).
_PROBE_BYTES = 64 << 20


def _ends_before(data: BinaryIO, limit: int) -> bool:
    """Whether ``data`` runs out before ``limit`` bytes (read and dropped)."""
    seen = 0
    try:
        while seen < limit:
            chunk = data.read(min(1 << 20, limit - seen))
            if not chunk:
                return True
            seen += len(chunk)
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError):
        return True
    return False


def restore_backup(store: ModelStore, source: Path | BinaryIO) -> BackupSummary:
    """Replace ``store``'s model and ledger with the pair in ``source``, an
    archive's path or a binary stream (standard input).

    Each file is unpacked beside the one it replaces (so it can be renamed
    into place, whatever file system each is on) and the pair checked
    first; nothing is replaced unless the model's counts equal the sum of
    the ledger's messages.

    Raises
    ------
    BackupError
        The archive is not a spamlearn backup, or its pair disagrees.
    StoreBusyError
        A learner holds the lock for longer than the lock timeout.
    """
    for path in (store.model_path, store.ledger_path):
        with contextlib.suppress(FileNotFoundError):
            mode = os.stat(path).st_mode
            if not stat.S_ISREG(mode):
                kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
                raise ModelFileError(f"{path} is {kind}: nothing restored")
    created: list[Path] = []
    try:
        for folder in (store.model_path.parent, store.ledger_path.parent):
            _make_folder(folder, created)
            _remove_stale(folder, _RESTORE_STAGING)
        return _restore_into(store, source)
    except BaseException:
        # Nothing was restored: take back the folders this restore made, so
        # a mistyped path leaves no trace.  rmdir removes only an empty
        # folder: one holding the model's lock file (a failure once the
        # pair was being installed) stays, since a learner may hold it.
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _make_folder(folder: Path, created: list[Path]) -> None:
    """Create ``folder`` and its missing parents (handed to the owner above
    when root makes them), adding to ``created`` each that this call made."""
    created.extend(make_folders(folder))


def _restore_into(store: ModelStore, source: Path | BinaryIO) -> BackupSummary:
    with contextlib.ExitStack() as stack:
        staging = {}
        for name, path in ((MODEL_MEMBER, store.model_path), (LEDGER_MEMBER, store.ledger_path)):
            try:
                # ignore_cleanup_errors: a name swapped for a link (see
                # _held_folder) made the removal fail a restore that was done.
                folder = Path(stack.enter_context(tempfile.TemporaryDirectory(
                    prefix=_RESTORE_STAGING.prefix, dir=path.parent, ignore_cleanup_errors=True)))
            except OSError as exc:
                # The error named the staging folder ".spamlearn-restore-x1y2"
                # that could not be made, not the folder that is the problem.
                raise ModelFileError(f"cannot write in {path.parent} ({exc.strerror or exc}): "
                                     f"nothing restored") from None
            staging[name] = _held_folder(stack, folder) / name
        model_file, ledger_file = staging[MODEL_MEMBER], staging[LEDGER_MEMBER]
        _extract_pair(source, model_file, ledger_file)
        archive = archive_label(source)
        header = _check_pair(archive, model_file, ledger_file)
        kept = _install_pair(store, model_file, ledger_file, archive)
    return BackupSummary(int(header.get("revision", 0)), int(header["n_spam"]), int(header["n_ham"]), kept)


def _held_folder(stack: contextlib.ExitStack, folder: Path) -> Path:
    """A name of the staging ``folder`` that stays this very folder.

    It is made in the model's folder, which the mail user may own: root
    restoring there wrote the archive's members, and then chmodded and
    chowned them, by a name the folder's owner could meanwhile rename and
    replace with a link (seen: a root-only 0600 file overwritten with the
    ledger, a helper's review).  So the folder is opened once, without
    following a link, checked to be the one mkdtemp made (ours, 0700: no
    one else can make such a folder, nor write in it), and named through
    its descriptor, ``/proc/self/fd/N``, which a rename or link cannot
    redirect.  Where there is no /proc, the plain name.
    """
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ModelFileError(f"the staging folder {folder} was replaced as it was made "
                             f"({exc.strerror}): nothing restored") from None
    stack.callback(os.close, fd)
    info = os.fstat(fd)
    if info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise ModelFileError(f"the staging folder {folder} was replaced as it was made "
                             f"(by the owner of {folder.parent}?): nothing restored")
    held = Path(f"/proc/self/fd/{fd}")
    return held if held.is_dir() else folder


def _remove_stale(folder: Path, kind: _Leftover, own_only: bool = False, older_than: float = 86_400) -> None:
    """Remove what a backup or restore killed outright (SIGKILL, a crash)
    left in ``folder``: whole copies of a model and ledger (folders) or a
    partial archive (a file), named exactly as ``tempfile`` names them, a
    day old (a younger one may be another run's, still at work); with
    ``own_only``, only this user's (in a shared folder such as /tmp).
    Nothing else is touched: not a file or folder of the admin's that
    merely starts the same way."""
    now = time.time()
    for leftover in folder.glob(kind.prefix + "*"):
        with contextlib.suppress(OSError):
            info = leftover.lstat()
            if (not kind.matches(leftover.name, info.st_mode) or now - info.st_mtime <= older_than
                    or (own_only and info.st_uid != os.geteuid())):
                continue
            if kind.folder and not {p.name for p in leftover.iterdir()} <= _COPY_NAMES:
                continue        # holds something no backup or restore puts there
            if kind.folder:
                shutil.rmtree(leftover, ignore_errors=True)     # never follows a link inside
            else:
                leftover.unlink()


def _check_pair(archive: str, model_file: Path, ledger_file: Path) -> dict:
    """The archive's model header, once the pair is known to agree; the
    staged ledger is left in rollback-journal mode, as spamlearn makes them."""
    def named(text: str) -> str:     # the archive's names, not the staging folder's
        return text.replace(str(model_file), f"{archive}:{MODEL_MEMBER}").replace(
            str(ledger_file), f"{archive}:{LEDGER_MEMBER}")

    try:
        db = sqlite3.connect(ledger_file, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=DELETE").fetchall()
        finally:
            db.close()
        header = read_header(model_file)
        problems = ModelStore(model_file, ledger_file).check()
    except (SpamlearnError, sqlite3.DatabaseError) as exc:
        raise BackupError(f"{archive} is not a usable backup: {named(str(exc))}") from None
    if problems:
        raise BackupError(f"{archive}: its model and ledger disagree: {'; '.join(problems)}")
    return header


def _install_pair(store: ModelStore, model_file: Path, ledger_file: Path, archive: str) -> bool:
    """Rename a checked pair into place under the store's lock; whether a
    previous pair is kept as ``*.before-restore``.

    Two renames cannot be one atomic step, so a marker file stands while
    they happen: a restore killed between them leaves it, and every learner
    refuses the pair (``ModelStore._open``) until a restore completes,
    instead of finding a ledger beside a model it does not belong to (and
    perhaps "repairing" one with the other's undo record).  What can fail
    is done before the marker is written, and SIGTERM, SIGINT and SIGHUP
    wait until the renames are done.  A restore resumed after a kill keeps
    a complete ``*.before-restore`` pair of the first attempt (the one that
    was there before); without one, it keeps nothing and says so.
    """
    marker = store.restore_marker
    with store.locked():
        for staged, current in ((model_file, store.model_path), (ledger_file, store.ledger_path)):
            _take_over_owner_and_mode(staged, current)
        _settle_sqlite_leftovers(store.ledger_path)
        resuming = os.path.lexists(marker) and stat.S_ISREG(os.lstat(marker).st_mode)
        if not resuming and os.path.lexists(marker):
            os.unlink(marker)      # a link or other thing planted there: never written through
        # Resumed: the pair there now may be half the archive's; only a
        # complete aside pair from the first attempt is the one from before.
        kept = _has_aside_pair(store) if resuming else _keep_aside(store)
        blocked = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        try:
            if not resuming:
                _write_marker(marker, archive)
            for suffix in _SQLITE_LEFTOVERS:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{store.ledger_path}{suffix}")
            try:
                os.replace(ledger_file, store.ledger_path)
            except BaseException:
                if not resuming:
                    os.unlink(marker)      # nothing replaced yet: the old pair stands
                raise
            os.replace(model_file, store.model_path)
            fsync_dir(store.ledger_path.parent)
            fsync_dir(store.model_path.parent)
            os.unlink(marker)
            fsync_dir(marker.parent)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return kept


def _has_aside_pair(store: ModelStore) -> bool:
    return all(path.with_name(path.name + _ASIDE).is_file() for path in (store.model_path, store.ledger_path))


def _take_over_owner_and_mode(staged: Path, current: Path) -> None:
    """Give a staged file the owner and mode of the file it replaces (a
    restore run as root must not leave root's files for the mail user's
    learners), or 0644 less the umask if there is none (as ``learn`` makes
    a model and SQLite a ledger)."""
    fd = os.open(staged, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)     # by descriptor, not by name
    try:
        try:
            info = os.stat(current)
        except FileNotFoundError:
            os.fchmod(fd, new_file_mode())
            hand_to_folder_owner(fd, current.parent)
            return
        os.fchmod(fd, info.st_mode & 0o7777)
        if os.geteuid() == 0:
            os.fchown(fd, info.st_uid, info.st_gid)
    finally:
        os.close(fd)


def _settle_sqlite_leftovers(ledger: Path) -> None:
    """Let SQLite roll back a hot journal or checkpoint a WAL beside the
    current ledger, so the copy kept aside is whole; a ledger too damaged
    for that keeps its leftovers beside the aside copy (``_keep_aside``)."""
    if not any(os.path.exists(f"{ledger}{suffix}") for suffix in _SQLITE_LEFTOVERS):
        return
    with contextlib.suppress(sqlite3.DatabaseError):
        db = sqlite3.connect(ledger, isolation_level=None)
        try:
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchall()
            db.execute("PRAGMA journal_mode=DELETE").fetchall()
        finally:
            db.close()


def _keep_aside(store: ModelStore) -> bool:
    """Link (or copy) the current model and ledger to ``*.before-restore``,
    dropping older ones first, so the kept pair is always one pair."""
    files = [store.model_path, store.ledger_path]
    files += [Path(f"{store.ledger_path}{suffix}") for suffix in _SQLITE_LEFTOVERS]
    for current in files:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(current.with_name(current.name + _ASIDE))
    for current in files:
        if not os.path.isfile(current):
            continue
        aside = current.with_name(current.name + _ASIDE)
        try:
            os.link(current, aside)     # no moment without a live file
        except OSError:
            shutil.copy2(current, aside)
    return _has_aside_pair(store)


def _write_marker(marker: Path, archive: str) -> None:
    """Create the marker (never through a link: O_EXCL | O_NOFOLLOW), or
    none at all: one left half-written by a full disk would lock learners
    out although nothing was replaced."""
    fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        try:
            os.write(fd, f"restoring from {archive}\n".encode("utf-8", "replace"))
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(marker.parent)
    except OSError as exc:
        os.unlink(marker)
        raise ModelFileError(f"cannot write {marker} ({exc.strerror}): nothing restored") from exc
