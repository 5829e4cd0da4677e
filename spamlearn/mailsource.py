"""Messages from the places admins keep them: files, Maildirs, mbox, stdin.

``iter_messages(paths)`` yields ``(name, raw bytes)`` in a stable order,
or ``(name, error text)`` for what cannot be read, so one bad file does not
stop a run over thousands.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import stat
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from .regularfile import read_regular

__all__ = ["MessageInput", "count_files", "iter_messages", "mbox_quoted", "mbox_unquoted", "messages_in_file",
           "read_file"]


@dataclasses.dataclass(frozen=True, slots=True)
class MessageInput:
    """A message read (``raw``), one that could not be (``error``), or, from
    ``iter_messages(lazy_files=True)``, a file left for the consumer to read.
    ``number`` is the message's place in its mbox from 1, 0 for a file
    holding one message: a progress bar over files advances at 0 and 1."""

    name: str
    raw: bytes | None = None
    error: str | None = None
    number: int = 0

    @property
    def starts_file(self) -> bool:
        return self.number <= 1


def _is_maildir(path: Path) -> bool:
    # cur or new: a Maildir whose new/ was removed is still one, and its
    # tmp/ (half-delivered mail) must not be read as a plain folder would be.
    return (path / "cur").is_dir() or (path / "new").is_dir()


def _maildir_files(path: Path) -> list[Path | tuple[Path, str]]:
    """The messages of ``cur/`` then ``new/``, each sorted (as the whole
    list sorted: "cur" < "new"), both listed before any is read (a file
    the server moves from new/ to cur/ meanwhile is read under its new
    name, ``read_file``); a sub-folder that cannot be listed is reported
    and the other still read (an unreadable cur/ skipped the readable new/
    with it: a helper's review)."""
    found: list[Path | tuple[Path, str]] = []
    for sub in ("cur", "new"):
        folder = path / sub
        if not folder.is_dir():
            continue
        try:
            with os.scandir(folder) as entries:
                found += sorted(Path(e.path) for e in entries if not e.name.startswith(".") and e.is_file())
        except OSError as exc:
            found.append((folder, f"cannot list folder: {_why(exc)}"))
    return found


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _expand(path: Path, seen: set[tuple[int, int]] | None = None) -> Iterator[Path | tuple[Path, str]]:
    """Files under ``path``, or ``(path, why)`` for what cannot be read.

    A folder that cannot be listed is reported and the rest goes on.
    Symbolic links to folders are followed only when named on the command
    line (as ``find -H`` does): one inside the tree, such as ``up -> ..``,
    would walk the tree above it, or forever; they are passed over.  Each
    folder is listed once.  FIFOs, devices and sockets are reported, never
    opened (a FIFO would block the run).
    """
    seen = set() if seen is None else seen
    try:
        info = path.stat()
    except OSError as exc:
        yield (path, "no such file or folder" if exc.errno == errno.ENOENT else _why(exc))
        return
    if not stat.S_ISDIR(info.st_mode):
        yield _file_or_why(path, info.st_mode)
        return
    if (info.st_dev, info.st_ino) in seen:
        return
    seen.add((info.st_dev, info.st_ino))
    # os.scandir, not Path.iterdir + is_dir + is_file: the entry's type
    # comes with the listing, not from two stat calls per file.
    try:
        if _is_maildir(path):
            yield from _maildir_files(path)
            return
        with os.scandir(path) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError as exc:
        yield (path, f"cannot list folder: {_why(exc)}")
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _expand(Path(entry.path), seen)
            elif entry.is_symlink():
                target = os.stat(entry.path)     # raises for a dangling link or a loop
                if not stat.S_ISDIR(target.st_mode):
                    yield _file_or_why(Path(entry.path), target.st_mode)
            elif entry.is_file(follow_symlinks=False):     # the type came with the listing
                yield Path(entry.path)
            else:
                yield (Path(entry.path), "not a regular file")
        except OSError as exc:
            yield (Path(entry.path),
                   f"broken symbolic link: {_why(exc)}" if entry.is_symlink() else _why(exc))


def _file_or_why(path: Path, mode: int) -> Path | tuple[Path, str]:
    """``path`` if ``mode`` is a regular file's; otherwise why it is passed over."""
    return path if stat.S_ISREG(mode) else (path, "not a regular file")


def mbox_unquoted(raw: bytes) -> bytes:
    """A message from an mbox as it was before the mbox writer quoted its
    ``From `` lines (mboxrd: ``>From `` for ``From ``, ``>>From `` for
    ``>From ``...): the same message, with the same digest, as its copy in
    a Maildir or over IMAP (neither the ``mailbox`` module nor the
    one-message fast path below undoes the quoting).

    By ``bytes.replace``, level by level, not a regex: the same bytes, but
    ``re.sub`` listed every piece first (a crafted 100 MB message of
    ``From `` lines took 936 MB).  Lines quoted deeper than a few levels
    are rewritten one by one (``_deep_quotes_moved``)."""
    deepest = _deepest_quote(raw)
    for level in range(1, min(deepest, _REPLACED_LEVELS) + 1):      # the shallowest first
        raw = raw.replace(b"\n" + b">" * level + b"From ", b"\n" + b">" * (level - 1) + b"From ")
    return _deep_quotes_moved(raw, -1) if deepest > _REPLACED_LEVELS else raw


#: Quoting levels that ``mbox_unquoted`` and ``mbox_quoted`` rewrite by
#: ``bytes.replace``, a pass over the message each: a pass for every level
#: up to the deepest made one line of 100,000 ">" before "From " cost 12 s
#: to learn (a 1 MB message, 20 minutes; a review, 2026-11-29).  Mail
#: quotes a From line once or twice; the deeper lines are rewritten one by
#: one, in one pass.  Each line gains or loses one ">" whatever the order,
#: so the bytes are the same.
_REPLACED_LEVELS = 8
_DEEP_QUOTED_FROM_RE = re.compile(rb"\n>{%d}>+From " % _REPLACED_LEVELS)


def _deep_quotes_moved(raw: bytes, change: int) -> bytes:
    """``raw`` with one ">" more (``change`` 1) or less (-1) at the start of
    each line quoted more than ``_REPLACED_LEVELS`` deep before "From "."""
    out = bytearray()
    view = memoryview(raw)
    done = 0
    for match in _DEEP_QUOTED_FROM_RE.finditer(raw):
        out += view[done:match.start() + 1]         # up to and with the line break
        if change > 0:
            out += b">"
        done = match.start() + 1 + (change < 0)
    out += view[done:]
    return bytes(out)


def _deepest_quote(raw: bytes) -> int:
    """The most ``>`` before ``From `` that a line of ``raw`` but its first
    starts with.  Found in one pass: a probe per level cost a scan of the
    message each, and a line of a million ``>`` a million scans."""
    # Only a message holding ">From " can hold one: a substring search,
    # where the regex scanned every message with a line starting ">" (2,426
    # of the corpus's 6,046, a reply's quote; 60 hold a quoted From line).
    # measured 2026-11-30, messages_in_file over the corpus's files, best
    # of 5, two rounds interleaved: 0.058-0.063 -> 0.046-0.049 s CPU, the
    # same bytes.
    if b">From " not in raw:
        return 0
    return max((len(match.group(1)) for match in _QUOTED_FROM_RE.finditer(raw)), default=0)


_QUOTED_FROM_RE = re.compile(rb"\n(>+)From ")


def has_quoted_from_lines(raw: bytes, start: int = 0) -> bool:
    """Whether a line of ``raw`` after ``start`` is a quoted ``From `` line:
    only then is a message copied to be unquoted (``message_digest``: any
    ``> reply`` line made the copy; a second review)."""
    return _QUOTED_FROM_RE.search(raw, start) is not None


def mbox_quoted(raw: bytes) -> bytes:
    """The inverse of ``mbox_unquoted``: the lines as an mbox file holds them."""
    if b"From " not in raw:
        return raw
    deepest = _deepest_quote(raw)
    if deepest > _REPLACED_LEVELS:
        raw = _deep_quotes_moved(raw, 1)
    for level in range(min(deepest, _REPLACED_LEVELS), -1, -1):      # the deepest first
        raw = raw.replace(b"\n" + b">" * level + b"From ", b"\n" + b">" * (level + 1) + b"From ")
    return raw


def messages_in_file(name: str, data: bytes) -> Iterator[MessageInput]:
    """The messages in one file's bytes: the file itself, or each of an mbox's."""
    if not data.startswith(b"From "):
        yield MessageInput(name, raw=data)
        return
    if b"\nFrom " not in data:
        # One message with its envelope line, as many archives (and the
        # SpamAssassin corpus) store mail: the From_ line is not part of
        # the message, and the mbox parser costs 10x a plain read.
        yield MessageInput(name, raw=mbox_unquoted(data.partition(b"\n")[2]))
        return
    # Imported here, for a file of several messages only: ``mailbox`` (and
    # the email modules it brings) cost 12 ms of every command's start-up,
    # ``filter``'s at each delivery (measured 2026-11-30, -X importtime).
    import mailbox

    try:
        box = mailbox.mbox(name, create=False)
        keys = list(box.keys())
    except (OSError, mailbox.Error) as exc:
        yield MessageInput(name, error=f"cannot read mbox: {exc}")
        return
    try:
        if len(keys) == 1:
            yield MessageInput(name, raw=mbox_unquoted(box.get_bytes(keys[0])))
            return
        for number, key in enumerate(keys, 1):
            yield MessageInput(f"{name}#{number}", raw=mbox_unquoted(box.get_bytes(key)), number=number)
    finally:
        box.close()


def read_file(name: str) -> list[MessageInput]:
    """The messages of the file ``name`` (read once), or its read error.

    A Maildir message that is gone from where it was listed was most likely
    renamed by the mail server meanwhile (``new/`` to ``cur/`` when a client
    opens the folder, a flag change in ``cur/``): it is read under its new
    name, and passed over if it is gone for good (expunged).
    """
    for _ in range(3):
        try:
            data = read_regular(name)
        except FileNotFoundError as exc:
            moved = _maildir_new_name(Path(name))
            if moved is None:
                return [] if _in_maildir(Path(name)) else [MessageInput(name, error=_why(exc))]
            name = str(moved)
            continue
        except OSError as exc:
            return [MessageInput(name, error=_why(exc))]
        return list(messages_in_file(name, data))
    return []


def _in_maildir(path: Path) -> bool:
    return path.parent.name in ("cur", "new") and _is_maildir(path.parent.parent)


def _maildir_new_name(path: Path) -> Path | None:
    """Where the Maildir message listed as ``path`` is now: the file in
    ``cur/`` with the same unique name (the part before ``:2,flags``)."""
    if not _in_maildir(path):
        return None
    unique = path.name.partition(":")[0]
    try:
        with os.scandir(path.parent.parent / "cur") as entries:
            for entry in entries:
                if entry.name.partition(":")[0] == unique and entry.path != str(path):
                    return Path(entry.path)
    except OSError:
        pass
    return None


def _read_file(path: Path, lazy: bool = False) -> Iterator[MessageInput]:
    if lazy:
        yield MessageInput(str(path))  # the consumer reads it, with read_file
        return
    yield from read_file(str(path))


def iter_messages(paths: Sequence[str | Path], stdin: bytes | None = None,
                  lazy_files: bool = False) -> Iterator[MessageInput]:
    """Every message under ``paths``; ``-`` reads one message from stdin.

    With ``lazy_files``, files are yielded by name only (``raw`` and
    ``error`` both None), unopened: a worker process reads them with
    ``read_file``, which also splits an mbox.
    """
    for item in paths:
        if str(item) == "-":
            try:
                data = stdin if stdin is not None else read_stdin()
            except OSError as exc:
                yield MessageInput("-", error=_why(exc))
                continue
            yield MessageInput("-", raw=data)
            continue
        for entry in _expand(Path(item)):
            if isinstance(entry, tuple):
                yield MessageInput(str(entry[0]), error=entry[1])
            else:
                yield from _read_file(entry, lazy_files)


_CONTROL_ESCAPES = {i: f"\\x{i:02x}" for i in range(32)} | {9: "\\t", 10: "\\n", 13: "\\r", 127: "\\x7f"}


def display_name(name: str) -> str:
    """A file name fit for one line of output: bytes that are not UTF-8
    (lone surrogates here) as ``\\xNN``, tabs and newlines as ``\\t``,
    ``\\n``: a newline in a name split its line of ``score``'s output."""
    if name.isprintable():
        return name
    return os.fsencode(name).decode("utf-8", "backslashreplace").translate(_CONTROL_ESCAPES)


def read_stdin() -> bytes:
    """All of standard input, as bytes.

    Raises
    ------
    OSError
        Standard input is closed (``cmd <&-``: Python then sets
        ``sys.stdin`` to None), or reading it failed.
    """
    if sys.stdin is None:
        raise OSError(errno.EBADF, "standard input is closed")
    return sys.stdin.buffer.read()


def count_files(paths: Sequence[str | Path]) -> int | None:
    """How many files there are to read (for a progress bar); None with stdin."""
    if any(str(p) == "-" for p in paths):
        return None
    return sum(1 for item in paths for _ in _expand(Path(item)))
