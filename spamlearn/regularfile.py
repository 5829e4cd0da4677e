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

__all__ = ["NotRegularFileError", "open_regular", "read_regular"]


class NotRegularFileError(OSError):
    """The path names a FIFO, device, socket or folder, not a regular file."""


def open_regular(path: str | Path) -> BinaryIO:
    """``open(path, "rb")`` for a regular file; ``NotRegularFileError`` else."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
            raise NotRegularFileError(errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL, kind, str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | Path) -> bytes:
    """The bytes of a regular file (``NotRegularFileError`` for anything else)."""
    with open_regular(path) as fh:
        return fh.read()
