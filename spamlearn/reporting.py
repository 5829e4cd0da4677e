"""Progress on a terminal, one summary line for cron, never both.

A long run (learning a Maildir, an evaluation, an IMAP pass) shows a rich
progress bar when stderr is a terminal; under cron, systemd or a pipe it
prints nothing until a single summary line at the end, which is what ends
up in a mail to root or the journal.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

__all__ = ["progress", "is_interactive"]


def is_interactive() -> bool:
    return sys.stderr.isatty()


@contextlib.contextmanager
def progress(description: str, total: int | None,
             enabled: bool | None = None) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; draws a bar on stderr only when it is a terminal."""
    if enabled is None:
        enabled = is_interactive()
    if not enabled:
        yield lambda n=1: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
