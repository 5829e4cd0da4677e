"""PassDeadline: cuts off an exchange with the server, never the work between them."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from spamlearn.imap.deadline import DeadlinePassed, PassDeadline


def test_an_exchange_in_progress_is_cut_off_at_the_deadline():
    started = time.monotonic()
    with PassDeadline(0.2) as deadline:
        with pytest.raises(DeadlinePassed):
            with deadline.network():
                time.sleep(5)       # a read that would go on
    assert time.monotonic() - started < 2 and deadline.expired


def test_work_between_exchanges_finishes_and_the_next_exchange_is_refused():
    finished = False
    with PassDeadline(0.1) as deadline:
        time.sleep(0.4)             # learning and committing: not interrupted
        finished = True
        assert deadline.expired
        with pytest.raises(DeadlinePassed):
            with deadline.network():
                pass
    assert finished


def test_the_timer_and_the_handler_that_ran_before_are_put_back():
    fired = []
    before = signal.signal(signal.SIGALRM, lambda *_: fired.append(True))
    old_timer = signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with PassDeadline(30):
            assert signal.getitimer(signal.ITIMER_REAL)[0] > 29
        left = signal.getitimer(signal.ITIMER_REAL)[0]
        assert 0 < left <= 0.5
        time.sleep(left + 0.2)
        assert fired == [True]          # the other timer still went off, with its handler
    finally:
        signal.signal(signal.SIGALRM, before)
        signal.setitimer(signal.ITIMER_REAL, *old_timer)


def test_no_deadline_when_zero_or_outside_the_main_thread():
    handler = signal.getsignal(signal.SIGALRM)
    with PassDeadline(0) as deadline:
        assert signal.getsignal(signal.SIGALRM) == handler
        with deadline.network():
            pass
    armed = []

    def elsewhere():
        with PassDeadline(30):
            armed.append(signal.getsignal(signal.SIGALRM) != handler)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert armed == [False]


def test_the_time_left_bounds_a_wait_and_a_late_exchange_says_before():
    with PassDeadline(0.3) as deadline:
        assert 0 < deadline.remaining() <= 0.3
        time.sleep(min(10, deadline.remaining()))
        assert deadline.remaining() == 0.0
        time.sleep(0.1)
        with pytest.raises(DeadlinePassed, match="before"):
            with deadline.network():
                pass
    assert PassDeadline(0).remaining() == float("inf")
