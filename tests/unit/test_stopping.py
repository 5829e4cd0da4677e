"""A stop asked for from a signal handler, waited on by the main thread."""

from __future__ import annotations

import signal
import time

from spamlearn.stopping import StopRequest


def test_a_signal_ends_a_wait_at_once():
    stop = StopRequest()
    previous = signal.signal(signal.SIGALRM, lambda signum, _frame: stop.ask(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        started = time.monotonic()
        assert stop.wait(10) is True
        assert time.monotonic() - started < 2
        assert stop and stop.signal == signal.SIGALRM
        assert stop.wait(10) is True            # asked stays asked: no wait
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        stop.close()


def test_a_wait_not_asked_to_stop_lasts_its_time():
    stop = StopRequest()
    try:
        started = time.monotonic()
        assert stop.wait(0.3) is False and not stop
        assert 0.25 <= time.monotonic() - started < 2
    finally:
        stop.close()


def test_asking_many_times_never_blocks_the_handler():
    """The pipe is non-blocking: a handler run a million times must not hang on a full pipe."""
    stop = StopRequest()
    try:
        for _ in range(100_000):
            stop.ask(signal.SIGTERM)
        assert stop.wait(1) is True
    finally:
        stop.close()
