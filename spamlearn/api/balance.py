"""Keep-alive connections spread evenly over the workers of one ``spamlearn serve``.

The workers share one listening socket, and a keep-alive connection stays
with the worker that accepted it.  When a client opens its pool at once
(8 connections within a millisecond), the first worker to wake accepts them
all: measured with ``scripts/bench_http.py``, all 8 connections on one of 2
workers in every run, so one core scored while the other idled (8 clients:
~580 scored/s, p99 ~33 ms, against ~875/s and a lower p50 with the
connections split 4/4 by hand; 2026-11-28).

The remedy is the one nginx (``keepalive_requests``) and Envoy
(``max_requests_per_connection``) apply in their own way: a worker with
clearly more active connections than the least busy worker answers one
request with ``Connection: close``.  The client reconnects (every HTTP/1.1
client does; it costs one loopback handshake), and the new connection goes
to whichever worker accepts first, most likely the one idling in ``epoll``.

The measure of load is the number of connections (client addresses) that
sent a request in the last ``ACTIVE_WINDOW`` seconds, not requests in
flight: a request scored on the event loop runs start to end without
yielding, so a worker with 8 connections queued in its socket buffers still
shows one request in flight.  Each worker publishes its count in one slot
of a small shared file, ``LoadBoard``: at once when a new connection
appears, else at most every ``PUBLISH_INTERVAL``.  A slot not refreshed
within ``ACTIVE_WINDOW`` belongs to a worker that answered nothing
meanwhile, and counts as idle.  A single-process server has
no board and never sheds.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import struct
import time
from pathlib import Path

__all__ = ["LoadBoard", "BOARD_NAME"]

#: File name inside the server's metrics folder (not ``worker-*.json``,
#: which ``SnapshotFolder`` reads).
BOARD_NAME = "inflight.board"
_SLOT = struct.Struct("<iId")  # pid (0: free), active connections, when published (monotonic)
_SLOTS = 64  # ServerSettings allows at most 64 workers

#: Shed only when this worker has at least this many more active connections
#: than the least busy one: moving one connection off a worker with one more
#: would only swap the roles.
SHED_MARGIN = 2
#: At most one shed per worker per this many seconds: a moved connection
#: takes a request or two to show on the board, and faster shedding overshoots.
SHED_INTERVAL = 0.05
#: A connection that sent nothing for this long no longer counts as load.
ACTIVE_WINDOW = 0.25
PUBLISH_INTERVAL = 0.05


class LoadBoard:
    """This worker's slot on the shared board, and the others' counts.

    Parameters
    ----------
    path : Path
        The board file; created (zero-filled) by the first worker to open it.
    pid : int, optional
        This worker's process id (default: ``os.getpid()``; tests set it).

    Not thread-safe: ``note`` and ``should_shed`` run on the worker's event
    loop thread.  ``time.monotonic`` is system-wide on Linux, so the
    workers' stamps compare.
    """

    def __init__(self, path: Path, pid: int | None = None):
        self.path = Path(path)
        self.pid = pid or os.getpid()
        self._seen: dict[object, float] = {}
        self._published = float("-inf")
        self._last_shed = float("-inf")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            with _locked(fd):
                if os.fstat(fd).st_size < _SLOT.size * _SLOTS:
                    os.ftruncate(fd, _SLOT.size * _SLOTS)
                self._map = mmap.mmap(fd, _SLOT.size * _SLOTS)
                self._offset = self._claim()
        finally:
            os.close(fd)  # the mapping stays valid

    def _claim(self) -> int:
        for index in range(_SLOTS):
            pid, _, _ = _SLOT.unpack_from(self._map, index * _SLOT.size)
            if pid == 0 or pid == self.pid or not _alive(pid):
                _SLOT.pack_into(self._map, index * _SLOT.size, self.pid, 0, time.monotonic())
                return index * _SLOT.size
        raise RuntimeError(f"no free slot on {self.path}")  # more than 64 live workers

    @property
    def active(self) -> int:
        """Connections of this worker active within ``ACTIVE_WINDOW`` (as last published)."""
        return len(self._seen)

    def note(self, client: object) -> None:
        """A request arrived on the connection from ``client`` (its address and port)."""
        now = time.monotonic()
        new = client not in self._seen
        self._seen[client] = now
        if new or now - self._published >= PUBLISH_INTERVAL:
            stale = now - ACTIVE_WINDOW
            for key in [k for k, seen in self._seen.items() if seen < stale]:
                del self._seen[key]
            _SLOT.pack_into(self._map, self._offset, self.pid, len(self._seen), now)
            self._published = now

    def should_shed(self, client: object) -> bool:
        """Whether the response to ``client`` should close its connection."""
        mine = len(self._seen)
        if mine <= SHED_MARGIN:
            return False
        now = time.monotonic()
        if now - self._last_shed < SHED_INTERVAL:
            return False
        for offset in range(0, len(self._map), _SLOT.size):
            pid, count, stamp = _SLOT.unpack_from(self._map, offset)
            if not pid or offset == self._offset:
                continue
            if now - stamp > ACTIVE_WINDOW:
                count = 0  # it answered nothing lately: idle
            # A worker killed outright leaves its slot behind: check before shedding to it.
            if mine - count >= SHED_MARGIN and _alive(pid):
                self._last_shed = now
                self._seen.pop(client, None)
                return True
        return False

    def close(self) -> None:
        """Free the slot (the worker is stopping)."""
        _SLOT.pack_into(self._map, self._offset, 0, 0, 0.0)
        self._map.close()


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _locked(fd: int):
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
