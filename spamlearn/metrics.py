"""Counters and histograms of the HTTP service, in Prometheus text format.

Written by hand rather than with ``prometheus_client``: the service needs
six counters and one histogram, and the one hard part, adding up the
counts of several uvicorn worker processes, is simpler as JSON snapshots in
a folder than through that library's multiprocess mode (which wants an
environment variable set before import and a cleanup hook per dead
worker).  Each worker owns one ``Metrics``; with several workers each
writes its snapshot to ``<dir>/worker-<pid>.json`` about once a second and
whichever worker answers ``/metrics`` sums all files.  The counts of
workers that are gone (replaced by SIGHUP, or dead) are kept, so the totals
never go backwards: added up into one file, ``retired.json``, by the next
``/metrics`` (a file each, they piled up for the life of the service, +2
a SIGHUP with 2 workers, and every scrape read them all on the event loop:
730 of them, a year of daily reloads, took 130-195 ms).

Exposition format: https://prometheus.io/docs/instrumenting/exposition_formats/
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["Metrics", "LATENCY_BUCKETS", "render", "merge_snapshots", "SnapshotFolder", "RETIRED_NAME"]

#: Seconds.  Scoring costs 1-5 ms; 20 ms is the p99 target at 8 clients, so
#: the buckets are fine below 50 ms and coarse above (learn requests that
#: waited for another learner's lock land in the seconds).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_PREFIX = "spamlearn_"


class Metrics:
    """What one worker counted since it started.

    Not thread-safe by design: every update happens on the worker's event
    loop thread (the service counts after awaiting its thread-pool work).
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], int] = {}
        #: (endpoint, status) -> per-bucket counts (not cumulative), then sum.
        self.latency: dict[tuple[str, str], list[float]] = {}
        self.verdicts: dict[str, int] = {}
        self.learned: dict[str, int] = {}
        self.parse_failures = 0
        self.reloads: dict[str, int] = {}
        #: (spamd command, sysexits name) -> count: the spamc listener's answers.
        self.spamd: dict[tuple[str, str], int] = {}
        self.changed = False

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        key = (endpoint, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        row = self.latency.get(key)
        if row is None:
            row = self.latency[key] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        row[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1  # last slot before sum: +Inf
        row[-1] += seconds
        self.changed = True

    def count_verdict(self, verdict: str) -> None:
        self.verdicts[verdict] = self.verdicts.get(verdict, 0) + 1

    def count_learn(self, action: str) -> None:
        self.learned[action] = self.learned.get(action, 0) + 1
        self.changed = True

    def count_parse_failure(self) -> None:
        self.parse_failures += 1

    def count_reload(self, result: str) -> None:
        self.reloads[result] = self.reloads.get(result, 0) + 1
        self.changed = True

    def count_spamd(self, command: str, result: str) -> None:
        key = (command, result)
        self.spamd[key] = self.spamd.get(key, 0) + 1
        self.changed = True

    def snapshot(self) -> dict[str, Any]:
        """The counts as plain JSON-able data (label tuples joined by a tab)."""
        return {
            "requests": {"\t".join(k): v for k, v in self.requests.items()},
            "latency": {"\t".join(k): list(v) for k, v in self.latency.items()},
            "verdicts": dict(self.verdicts),
            "learned": dict(self.learned),
            "parse_failures": self.parse_failures,
            "reloads": dict(self.reloads),
            "spamd": {"\t".join(k): v for k, v in self.spamd.items()},
        }


def merge_snapshots(snapshots: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Add up the snapshots of several workers."""
    total: dict[str, Any] = {"requests": {}, "latency": {}, "verdicts": {}, "learned": {},
                             "parse_failures": 0, "reloads": {}, "spamd": {}}
    for snap in snapshots:
        for family in ("requests", "verdicts", "learned", "reloads", "spamd"):
            for key, value in snap.get(family, {}).items():
                total[family][key] = total[family].get(key, 0) + value
        for key, row in snap.get("latency", {}).items():
            mine = total["latency"].setdefault(key, [0.0] * len(row))
            for i, value in enumerate(row):
                mine[i] += value
        total["parse_failures"] += snap.get("parse_failures", 0)
    return total


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def render(snapshot: Mapping[str, Any], gauges: Iterable[tuple[str, str, dict[str, str], float]] = ()) -> str:
    """Prometheus text exposition of a (merged) snapshot plus point-in-time gauges.

    ``gauges`` are ``(name, help, labels, value)``; names without the prefix.
    """
    out: list[str] = []

    def family(name: str, kind: str, help_text: str) -> str:
        full = _PREFIX + name
        out.append(f"# HELP {full} {help_text}")
        out.append(f"# TYPE {full} {kind}")
        return full

    name = family("http_requests_total", "counter", "HTTP requests answered, by endpoint and status.")
    for key, value in sorted(snapshot["requests"].items()):
        endpoint, status = key.split("\t")
        out.append(f"{name}{_labels(endpoint=endpoint, status=status)} {_number(value)}")

    name = family("http_request_duration_seconds", "histogram",
                  "Time from request start to response end, by endpoint and status.")
    for key, row in sorted(snapshot["latency"].items()):
        endpoint, status = key.split("\t")
        cumulative = 0.0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), row[:-1]):
            cumulative += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f"{name}_bucket{_labels(endpoint=endpoint, status=status, le=le)} "
                       f"{_number(cumulative)}")
        out.append(f"{name}_sum{_labels(endpoint=endpoint, status=status)} {row[-1]!r}")
        out.append(f"{name}_count{_labels(endpoint=endpoint, status=status)} {_number(cumulative)}")

    name = family("verdicts_total", "counter", "Messages scored, by verdict.")
    for verdict in ("ham", "unsure", "spam"):
        out.append(f"{name}{_labels(verdict=verdict)} {snapshot['verdicts'].get(verdict, 0)}")

    name = family("learn_total", "counter",
                  "Learn and forget requests, by what they did (learned, relabelled, already-known, "
                  "superseded, forgotten, not-known).")
    for action, value in sorted(snapshot["learned"].items()):
        out.append(f"{name}{_labels(action=action)} {value}")

    name = family("parse_failures_total", "counter", "Request bodies that are not a usable message.")
    out.append(f"{name} {snapshot['parse_failures']}")

    name = family("model_reloads_total", "counter",
                  "Model files reloaded after a change on disk, by result (ok, failed).")
    for result in ("ok", "failed"):
        out.append(f"{name}{_labels(result=result)} {snapshot['reloads'].get(result, 0)}")

    # Its own family, not http_requests_total: spamc's requests are not
    # HTTP, and a dashboard of HTTP errors would count its EX_ codes as such.
    name = family("spamd_requests_total", "counter",
                  "spamc requests the spamd listener answered, by command and result (EX_OK or the "
                  "error's sysexits name; command \"request\" when it was not understood).")
    for key, value in sorted(snapshot.get("spamd", {}).items()):
        command, result = key.split("\t")
        out.append(f"{name}{_labels(command=command, result=result)} {value}")

    seen: set[str] = set()
    # A family's lines must be contiguous: group by name, keep the given order within.
    for gauge, help_text, labels, value in sorted(gauges, key=lambda g: g[0]):
        full = _PREFIX + gauge
        if full not in seen:
            seen.add(full)
            out.append(f"# HELP {full} {help_text}")
            out.append(f"# TYPE {full} gauge")
        out.append(f"{full}{_labels(**labels)} {_number(value)}")
    return "\n".join(out) + "\n"


#: The counts of the workers that are gone, added up (``SnapshotFolder.read_all``).
RETIRED_NAME = "retired.json"
#: Taken by whoever reads the folder, so that no reader sees a worker's
#: counts both in its file and in RETIRED_NAME, or in neither.
_LOCK_NAME = ".snapshots.lock"


class SnapshotFolder:
    """Where the workers of one ``spamlearn serve`` leave their snapshots.

    Parameters
    ----------
    path : Path
    pid : int, optional
        This worker's process id (default: ``os.getpid()``).
    alive : callable, optional
        Whether a worker's process id is still running (tests set it).
    """

    def __init__(self, path: Path, pid: int | None = None, alive: Callable[[int], bool] | None = None):
        self.path = Path(path)
        self.own = self.path / f"worker-{pid or os.getpid()}.json"
        self._alive = alive or _alive

    def write(self, metrics: Metrics) -> None:
        """Replace this worker's snapshot atomically (readers never see half a file)."""
        self._write(self.own, metrics.snapshot())
        metrics.changed = False

    def _write(self, target: Path, data: Any) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".worker-", suffix=".tmp", dir=self.path)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def read_all(self, *, skip_own: bool = False) -> list[dict[str, Any]]:
        """Every worker's snapshot, those of the workers that are gone as one;
        ``skip_own``: but this worker's, when it could not be written and is
        out of date.

        The files of workers that are gone are first added to
        ``RETIRED_NAME`` and removed; when that cannot be written (a full
        /tmp) they stay, and are read as they are.
        """
        try:
            lock = os.open(self.path / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:
            return []       # the folder is being removed: the server is stopping
        except OSError:
            lock = None     # not there and cannot be made (a full /tmp): nobody folds, read as is
        try:
            if lock is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)
                # A full /tmp: a later scrape adds them up; they count as files meanwhile.
                with contextlib.suppress(OSError):
                    self._retire_gone()
            return self._read(skip_own)
        finally:
            if lock is not None:
                os.close(lock)      # and the lock with it

    def _read(self, skip_own: bool) -> list[dict[str, Any]]:
        retired = self._retired()
        snapshots = [retired["snapshot"]] if retired["snapshot"] else []
        folded = set(retired["folded"])
        for pid, path in self._worker_files():
            if (skip_own and path == self.own) or pid in folded:
                continue
            try:
                snapshots.append(json.loads(path.read_text()))
            except FileNotFoundError:
                continue  # the folder is being removed: the server is stopping
        return snapshots

    def _retire_gone(self) -> None:
        """Add the snapshots of workers no longer running to RETIRED_NAME, and
        remove their files.  Crash-safe: the file first names the workers it
        holds (a reader skips their files), and forgets them once they are gone."""
        retired = self._retired()
        folded = set(retired["folded"])
        files = self._worker_files()
        # Added up already, by a fold cut short before it removed them.
        taken = [path for pid, path in files if pid in folded]
        gone = [(pid, path) for pid, path in files
                if pid is not None and pid not in folded and path != self.own and not self._alive(pid)]
        if not gone and not folded:
            return
        earlier = [retired["snapshot"]] if retired["snapshot"] else []
        total = merge_snapshots([*earlier, *(json.loads(path.read_text()) for _, path in gone)])
        if gone:
            self._write(self.path / RETIRED_NAME,
                        {"snapshot": total, "folded": sorted(folded | {pid for pid, _ in gone})})
        for path in [*taken, *(path for _, path in gone)]:
            path.unlink(missing_ok=True)
        # Forgotten at once: a process id comes round again, and a new
        # worker's file under it would be skipped.
        self._write(self.path / RETIRED_NAME, {"snapshot": total, "folded": []})

    def _retired(self) -> dict[str, Any]:
        try:
            data = json.loads((self.path / RETIRED_NAME).read_text())
        except FileNotFoundError:
            return {"snapshot": None, "folded": []}
        return {"snapshot": data.get("snapshot"), "folded": data.get("folded", [])}

    def _worker_files(self) -> list[tuple[int | None, Path]]:
        """``(pid, path)`` of every worker's file; pid None for a name that holds none."""
        out = []
        for path in sorted(self.path.glob("worker-*.json")):
            digits = path.name[len("worker-"):-len(".json")]
            out.append((int(digits) if digits.isdigit() else None, path))
        return out


def _alive(pid: int) -> bool:
    """Whether ``pid`` is running (a zombie, not yet reaped, counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True     # another user's process took the number: not ours, but not gone
    return True
