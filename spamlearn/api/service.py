"""What one worker of the HTTP service holds: settings, models, counters.

One ``Service`` per app (``app.state.service``), made by ``create_app``:
no module-global state, so tests build as many apps as they like.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from starlette.concurrency import run_in_threadpool

from ..classifier import Label, Verdict
from ..config import Settings
from ..errors import MessageError, ModelFileError, StoreBusyError
from ..metrics import Metrics, SnapshotFolder, merge_snapshots, render
from ..modelstore import LearnOutcome, ModelStore
from ..server_settings import ServerSettings
from ..sources import http_source
from .balance import LoadBoard
from .scoring import LoadedModel, ModelKind, ScoringModels

__all__ = ["Service", "LearnReport", "ClientGone", "INLINE_SCORE_BYTES", "run_sized"]

log = logging.getLogger("spamlearn.serve")


class LearnReport:
    """A learn or forget request's outcome and the model it changed."""

    __slots__ = ("outcome", "model_path", "revision", "user")

    def __init__(self, outcome: LearnOutcome, model_path: Path, revision: int, user: str | None):
        self.outcome = outcome
        self.model_path = model_path
        self.revision = revision
        self.user = user

    def as_dict(self) -> dict[str, Any]:
        o = self.outcome
        return {"action": o.action, "digest": o.digest,
                "label": o.label.value if o.label else None,
                "previous": o.previous.value if o.previous else None,
                "model": self.model_path.name, "revision": self.revision, "user": self.user}


_T = TypeVar("_T")

#: Bodies up to this size are scored on the event loop; larger ones in a
#: thread.  Measured (scripts/bench_http.py, 2 cores): handing a message to
#: the thread pool costs ~0.35 ms of CPU per request and halved the requests/s
#: at 8 clients, while nearly all mail is under 64 kB and scores in 1-5 ms.
#: A large HTML message can take tens of milliseconds: in a thread, the GIL's
#: switch interval lets the loop go on accepting and answering meanwhile.
#:
#: Lower was tried for the p99 at 8 clients (2026-11-28, 2 workers, load
#: ~2.2, two rounds, back to back): 64 kB: 850-941/s, p99 25.5-30.0 ms;
#: 16 kB (4.5% of the corpus's messages in threads): 685-1,218/s, p99
#: 29.1-55.8 ms; 16 kB with a 1 ms switch interval: 622-1,293/s, p99
#: 28.1-57.6 ms.  The small messages do gain (p99 of those under 16 kB
#: 24.0 -> 12.7-16.2 ms), but the threaded big ones, slowed by sharing the
#: GIL, become the slowest 1% themselves (119-130 of the 122-130).  Kept.
INLINE_SCORE_BYTES = 64 * 1024


