"""Opening a file that must be a regular file, without hanging on one that is not.

``open(path).read()`` on a FIFO waits for a writer that may never come, and
on ``/dev/zero`` reads until memory runs out: a ``spamlearn score`` of a
folder holding one, or a ``--model`` pointing at one, would hang a cron job
or a mail delivery.  So the file is opened non-blocking (which returns at
once for a FIFO), checked with ``fstat`` on the descriptor it will be read
from (no window for a swap between a check and the open), and refused
unless it is a regular file.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

__all__ = ["NotRegularFileError", "check_replaceable", "existing_kind", "irregular_kind", "new_file_mode",
           "open_regular", "read_regular"]


class NotRegularFileError(OSError):
    """The path names a FIFO, device, socket or folder, not a regular file."""


#: How a file that is not a regular one is named in errors.
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))


def irregular_kind(mode: int) -> str | None:
    """What a file of this ``st_mode`` is ("a FIFO"), or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return next((kind for is_kind, kind in _KINDS if is_kind(mode)), "not a regular file")


def check_replaceable(path: str | Path) -> None:
    """Raise ``NotRegularFileError`` if ``path`` names (or links to) a
    FIFO, device, socket or folder.

    A file written beside its name and ``os.replace``-d over it takes the
    place of whatever has the name: ``eval --plot /dev/full`` run as root
    replaced the device with a PNG (``/dev/null`` the same, a FIFO too).
    """
    kind = existing_kind(path)
    if kind is not None:
        raise NotRegularFileError(errno.EEXIST, f"{kind}, not a regular file to replace", str(path))


def existing_kind(path: str | Path) -> str | None:
    """What ``path`` names (through links) if it is there and not a regular
    file ("a FIFO"); None if it is a regular file or nothing is there.
    Other errors (a loop of links) are raised."""
    try:
        return irregular_kind(os.stat(path).st_mode)
    except FileNotFoundError:   # nothing there yet (or a link to nothing: written through)
        return None


def _open_regular_fd(path: str | Path, follow_symlinks: bool, dir_fd: int | None) -> tuple[int, int]:
    """A blocking descriptor on the regular file ``path``, and its size then."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_symlinks:  # O_NOFOLLOW's answer to a link
            raise NotRegularFileError(errno.ELOOP, "a symbolic link", str(path)) from None
        raise
    try:
        info = os.fstat(fd)
        kind = irregular_kind(info.st_mode)
        if kind is not None:
            raise NotRegularFileError(errno.EISDIR if stat.S_ISDIR(info.st_mode) else errno.EINVAL, kind,
                                      str(path))
        os.set_blocking(fd, True)
        return fd, info.st_size
    except BaseException:
        os.close(fd)
        raise


def open_regular(path: str | Path, follow_symlinks: bool = True, dir_fd: int | None = None) -> BinaryIO:
    """``open(path, "rb")`` for a regular file; ``NotRegularFileError`` else.

    With ``follow_symlinks=False`` a symbolic link is refused too (the spool,
    which another user writes, must not make us read what a link names).
    ``dir_fd``: ``path`` is relative to this open folder (as ``os.open``).
    """
    fd, _ = _open_regular_fd(path, follow_symlinks, dir_fd)
    try:
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | Path, follow_symlinks: bool = True, dir_fd: int | None = None) -> bytes:
    """The bytes of a regular file (``NotRegularFileError`` for anything else).

    By ``os.read`` of the size ``fstat`` gave, plus one byte to see the end
    (then on to the end, should the file have grown meanwhile), not through
    a file object: ``score`` reads every message so, and the FileIO and
    BufferedReader made for each, and their own ``fstat``, cost more than
    the read.  measured 2026-11-30, the 6,046 files of the SpamAssassin
    corpus, best of 5, two rounds interleaved: 0.074-0.077 -> 0.044-0.048 s
    CPU, the same bytes.  Exactly the size ``fstat`` gave is the whole file
    (the one byte more asked for was not there); a read shorter than that
    (Linux gives at most 2 GiB a read; a file cut meanwhile) or longer goes
    on to the end.
    """
    fd, size = _open_regular_fd(path, follow_symlinks, dir_fd)
    try:
        data = os.read(fd, size + 1)
        if len(data) == size:
            return data
        pieces = [data]
        while piece := os.read(fd, max(size, 65536)):
            pieces.append(piece)
        return b"".join(pieces)
    finally:
        os.close(fd)


def make_folders(folder: Path, mode: int | None = None) -> list[Path]:
    """Create ``folder`` and its missing parents, one level at a time; returns
    those this call made (not one another process made meanwhile: that one
    is not ours to remove).  Run as root, each is given to the owner of the
    nearest folder that was there: a first learn or restore for a user's
    own model by root (a drain, a command by hand) made ``users/`` root's,
    and every later learner of the mail user failed on it (a helper's
    review).  ``mode``: what the folders made get, whatever the umask (an
    admin's umask 027 made the sieve install's folders 0750 root:root,
    which Dovecot's mail user could not enter: every move into Junk went
    unlearned, a helper's review)."""
    folder = Path(folder)
    missing = []
    for level in (folder, *folder.parents):
        if level.is_dir():
            break
        missing.append(level)
    created = []
    for level in reversed(missing):
        try:
            level.mkdir()
        except FileExistsError:
            continue
        created.append(level)
    owner = None
    if created and os.geteuid() == 0:
        nearest = os.stat(missing[-1].parent)
        owner = nearest if nearest.st_uid != 0 else None
    if mode is None and owner is None:
        return created
    for made in created:
        try:
            fd = os.open(made, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue              # swapped meanwhile: leave it
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            if owner is not None:
                os.fchown(fd, owner.st_uid, owner.st_gid)
        finally:
            os.close(fd)
    return created


def create_lock_file(path: Path, mode: int, owner_folder: Path, exact_mode: bool = False) -> int | None:
    """Create the lock file ``path`` (never through a link) and return its
    descriptor; None if it exists already.  Run as root, the new file goes
    to the owner of ``owner_folder`` (``hand_to_folder_owner``): root
    running a learner once must not lock the mail user out.  ``exact_mode``:
    ``mode`` whatever the umask."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except FileExistsError:
        return None
    try:
        if exact_mode:
            os.fchmod(fd, mode)
        hand_to_folder_owner(fd, owner_folder)      # only a file made here, never an old one
    except BaseException:
        os.close(fd)
        raise
    return fd


def new_file_mode(mode: int = 0o644) -> int:
    """``mode`` less the umask: what a file created now with ``mode`` gets.

    For a model file, written through ``mkstemp`` (always 0600), with the
    0644 SQLite creates its ledger with, so the two come out alike: a fixed
    0644 made the model world-readable where the admin's umask 077 had kept
    the ledger beside it 0600 (a model is the users' mail, distilled); for
    an evaluation report's files, 0666 as ``open()`` would."""
    return mode & ~_umask()


def _umask() -> int:
    # /proc first: setting the umask to read it would change it, for an
    # instant, for every thread of the process (serve's learners).
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass                      # no /proc, or a kernel before 4.7
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def hand_to_folder_owner(fd: int, folder: Path) -> None:
    """Run as root (a learn or restore by hand), give a file root has just
    created in a folder it does not own to that folder's owner: the mail
    user's learners must be able to write it afterwards.  By descriptor,
    so a link planted at the name cannot redirect it."""
    if os.geteuid() != 0:
        return
    owner = os.stat(folder)
    if owner.st_uid != 0:
        os.fchown(fd, owner.st_uid, owner.st_gid)
