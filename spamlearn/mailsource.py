"""Messages from the places admins keep them: files, Maildirs, mbox, stdin.

``iter_messages(paths)`` yields ``(name, raw bytes)`` in a stable order,
or ``(name, error text)`` for what cannot be read, so one bad file does not
stop a run over thousands.
"""

from __future__ import annotations

import dataclasses
import mailbox
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["MessageInput", "iter_messages", "count_messages"]


@dataclasses.dataclass(frozen=True, slots=True)
class MessageInput:
    """A message read (``raw``), one that could not be (``error``), or, from
    ``iter_messages(lazy_files=True)``, a file left for the consumer to read."""

    name: str
    raw: bytes | None = None
    error: str | None = None


def _is_maildir(path: Path) -> bool:
    return (path / "cur").is_dir() and (path / "new").is_dir()


def _looks_like_mbox(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(5) == b"From "
    except OSError:
        return False


def _maildir_files(path: Path) -> list[Path]:
    files = []
    for sub in ("cur", "new"):
        files.extend(p for p in (path / sub).iterdir() if p.is_file() and not p.name.startswith("."))
    return sorted(files)


def _expand(path: Path) -> Iterator[Path | tuple[Path, str]]:
    if _is_maildir(path):
        yield from _maildir_files(path)
    elif path.is_dir():
        for child in sorted(path.iterdir()):
            if child.name.startswith("."):
                continue
            if child.is_dir():
                yield from _expand(child)
            elif child.is_file():
                yield child
    elif path.exists():
        yield path
    else:
        yield (path, "no such file or folder")


def _read_file(path: Path, lazy: bool = False) -> Iterator[MessageInput]:
    if _looks_like_mbox(path):
        try:
            data = path.read_bytes()
        except OSError as exc:
            yield MessageInput(str(path), error=exc.strerror or str(exc))
            return
        if b"\nFrom " not in data:
            # One message with its envelope line, as many archives (and the
            # SpamAssassin corpus) store mail: the From_ line is not part of
            # the message, and the mbox parser costs 10x a plain read.
            yield MessageInput(str(path), raw=data.partition(b"\n")[2])
            return
        try:
            box = mailbox.mbox(path, create=False)
            keys = list(box.keys())
        except (OSError, mailbox.Error) as exc:
            yield MessageInput(str(path), error=f"cannot read mbox: {exc}")
            return
        try:
            if len(keys) == 1:
                yield MessageInput(str(path), raw=box.get_bytes(keys[0]))
                return
            for number, key in enumerate(keys, 1):
                yield MessageInput(f"{path}#{number}", raw=box.get_bytes(key))
        finally:
            box.close()
        return
    if lazy:
        yield MessageInput(str(path))  # the consumer reads it
        return
    try:
        yield MessageInput(str(path), raw=path.read_bytes())
    except OSError as exc:
        yield MessageInput(str(path), error=exc.strerror or str(exc))


def iter_messages(paths: Sequence[str | Path], stdin: bytes | None = None,
                  lazy_files: bool = False) -> Iterator[MessageInput]:
    """Every message under ``paths``; ``-`` reads one message from stdin.

    With ``lazy_files``, single-message files are yielded by name only
    (``raw`` and ``error`` both None) for a worker process to read.
    """
    for item in paths:
        if str(item) == "-":
            data = stdin if stdin is not None else sys.stdin.buffer.read()
            yield MessageInput("-", raw=data)
            continue
        for entry in _expand(Path(item)):
            if isinstance(entry, tuple):
                yield MessageInput(str(entry[0]), error=entry[1])
            else:
                yield from _read_file(entry, lazy_files)


def count_messages(paths: Sequence[str | Path]) -> int | None:
    """How many files there are to read (for a progress bar); None with stdin."""
    if any(str(p) == "-" for p in paths):
        return None
    total = 0
    for item in paths:
        for entry in _expand(Path(item)):
            total += 1
    return total
