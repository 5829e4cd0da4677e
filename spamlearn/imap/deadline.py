"""A wall-clock bound on one account's pass: ``pass_timeout``.

``timeout`` bounds each wait for the server, and a server that trickles (a
byte every few seconds: overloaded, or a middlebox holding the connection)
never trips it, so a pass could last for ever, holding the run lock: every
later cron run exited 75 ("another run is going on") and nobody learned
anything (a helper's review, 2026-11-29).  The deadline is a SIGALRM timer
for the whole pass, reconnects included.

When it fires during an exchange with the server, the exchange is cut off
at once (``DeadlinePassed`` is raised out of the socket read).  When it
fires while the trainer learns or commits, nothing is interrupted: the
next exchange with the server raises instead, so a commit is never cut in
the middle and what was learned stays learned.

Signals reach only the main thread; elsewhere (a trainer embedded in a
threaded program) the deadline is not armed and ``timeout`` alone applies.
A SIGALRM timer already running (pytest-timeout's, a host program's) is
put back when the pass ends, less the time the pass took.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator

__all__ = ["DeadlinePassed", "PassDeadline"]


class DeadlinePassed(Exception):
    """The pass ran past its deadline (turned into ``ImapPassTimeoutError``);
    ``args[0]`` is "while" (an exchange cut off) or "before" (one refused),
    or "stopped" (``cut_off``: the pass was asked to stop)."""


class PassDeadline:
    """``with PassDeadline(seconds):`` arms the timer; ``with deadline.network():``
    marks an exchange with the server, the only place it may be cut off.

    ``seconds`` 0 (or a thread other than the main one) means no deadline.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expired = False
        #: Ended by ``cut_off``, not by the clock.
        self.stopped = False
        self._exchanges = 0
        self._armed = False
        self._previous: object = None
        self._previous_timer = 0.0
        self._started = 0.0

    def __enter__(self) -> PassDeadline:
        self.expired = False
        if self.seconds > 0 and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGALRM, self._fire)
            self._previous_timer = signal.setitimer(signal.ITIMER_REAL, self.seconds)[0]
            self._started = time.monotonic()
            self._armed = True
        return self

    def __exit__(self, *exc) -> None:
        if self._armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous)
            if self._previous_timer:
                left = self._previous_timer - (time.monotonic() - self._started)
                signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))
            self._armed = False

    def remaining(self) -> float:
        """Seconds left (infinite when not armed): a retry's wait is cut to it."""
        if not self._armed:
            return float("inf")
        return max(0.0, self.seconds - (time.monotonic() - self._started))

    def _fire(self, _sig: int, _frame: object) -> None:
        self.expired = True
        if self._exchanges:
            raise DeadlinePassed("while")

    def cut_off(self) -> None:
        """End the pass now, as if its time were up (a SIGTERM's handler
        calls it): an exchange in progress is cut off at once, the next one
        refused; a commit in progress is not interrupted.  A stalled connect
        or read held a SIGTERM until ``timeout`` ran out (60 s, systemd's
        TimeoutStopSec: killed instead of stopping; a helper's review)."""
        self.stopped = self.expired = True
        if self._exchanges:
            raise DeadlinePassed("stopped")

    @contextlib.contextmanager
    def network(self) -> Iterator[None]:
        if self.expired:
            raise DeadlinePassed("stopped" if self.stopped else "before")
        self._exchanges += 1
        try:
            yield
        finally:
            self._exchanges -= 1
