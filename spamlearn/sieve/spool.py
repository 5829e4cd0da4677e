"""The spool: a Maildir-style queue of messages that users moved, waiting to be learned.

The pipe program (running as the mail user) writes each message into
``tmp/`` and renames it into ``new/``; a rename is atomic, so whatever is in
``new/`` is complete.  File names carry everything the drain needs::

    new/1712345678.123456789.4242,spam,alice@example.org
        seconds.nanoseconds.pid  label  user

The drain reads ``new/`` in time order and deletes a file only after the
model and ledger that learned it are committed.  Files it cannot use (a
name it does not understand, a body that is not a message, a file it may
not read, anything that is not a regular file) go to ``failed/`` with a
reason, never silently away.

Whoever can write the spool (the mail user) can put anything in it, so the
drain never opens what is not a regular file: a FIFO would hang it, a
folder would fail it on every run, and a symbolic link could make it learn (or, as a
``.reason`` note, overwrite) a file only the drain's group may touch.

The same holds for the folders themselves: the mail user owns the spool, so
it can put a link at ``tmp``, ``new`` or ``failed``.  Followed, a link made
the drain delete every day-old file of the folder it named (``tmp`` at
/var/lib/spamlearn: the model and ledger; run as root, at /etc), take the
model and ledger for strays and move them into ``failed/`` (out of place,
and readable by the mail user), or move a stray into the folder a
``failed`` link named; and ``sieve install`` run again as root (as the
README asks after an upgrade) chowned the folder a link named to the mail
user (``tmp`` at /etc: the mail user owned /etc; a helper's review).  So
each of the three is opened without following a link, and everything in
it is done through that descriptor (``_folder``); a link there is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from ..classifier import Label
from ..errors import ConfigError, StoreBusyError
from ..regularfile import create_lock_file, irregular_kind, make_folders, read_regular
from .options import USER_NAME_RE

__all__ = ["Spool", "SpoolEntry", "SPOOL_SUBDIRS"]

log = logging.getLogger("spamlearn.sieve")

SPOOL_SUBDIRS = ("tmp", "new", "failed")

_NAME_RE = re.compile(
    r"(?P<seconds>\d{1,12})\.(?P<nanos>\d{1,9})\.(?P<pid>\d{1,10}),(?P<label>spam|ham),(?P<user>[^,/]+)")

_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


@contextlib.contextmanager
def _folder(folder: Path, follow_symlinks: bool = False) -> Iterator[int]:
    """A descriptor of the spool's ``folder`` (tmp/, new/ or failed/), never
    through a symbolic link at its name (``ConfigError``): names inside it
    are then looked up from the descriptor, so a link put at the folder's
    name later cannot redirect them either.  ``follow_symlinks`` for the
    spool itself, whose name is in the admin's folder (/var/spool), and
    may be a link the admin made."""
    try:
        fd = os.open(folder, _FOLDER_FLAGS & ~os.O_NOFOLLOW if follow_symlinks else _FOLDER_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise ConfigError(_not_a_folder(folder)) from None
        raise
    try:
        yield fd
    finally:
        os.close(fd)


def _not_a_folder(folder: Path) -> str:
    try:
        kind = irregular_kind(os.lstat(folder).st_mode) or "a file"
    except OSError:
        kind = "not a folder"
    return (f"spool folder {folder} is {kind}, not a folder (the mail user can write the "
            f"spool, and a link there would lead the drain elsewhere): remove it, and run "
            f"`spamlearn sieve install` again")


#: A file still in tmp/ after this long belongs to a pipe program that died
#: mid-write (or a curl that hung past its timeout and was killed): an
#: incomplete message.  Maildir's rule is 36 hours; a day is as safe here
#: because the pipe's own timeout is seconds.
STALE_TMP_SECONDS = 24 * 3600


@dataclasses.dataclass(frozen=True, order=True)
class SpoolEntry:
    """One queued message (orders by the time the pipe program ran)."""

    seconds: int
    nanos: int
    pid: int
    label: Label = dataclasses.field(compare=False)
    user: str = dataclasses.field(compare=False)
    path: Path = dataclasses.field(compare=False)

    @classmethod
    def parse(cls, path: Path) -> SpoolEntry | None:
        """The entry a file name describes, or None for a name we did not write."""
        match = _NAME_RE.fullmatch(path.name)
        if not match or not USER_NAME_RE.fullmatch(match["user"]):
            return None
        return cls(int(match["seconds"]), int(match["nanos"]), int(match["pid"]),
                   Label(match["label"]), match["user"], path)

    @property
    def given_at(self) -> float:
        """When the pipe ran, i.e. when the user moved the message (Unix time)."""
        return self.seconds + self.nanos / 1e9

    def read(self) -> bytes:
        """The queued message; ``NotRegularFileError`` if the name is no longer a regular file.

        ``Spool.entries`` has already set apart what was not a regular file
        when it listed new/; this closes the gap between that listing and
        the open (a file swapped for a FIFO or a link meanwhile).
        """
        with _folder(self.path.parent) as new:
            return read_regular(self.path.name, follow_symlinks=False, dir_fd=new)

    def remove(self) -> None:
        """Delete the queued file (gone already: nothing to do)."""
        with _folder(self.path.parent) as new, contextlib.suppress(FileNotFoundError):
            os.unlink(self.path.name, dir_fd=new)


class Spool:
    """The queue folder: ``tmp/``, ``new/`` and ``failed/`` below ``root``."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.new = self.root / "new"
        self.failed = self.root / "failed"
        self.lock_path = self.root / ".drain.lock"

    def check(self) -> None:
        """Raise ``ConfigError`` unless the spool's folders exist (as folders, not links)."""
        # lstat, not os.path.lexists: that answers False to any error, and a
        # drain not in the spool's group (EACCES on the 2770 spool) was told
        # the folders were missing and to run `sieve install` (78), which
        # changed nothing, where it was told "Permission denied" (74, as
        # docs/dovecot-sieve.md says) before the folders were lstat'ed (a
        # helper's review).
        modes, missing = {}, []
        for folder in (self.tmp, self.new):
            try:
                modes[folder] = os.lstat(folder).st_mode
            except (FileNotFoundError, NotADirectoryError):
                missing.append(str(folder))
        if missing:
            raise ConfigError(f"spool folder(s) {', '.join(missing)} missing: create them with "
                              "`spamlearn sieve install` (see docs/dovecot-sieve.md)")
        for folder, mode in modes.items():
            if not stat.S_ISDIR(mode):
                raise ConfigError(_not_a_folder(folder))

    def create(self, owner_uid: int | None = None, group_gid: int | None = None) -> None:
        """Create the folders, mode 2770 (setgid: files keep the folder's group).

        ``owner_uid`` should be the mail user (the pipe program writes here)
        and ``group_gid`` the group the drain runs as, so that both can read,
        write and delete without either being root.
        """
        # The folders above the spool 0755 whatever the umask: the mail
        # user must reach it (see ``make_folders``).
        make_folders(self.root.parent, mode=0o755)
        self.root.mkdir(mode=0o770, exist_ok=True)
        for folder in (self.root, *(self.root / sub for sub in SPOOL_SUBDIRS)):
            if folder != self.root:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(folder, 0o770)
            # By descriptor, never through a link: this runs as root, in a
            # spool the mail user owns (see the module's docstring).
            with _folder(folder, follow_symlinks=folder == self.root) as fd:
                if owner_uid is not None or group_gid is not None:
                    os.fchown(fd, -1 if owner_uid is None else owner_uid,
                              -1 if group_gid is None else group_gid)
                os.fchmod(fd, 0o2770)
        # The drain's lock file now, while the spool has room: made by the
        # first drain, it needed an inode that a spool filled with queued
        # moves no longer had, and no drain could ever run to empty it (a
        # helper's review).  The folder's owner and group, as lock() makes it.
        fd = create_lock_file(self.lock_path, 0o660, self.root, exact_mode=True)
        if fd is not None:
            os.close(fd)

    def entries(self) -> tuple[list[SpoolEntry], list[tuple[Path, str]]]:
        """Queued messages in time order, and what in new/ we cannot use, with the reason.

        Only regular files are entries; the rest is told apart by ``lstat``
        (through ``scandir``), never by opening it.
        """
        entries, strays = [], []
        with _folder(self.new) as new, os.scandir(new) as it:
            for item in it:
                if item.name.startswith("."):
                    continue
                path = self.new / item.name
                try:
                    kind = irregular_kind(item.stat(follow_symlinks=False).st_mode)
                except FileNotFoundError:
                    continue  # deleted meanwhile
                entry = SpoolEntry.parse(path)
                if kind is not None:
                    strays.append((path, f"{kind}, not a file spamlearn-report wrote"))
                elif entry is None:
                    strays.append((path, "file name not written by spamlearn-report"))
                else:
                    entries.append(entry)
        entries.sort()
        return entries, sorted(strays)

    def pending(self) -> int:
        """How many messages wait in new/ (cheap: one directory listing)."""
        with _folder(self.new) as new, os.scandir(new) as it:
            return sum(1 for item in it if not item.name.startswith("."))

    def set_aside(self, path: Path, reason: str) -> Path:
        """Move what we cannot learn (a file, a folder, a FIFO...) to failed/, with a ``.reason`` note.

        Raises ``OSError`` when it cannot be moved.  A note that cannot be
        written is only logged: what matters, the move, is done.
        """
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.failed, 0o770)
        with _folder(path.parent) as source, _folder(self.failed) as failed:
            # A rename: never opens what it moves.
            os.replace(path.name, path.name, src_dir_fd=source, dst_dir_fd=failed)
            try:
                self._write_reason(failed, path.name, reason)
            except OSError as exc:
                log.warning("%s: no reason note written in %s: %s", path.name, self.failed,
                            exc.strerror or exc)
        return self.failed / path.name

    @staticmethod
    def _write_reason(failed: int, name: str, reason: str) -> None:
        # Written to a new file and renamed over the note: whatever sits at
        # the note's name (a FIFO, a link to the model) is replaced, never
        # opened.  0660 as every file in the spool.
        for _ in range(100):
            temporary = f".reason.{secrets.token_hex(8)}"
            try:
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | getattr(os, "O_CLOEXEC", 0), 0o600, dir_fd=failed)
                break
            except FileExistsError:
                continue
        else:
            raise FileExistsError(errno.EEXIST, "no free name for a reason note")
        try:
            with os.fdopen(fd, "w") as fh:
                os.fchmod(fh.fileno(), 0o660)
                fh.write(reason + "\n")
            os.replace(temporary, name + ".reason", src_dir_fd=failed, dst_dir_fd=failed)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary, dir_fd=failed)
            raise

    def remove_stale_tmp(self, now: float | None = None) -> int:
        """Delete tmp/ files older than ``STALE_TMP_SECONDS``; returns how many."""
        now = time.time() if now is None else now
        removed = 0
        with _folder(self.tmp) as tmp, os.scandir(tmp) as it:
            for item in it:
                try:
                    if now - item.stat(follow_symlinks=False).st_mtime > STALE_TMP_SECONDS:
                        os.unlink(item.name, dir_fd=tmp)
                        removed += 1
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    # A folder, or a file we may not delete: not ours to fix, and
                    # no reason to stop learning the queue.
                    log.warning("%s: stale in %s, cannot remove it: %s", item.name, self.tmp,
                                exc.strerror or exc)
        return removed

    @contextlib.contextmanager
    def lock(self, timeout: float = 0.0) -> Iterator[None]:
        """One drain at a time (a timer and ``--watch`` may overlap).

        Raises ``StoreBusyError`` when another drain holds it past ``timeout``.
        """
        # Readable and writable by the spool's owner and group whoever ran
        # first, whatever the umask (a drain run once by root left it root's,
        # 0640, and every later drain failed on it; a helper's review).
        fd = create_lock_file(self.lock_path, 0o660, self.root, exact_mode=True)
        if fd is None:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        raise StoreBusyError(f"another `spamlearn sieve drain` holds {self.lock_path}") \
                            from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)
