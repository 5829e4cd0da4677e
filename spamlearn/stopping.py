"""A stop asked for by a signal, safely: set in a signal handler, waited on
by the main thread.

``threading.Event`` is not safe for this: its ``set`` takes a lock that the
main thread may be holding inside ``Event.wait`` when the signal arrives,
and the handler, run by that same thread, then waits for it for ever (a
helper's review: ``train --every`` hung on SIGTERM, 1 run in 16).  Here the
handler sets a flag and writes a byte to a pipe that ``wait`` watches.
"""

from __future__ import annotations

import contextlib
import os
import select
import time

__all__ = ["StopRequest"]


class StopRequest:
    """``ask`` from a signal handler; ``wait`` and the truth value from the main thread."""

    def __init__(self) -> None:
        self._asked = False
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        #: The signal that asked, if one did.
        self.signal: int | None = None

    def ask(self, signum: int | None = None) -> None:
        """Ask to stop (safe in a signal handler: no lock is taken)."""
        self.signal = signum
        self._asked = True
        with contextlib.suppress(OSError):      # full: a wake-up is there already
            os.write(self._wake_write, b"\0")

    def __bool__(self) -> bool:
        return self._asked

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, less if asked to stop; whether asked."""
        deadline = time.monotonic() + seconds
        while not self._asked:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            select.select([self._wake_read], [], [], left)
        return self._asked

    def close(self) -> None:
        for fd in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)