async def run_sized(size: int, work: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """``work(*args, **kwargs)`` on the event loop for a message of up to
    ``INLINE_SCORE_BYTES``, in a thread for a larger one."""
    if size <= INLINE_SCORE_BYTES:
        return work(*args, **kwargs)
    return await run_in_threadpool(work, *args, **kwargs)


class ClientGone(Exception):
    """The client of a queued learn request closed its connection before its turn."""


#: Learn and forget requests run in at most this many threads per worker,
#: apart from the pool that scores large messages and reloads models: they
#: wait for the model's lock (up to learn_lock_timeout) one at a time
#: anyway, and 120 of them waiting held every thread of the shared pool, so
#: a 200 kB message took 4 s to score (a helper's review, 2026-11-29).
LEARN_THREADS = 2
#: Past this many learn requests waiting for a thread, the next is a 503
#: with Retry-After at once instead of joining a queue longer than a
#: client waits.
LEARNS_WAITING = 16


class Service:
    """Settings, the scoring models and the metrics of one worker.

    Parameters
    ----------
    settings : Settings
    server : ServerSettings
    metrics_dir : Path, optional
        Set when several workers serve: where their metric snapshots meet.
    """

    def __init__(self, settings: Settings, server: ServerSettings, metrics_dir: Path | None = None,
                 exact_model: bool = False):
        self.settings = settings
        self.server = server
        self.metrics = Metrics()
        self.models = ScoringModels(settings, reload_interval=server.reload_interval,
                                    max_user_models=server.max_user_models, metrics=self.metrics,
                                    exact_model=exact_model)
        self.snapshots = SnapshotFolder(metrics_dir) if metrics_dir else None
        #: Set by the lifespan when several workers serve (``spamlearn.api.balance``).
        self.board: LoadBoard | None = None
        self.started_at = time.time()
        # Made in the event loop: a turn is taken before a thread, so that the
        # queue can be looked at (a client gone) when a request's turn comes.
        self._learn_turns: anyio.Semaphore | None = None
        self._learn_threads: anyio.CapacityLimiter | None = None
        self._learns_admitted = 0       # running or waiting for a learner's thread
        #: Set when the worker is told to stop: learn requests waiting for the
        #: model's lock then answer 503 at once (``ModelStore.stop_waiting``).
        self.stopping = threading.Event()
        self._snapshot_error: str | None = None     # why the last snapshot was not written
        #: The model file error a request logged last (``new_error``).
        self.model_error_logged: str | None = None

    def new_error(self, exc: Exception) -> bool:
        """Whether ``exc`` is worth an ERROR line: False for a model file
        error logged last already, by an HTTP request or a spamd one.

        A worker started without a model answers every request with the
        same error: an ERROR line each, thousands a minute under a mail
        server's load, where a failed reload logs once.
        """
        if not isinstance(exc, ModelFileError):
            return True
        if str(exc) == self.model_error_logged:
            return False
        self.model_error_logged = str(exc)
        return True

    async def run_learner(self, work: Callable[..., _T], *args: Any,
                          client_gone: Callable[[], Awaitable[bool]] | None = None) -> _T:
        """``work(*args, lock_deadline=...)`` (a learn or forget) in one of the learners' threads.

        The deadline is ``learn_lock_timeout`` from now, when the request
        is admitted, not from when a thread takes it: a request queued
        behind others, each waiting the timeout out for the model's lock,
        waited up to ``(LEARN_THREADS + LEARNS_WAITING) / LEARN_THREADS``
        = 9 times as long, where the README promises ``learn_lock_timeout`` (a
        reviewer's test: 8 requests, 0.5 s, the last answered after 2.0 s).
        Whatever remains when a thread is free is what the lock is waited
        for; nothing: one try.

        Raises
        ------
        StoreBusyError
            Too many requests are waiting already, or the lock stayed taken.
        ClientGone
            ``client_gone()`` said so when a thread was free: nobody would
            read the answer, so nothing is learned.
        """
        if self._learn_turns is None:
            self._learn_turns = anyio.Semaphore(LEARN_THREADS)
            self._learn_threads = anyio.CapacityLimiter(LEARN_THREADS)
        # Counted here, with no await between the test and the count: the
        # limiter's own tasks_waiting lags, since a request joins its queue
        # only after a checkpoint, and 50 requests at once let 24 in, not 18.
        if self._learns_admitted >= LEARN_THREADS + LEARNS_WAITING:
            raise StoreBusyError(f"{LEARNS_WAITING} learn requests are already waiting for the "
                                 f"model; try again later")
        deadline = time.monotonic() + self.server.learn_lock_timeout
        self._learns_admitted += 1
        try:
            async with self._learn_turns:
                if client_gone is not None and await client_gone():
                    raise ClientGone
                return await anyio.to_thread.run_sync(
                    functools.partial(work, *args, lock_deadline=deadline), limiter=self._learn_threads)
        finally:
            self._learns_admitted -= 1

    async def score(self, model: LoadedModel, raw: bytes, explain: bool = False) -> Verdict:
        """``raw`` scored by ``model`` (``models.for_user``), counted in the metrics.

        Raises ``MessageError`` (counted as a parse failure)."""
        try:
            verdict = await run_sized(len(raw), model.classifier.score, raw, explain=explain)
        except MessageError:
            self.metrics.count_parse_failure()
            raise
        self.metrics.count_verdict(verdict.label.value)
        return verdict

    def note_learned(self, report: LearnReport) -> None:
        """After a learn or forget (``POST /learn``, ``/forget``, spamd's TELL):
        counted in the metrics, and the model checked again on the next score."""
        self.metrics.count_learn(report.outcome.action)
        self.models.invalidate(report.model_path)

    # -- authorisation ------------------------------------------------------------------
    @property
    def learn_tokens(self) -> tuple[str, ...]:
        return (self.server.learn_token,) if self.server.learn_token else ()

    @property
    def score_tokens(self) -> tuple[str, ...]:
        """Tokens accepted for scoring; empty: scoring is open."""
        if not self.server.score_token:
            return ()
        return (self.server.score_token, *self.learn_tokens)

    @property
    def any_tokens(self) -> tuple[str, ...]:
        """Tokens that let a caller of an open endpoint see which files failed
        (``edges.holds_token``): the score token's, else the learn token; empty:
        none is set, and every caller sees them."""
        return self.score_tokens or self.learn_tokens

    # -- learning (blocking: run in a thread) ---------------------------------------------
    def _store(self, user: str | None, lock_deadline: float | None) -> ModelStore:
        return ModelStore.from_settings(self.settings, user, lock_timeout=self.server.learn_lock_timeout,
                                        lock_deadline=lock_deadline, stop_waiting=self.stopping)

    def learn(self, raw: bytes, label: Label, user: str | None,
              verdict_at: float | None = None, *, lock_deadline: float | None = None,
              source: str | None = None) -> LearnReport:
        """Learn through the ledger: once per message; a relabel unlearns first;
        a verdict older than the one learned is superseded (``verdict_at``).
        ``lock_deadline``: see ``ModelStore``; ``source``: who gave the
        verdict, for the ledger (default: ``http_source(user)``).

        Raises ``MessageError``, ``StoreBusyError``, ``ModelFileError``,
        ``LedgerError``; nothing is saved then.
        """
        store = self._store(user, lock_deadline)
        with store.session(source=source or http_source(user)) as session:
            outcome = session.learn(raw, label, verdict_at=verdict_at)
        return LearnReport(outcome, store.model_path, session.classifier.revision, user)

    def forget(self, raw_or_digest: bytes | str, user: str | None, *,
               lock_deadline: float | None = None, source: str | None = None) -> LearnReport:
        store = self._store(user, lock_deadline)
        with store.session(source=source or http_source(user)) as session:
            outcome = session.forget(raw_or_digest)
        return LearnReport(outcome, store.model_path, session.classifier.revision, user)

    # -- metrics ------------------------------------------------------------------------
    def flush_metrics(self, *, always: bool = False) -> None:
        """Publish this worker's counts for the others' ``/metrics`` (when
        they changed, or ``always``).  A failure is logged, and the next
        flush tries again: a full /tmp must not stop the worker, nor fail
        the start of one replacing a worker that died (uvicorn then stops
        them all)."""
        if self.snapshots is None or not (always or self.metrics.changed):
            return
        self._write_snapshot()

    def _write_snapshot(self) -> bool:
        """Write this worker's snapshot; False if it cannot be, said once
        until it can again (retried every second, a full /tmp made a
        WARNING a second per worker)."""
        assert self.snapshots is not None
        try:
            self.snapshots.write(self.metrics)
        except OSError as exc:
            if self._snapshot_error != str(exc):
                log.warning("cannot write metrics snapshot (the other workers' /metrics miss "
                            "this one's latest counts until it can): %s", exc)
            self._snapshot_error = str(exc)
            return False
        if self._snapshot_error is not None:
            log.info("metrics snapshot written again")
            self._snapshot_error = None
        return True

    def metrics_text(self) -> str:
        if self.snapshots is None:
            return render(self.metrics.snapshot(), self._gauges())
        if self._write_snapshot():
            snapshots = self.snapshots.read_all()
        else:
            # A full /tmp: the other workers' last snapshots and this one's
            # counts as they are; every scrape was a 500 and a traceback.
            snapshots = [*self.snapshots.read_all(skip_own=True), self.metrics.snapshot()]
        return render(merge_snapshots(snapshots), self._gauges())

    def _gauges(self) -> list[tuple[str, str, dict[str, str], float]]:
        now = time.time()
        gauges = []
        for model in self.models.loaded():
            if model.kind == ModelKind.USER:
                continue  # one series per user would grow without bound
            labels = {"model": model.kind}
            trained_at = model.classifier.trained_at
            if trained_at:
                gauges.append(("model_age_seconds", "Seconds since the model in use last learned.",
                               labels, max(0.0, now - trained_at)))
            gauges.append(("model_revision", "Revision of the model in use.", labels,
                           float(model.classifier.revision)))
            gauges.append(("model_messages", "Messages the model in use has learned.",
                           {**labels, "label": "spam"}, float(model.classifier.n_spam)))
            gauges.append(("model_messages", "Messages the model in use has learned.",
                           {**labels, "label": "ham"}, float(model.classifier.n_ham)))
            gauges.append(("model_buckets_used_ratio", "Share of the model's hashed feature buckets in "
                           "use; past 0.25, collisions blur scores (README: A full model).", labels,
                           model.classifier.model.buckets_used_ratio()))
        gauges.append(("worker_start_time_seconds", "When the worker answering started (Unix time).",
                       {}, self.started_at))
        return gauges
