"""The workers' shared load board: who sheds a connection, and when not."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from spamlearn.api import balance
from spamlearn.api.balance import LoadBoard


@pytest.fixture
def boards(tmp_path):
    """Two workers on one board (this process and its parent: both alive)."""
    path = tmp_path / balance.BOARD_NAME
    busy, idle = LoadBoard(path, pid=os.getpid()), LoadBoard(path, pid=os.getppid())
    yield busy, idle
    busy.close()
    idle.close()


def clients(n):
    return [("127.0.0.1", 40000 + i) for i in range(n)]


def test_the_worker_with_more_connections_sheds_one(boards):
    busy, idle = boards
    for client in clients(8):
        busy.note(client)
    idle.note(("127.0.0.1", 50000))
    assert busy.should_shed(("127.0.0.1", 40000))
    assert busy.active == 7  # the shed connection no longer counts here
    assert not idle.should_shed(("127.0.0.1", 50000))


def test_sheds_at_most_once_per_interval(boards, monkeypatch):
    busy, _ = boards
    for client in clients(8):
        busy.note(client)
    assert busy.should_shed(("127.0.0.1", 40000))
    assert not busy.should_shed(("127.0.0.1", 40001))
    monkeypatch.setattr(busy, "_last_shed", busy._last_shed - balance.SHED_INTERVAL)
    assert busy.should_shed(("127.0.0.1", 40001))


@pytest.mark.parametrize(("mine", "theirs"), [(4, 4), (4, 3), (2, 0), (1, 0)])
def test_no_shedding_when_nearly_balanced(boards, mine, theirs):
    busy, idle = boards
    for client in clients(mine):
        busy.note(client)
    for port in range(theirs):
        idle.note(("127.0.0.2", port))
    assert not busy.should_shed(("127.0.0.1", 40000))


def test_a_worker_that_answered_nothing_lately_counts_as_idle(boards, monkeypatch):
    busy, idle = boards
    for port in range(8):
        idle.note(("127.0.0.2", port))
    for client in clients(4):
        busy.note(client)
    assert not busy.should_shed(("127.0.0.1", 40000))
    later = balance.time.monotonic() + balance.ACTIVE_WINDOW + 0.01
    monkeypatch.setattr(balance.time, "monotonic", lambda: later)
    assert busy.should_shed(("127.0.0.1", 40000))


def test_never_sheds_towards_a_dead_worker(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    path = tmp_path / balance.BOARD_NAME
    dead = LoadBoard(path, pid=int(gone.stdout))  # killed outright: its slot stays
    busy = LoadBoard(path, pid=os.getpid())
    for client in clients(8):
        busy.note(client)
    assert not busy.should_shed(("127.0.0.1", 40000))
    busy.close()
    dead._map.close()


def test_a_new_worker_takes_a_freed_or_dead_slot(tmp_path):
    path = tmp_path / balance.BOARD_NAME
    first = LoadBoard(path, pid=os.getpid())
    first.close()
    second = LoadBoard(path, pid=os.getppid())
    assert second._offset == first._offset
    second.close()
    assert path.stat().st_size == balance._SLOT.size * balance._SLOTS
