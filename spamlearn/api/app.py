"""``create_app(settings)``: the FastAPI application of ``spamlearn serve``.

Each call builds a new, independent app (no module-global app or state)::

    app = create_app(load_settings(), ServerSettings(learn_token="..."))
    with TestClient(app) as client:          # runs the lifespan: loads the model
        client.post("/score", content=raw)

With several workers, uvicorn imports ``app_from_environment`` in each
worker process; ``spamlearn serve`` puts what it was given (config file,
model, flags) into ``SPAMLEARN_SERVE_ARGS`` first, so every worker builds
the same settings the parent validated.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import gc
import json
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .. import __version__
from ..config import Settings, load_settings
from ..errors import (
    ConfigError,
    LedgerError,
    MessageError,
    ModelError,
    ModelFileError,
    SpamlearnError,
    StoreBusyError,
)
from ..server_settings import ServerSettings, load_server_settings
from .balance import BOARD_NAME, LoadBoard
from .edges import TimingMiddleware, holds_token
from .routes import ScoreFastPath, router, service_of
from .service import Service
from .spamd_server import SpamdListener

__all__ = ["create_app", "app_from_environment", "worker_environment", "check_first_model",
           "check_new_worker", "keep_large_blocks_mapped", "SERVE_ARGS_ENV", "STRICT_START_ENV"]

log = logging.getLogger("spamlearn.serve")

SERVE_ARGS_ENV = "SPAMLEARN_SERVE_ARGS"
#: Set by ``spamlearn serve``'s supervisor while it starts workers to
#: replace running ones (SIGHUP): a worker that cannot load the model then
#: fails to start, rather than start degraded (see ``app_from_environment``).
STRICT_START_ENV = "SPAMLEARN_SERVE_STRICT_START"
#: Seconds a client should wait before retrying a learn request that found
#: the model locked: a cron pass commits within seconds.
RETRY_AFTER_SECONDS = 5
#: Seconds the spamd requests in flight get to finish when the worker stops
#: (uvicorn has finished or dropped the HTTP requests by then).
SPAMD_GRACE_SECONDS = 10.0
#: How often a worker publishes its counters for the others' /metrics.
METRICS_FLUSH_SECONDS = 1.0

_DESCRIPTION = """\
Scores raw mail messages with spamlearn's Bayesian model, and learns from
them through the same ledger as the command line (a message is counted once;
a relabel unlearns first).

* `POST /score` needs no token unless `[server] score_token_file` is set.
* `POST /learn` and `POST /forget` need `Authorization: Bearer <learn token>`.
* The model file is reloaded, without a restart, when cron or the sieve hook
  retrains it.
"""

# Most specific first: the first matching type decides the status.
_ERROR_STATUS: list[tuple[type[SpamlearnError], int]] = [
    (MessageError, 400),
    (ConfigError, 400),
    (StoreBusyError, 503),
    (ModelError, 503),
    (LedgerError, 503),
    (SpamlearnError, 500),
]


def _status_for(exc: SpamlearnError) -> int:
    for kind, status in _ERROR_STATUS:
        if isinstance(exc, kind):
            return status
    return 500


async def _spamlearn_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SpamlearnError)
    status = _status_for(exc)
    service = service_of(request)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if isinstance(exc, StoreBusyError) else None
    if isinstance(exc, StoreBusyError):
        # Busy is not broken: the client is told to retry (Retry-After).
        log.warning("%s %s: %s", request.method, request.url.path, exc)
    elif status >= 500 and service.new_error(exc):
        log.error("%s %s: %s", request.method, request.url.path, exc)
    detail = str(exc)
    if isinstance(exc, (ModelError, LedgerError)) and not holds_token(request, service.any_tokens):
        # The files' paths name users: /healthz's 200 hid them from a
        # caller without a token while its 503, and /score's with only the
        # learn token set, gave them to anyone (reviews, twelfth session).
        what = "no model to score with" if isinstance(exc, ModelError) else "the ledger cannot be used"
        detail = (f"{what} (the service's log says which file and why, as this answer does "
                  "to a caller with the score or learn token)")
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _publish_metrics(service: Service) -> None:
    while True:
        await asyncio.sleep(METRICS_FLUSH_SECONDS)
        service.flush_metrics()


#: glibc's ``M_MMAP_THRESHOLD`` (``malloc.h``), and the threshold it starts with.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024


def keep_large_blocks_mapped() -> bool:
    """Have glibc's malloc give every block of ``MMAP_THRESHOLD`` or more a
    mapping of its own, returned to the system when freed; False where the
    C library is not glibc (nothing done).

    A model's counts are arrays of 8-16 MB (``features``), made anew at
    every reload and every load of a user's model.  glibc maps a block
    that large at first, but once one is freed it raises its threshold to
    that size (up to 32 MB), and from then on serves such blocks from its
    heaps: one per thread that allocates, where a freed block below one
    still in use is kept, not returned.  A soak (``scripts/soak_serve.py``:
    2 workers, 30 users over ``max_user_models = 8``, learns every few
    seconds; 2026-11-30): workers at 550-920 MB RSS, where the same load in
    one process held 200 MB of live blocks and 450 MB free beside them;
    with the threshold set (which also turns the raising off), 281-340 MB
    at the same request rate, and the server's CPU per request unchanged
    (``scripts/bench_http.py``).  Blocks that size are few (model arrays,
    messages over 128 kB): a mapping each costs a system call, next to a
    load's 15-100 ms.
    """
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return False
    # musl and the others have no gnu_get_libc_version, nor this mallopt.
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1)


#: What uvicorn stops a worker on; it finishes the requests in flight first.
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _ChainedHandler:
    """A signal handler that calls ``callback``, then the handler it replaced."""

    def __init__(self, callback: Callable[[], None], previous: Any):
        self.callback = callback
        self.previous = previous

    def __call__(self, signum: int, frame: Any) -> None:
        self.callback()
        if callable(self.previous):
            self.previous(signum, frame)
        else:       # SIG_DFL or SIG_IGN: do what it would have done
            signal.signal(signum, self.previous)
            signal.raise_signal(signum)

    def remove(self, number: int) -> None:
        """Take this handler out of ``number``'s chain, wherever it is now.

        Put back as it was found only while it is still the one installed:
        two apps' lifespans in one process that end in the order they
        began left the first app's handler in place (a reviewer's
        script), its stale callback called on every later SIGTERM.
        """
        current = signal.getsignal(number)
        if current is self:
            signal.signal(number, self.previous)
            return
        while isinstance(current, _ChainedHandler):
            if current.previous is self:
                current.previous = self.previous
                return
            current = current.previous
        self.callback = lambda: None    # replaced outright: at least call nothing stale


def _on_stop_signal(callback: Callable[[], None]) -> contextlib.ExitStack:
    """Call ``callback`` too when the process is told to stop; close the
    returned stack to undo it.

    uvicorn tells the app of a stop only once every request in flight has
    ended, or been cancelled at ``timeout_graceful_shutdown``: learn
    requests waiting for the model's lock (``learn_lock_timeout``, as long)
    were cancelled, a 500 and a CancelledError traceback each (a reviewer's
    SIGTERM).  So the signal handler uvicorn installs (with
    ``signal.signal``, to restore the previous one after) is chained.  Only
    in the main thread, where signals arrive: not under TestClient.
    """
    undo = contextlib.ExitStack()
    if threading.current_thread() is not threading.main_thread():
        return undo
    for number in _STOP_SIGNALS:
        handler = _ChainedHandler(callback, signal.getsignal(number))
        signal.signal(number, handler)
        undo.callback(handler.remove, number)
    return undo


async def _load_first_model(service: Service, start_degraded: bool) -> None:
    try:
        model = await service.models.for_user(None)
    except ModelFileError as exc:
        if not start_degraded:
            raise
        log.error("starting without a model (/score and /healthz answer 503 until %s loads): %s",
                  service.settings.model_path, exc)
        service.model_error_logged = str(exc)     # said: not again at the first 503
        return
    log.info("scoring with %s (%s, revision %s, digest %s)", model.path, model.kind,
             model.classifier.revision, model.digest)


async def _start_spamd(service: Service) -> SpamdListener | None:
    """The spamd listener, when ``[server] spamd_listen`` asks for one.

    Raises
    ------
    ConfigError
        The address cannot be bound (``serve`` checked it before starting
        the workers: something took it since).
    """
    address = service.server.spamd_address
    if address is None:
        return None
    listener = SpamdListener(service, *address, reuse_port=service.server.workers > 1)
    try:
        await listener.start()
    except OSError as exc:
        raise ConfigError(f"cannot listen for spamc on {service.server.spamd_listen}: "
                          f"{exc.strerror or exc}") from None
    return listener


def check_first_model(settings: Settings, server: ServerSettings, *, exact_model: bool = False) -> None:
    """Load the model a worker starts with, as its lifespan does, and let it go.

    The same choice and load, not ``load_scoring_classifier``'s: that
    passes over a shared model below ``min_messages`` from its header alone,
    and a worker, loading it whole to count, refused a file only the full
    load rejects (a traceback and exit 3; every worker degraded with
    several; a reviewer's 2 spam / 2 ham model from a newer spamlearn).

    Raises
    ------
    ModelFileError
        A worker would not start: what its lifespan would raise.
    """
    service = Service(settings, server, exact_model=exact_model)
    # Quiet: the caller reports the error, and the "cannot load" line
    # ScoringModels logs (to this same logger) said it once more.
    quiet = log.disabled
    log.disabled = True
    try:
        _run_to_the_end(lambda: service.models.for_user(None))
    finally:
        log.disabled = quiet


def _run_to_the_end(make_coroutine) -> None:
    """Run a coroutine to its end from sync code, in an event loop or not: a
    worker's app factory runs inside uvicorn's loop, where asyncio.run
    refuses (a thread gets a loop of its own)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(make_coroutine())
        return
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: asyncio.run(make_coroutine())).result()


def create_app(settings: Settings, server: ServerSettings | None = None, *,
               metrics_dir: Path | None = None, freeze_gc: bool = False,
               exact_model: bool = False, start_degraded: bool = False) -> FastAPI:
    """Build the service's app.

    Parameters
    ----------
    settings : Settings
        Model paths, cutoffs, scan limit, per-user models.
    server : ServerSettings, optional
        Default: read from ``settings.section("server")`` and the environment.
    metrics_dir : Path, optional
        Shared by the workers of one multi-process server (see
        ``spamlearn.metrics``); None for a single process.
    freeze_gc : bool, default=False
        ``gc.freeze()`` once the model is loaded: for a process that only
        serves (``spamlearn serve``), not for one that builds apps in a loop
        (tests), whose garbage would never be collected.  Such a process
        also gives models' memory back when it drops them
        (``keep_large_blocks_mapped``, from now on).
    exact_model : bool, default=False
        ``settings.model_path`` came from ``--model``: it scores every
        request as it is, with no fallback to the default model.
    start_degraded : bool, default=False
        A model that does not load at startup is logged, and the app
        starts all the same, answering 503 on ``/score`` and ``/healthz``
        until a good file appears (after a failed reload, a worker goes on
        with the model it had; this one has none).  For the
        workers of a multi-process server, whose parent checked the model
        before starting them: uvicorn takes a replacement worker that
        fails to start for a broken app and stops every worker, so one
        worker killed while the file on disk was bad took the whole
        service down, with exit 0 (a reviewer's kill -9).

    Returns
    -------
    FastAPI
        Its lifespan loads the model for scoring (startup fails with
        ``ModelFileError`` if there is none, unless ``start_degraded``),
        so a broken model is found when the service starts, not by the
        first mail.
    """
    if server is None:
        server = load_server_settings(settings)
    if freeze_gc:
        # Before the first model is loaded: the blocks glibc serves from
        # its heaps stay there.
        keep_large_blocks_mapped()
    service = Service(settings, server, metrics_dir, exact_model=exact_model)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await _load_first_model(service, start_degraded)
        spamd = await _start_spamd(service)
        stop_watch = _on_stop_signal(service.stopping.set)
        if not server.per_user and settings.own_model_users:
            # The sieve pipe's HTTP mode sends every verdict with its user;
            # this service then trains the shared model with them, while the
            # spool it falls back to trains the users' own (a helper's review).
            log.warning("per_user = false: learn requests train the shared model, also for the users "
                        "with a model of their own ([users] own_model: %s); the sieve spool and the "
                        "command line train theirs", ", ".join(sorted(settings.own_model_users)[:5]))
        if freeze_gc:
            # Everything alive now (modules, the app, the first model) lives
            # as long as the worker: out of the collector's sight, a full
            # collection no longer walks ~80,000 objects (one measured at
            # 44 ms, a stall of every request queued behind it).  The first
            # model is still freed by reference counting when a reload
            # replaces it; only a reference cycle in it would stay.
            gc.freeze()
        publisher = None
        if service.snapshots is not None:
            service.flush_metrics(always=True)
            publisher = asyncio.get_running_loop().create_task(_publish_metrics(service))
            service.board = LoadBoard(service.snapshots.path / BOARD_NAME)
        try:
            yield
        finally:
            if spamd is not None:
                await spamd.close(SPAMD_GRACE_SECONDS)
            stop_watch.close()
            if service.board is not None:
                service.board.close()
                service.board = None
            if publisher is not None:
                publisher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await publisher
                service.flush_metrics()

    # redirect_slashes off: POST /score/ was an empty 307 to /score, which
    # curl and most filters do not follow (an empty answer); now a 404 that
    # says "Not Found".
    app = FastAPI(title="spamlearn", version=__version__, description=_DESCRIPTION,
                  lifespan=lifespan, redirect_slashes=False, openapi_tags=[
                      {"name": "scoring", "description": "What the mail filter asks."},
                      {"name": "learning", "description": "Training, with the learn token."},
                      {"name": "operations", "description": "Health and metrics."}])
    app.state.service = service
    app.add_exception_handler(SpamlearnError, _spamlearn_error)
    # The last added is the outermost: the timing and the connection
    # balance see the fast path's requests too.
    app.add_middleware(ScoreFastPath, service=service, handlers=app.exception_handlers)
    app.add_middleware(TimingMiddleware, metrics=service.metrics, board=lambda: service.board)
    app.include_router(router)
    return app


def worker_environment(config_file: Path | None, model: Path | None,
                       server_overrides: dict[str, Any], metrics_dir: Path) -> dict[str, str]:
    """What ``spamlearn serve`` adds to the environment for its worker processes.

    No secret is in it: tokens stay where they were configured (a file, or
    an environment variable the workers inherit).
    """
    args = {"config": str(config_file) if config_file else None,
            "model": str(model) if model else None,
            "server": server_overrides, "metrics_dir": str(metrics_dir)}
    return {SERVE_ARGS_ENV: json.dumps(args)}


def _serve_args() -> dict[str, Any]:
    raw = os.environ.get(SERVE_ARGS_ENV)
    if not raw:
        raise ConfigError(f"${SERVE_ARGS_ENV} is not set: start the service with `spamlearn serve`")
    return json.loads(raw)


def _worker_settings(args: dict[str, Any]) -> tuple[Settings, ServerSettings]:
    settings = load_settings(Path(args["config"]) if args["config"] else None,
                             model_path=Path(args["model"]) if args["model"] else None)
    return settings, load_server_settings(settings, **args["server"])


def check_new_worker() -> ServerSettings:
    """What a worker started now would do with its settings and first model
    (``SPAMLEARN_SERVE_ARGS``, read again), without starting one; its
    server settings.

    Raises
    ------
    SpamlearnError
        It would not start: its settings or its model do not load.
    """
    return _checked_worker_settings(_serve_args())[1]


def _checked_worker_settings(args: dict[str, Any]) -> tuple[Settings, ServerSettings]:
    """``_worker_settings``, and the first model loaded as a worker's
    lifespan would load it (``check_first_model``)."""
    settings, server = _worker_settings(args)
    check_first_model(settings, server, exact_model=bool(args["model"]))
    return settings, server


def app_from_environment() -> FastAPI:
    """The app of one worker process (uvicorn's ``--factory`` target).

    Raises
    ------
    ConfigError
        ``SPAMLEARN_SERVE_ARGS`` is missing: this is meant to be started
        by ``spamlearn serve``.
    The process exits with uvicorn's ``STARTUP_FAILURE``, after logging
    why, when the settings no longer load (or, started by a SIGHUP
    restart, its model does not).
    """
    args = _serve_args()
    strict = bool(os.environ.get(STRICT_START_ENV))
    try:
        # A strict worker's model is checked before the app: failing in its
        # lifespan, it logged a traceback and four ERROR lines for the one
        # the README promises (a reviewer's file gone bad mid-restart).
        settings, server = (_checked_worker_settings if strict else _worker_settings)(args)
    except SpamlearnError as exc:
        # The parent read the same settings when it started: they changed
        # since (an edit, a token file removed), and a worker replacing one
        # that died cannot start.  Raised, the error was a traceback and
        # uvicorn tried again every 1.5 s for ever; as a startup failure,
        # uvicorn stops the service and `serve` exits non-zero, so that a
        # restart (systemd) reports the setting in one line.
        from uvicorn.config import STARTUP_FAILURE

        log.error("cannot start a worker: %s", exc)
        for handler in logging.getLogger().handlers + log.handlers:
            handler.flush()
        # os._exit, not SystemExit: while the interpreter shut down, a health
        # ping uvicorn's supervisor sent went unanswered, and it waited its
        # full WORKER_HEALTHCHECK_SECONDS (60 s) before it saw the worker gone
        # and stopped, SIGTERM included (1 run in 6 of test_serve.py's
        # test_a_worker_that_cannot_start_stops_the_service_with_a_failing_exit).
        os._exit(STARTUP_FAILURE)
    # A worker that replaces one that died starts degraded: failing, it
    # would make uvicorn stop the whole service.  One that replaces a
    # running worker (SIGHUP) must fail instead: uvicorn then keeps the
    # old worker, which scores with the model it has, and aborts the
    # restart.  Degraded, it retired every good worker for one answering
    # 503 (a reviewer's SIGHUP with a corrupt file on disk).
    return create_app(settings, server, metrics_dir=Path(args["metrics_dir"]), freeze_gc=True,
                      exact_model=bool(args["model"]),
                      start_degraded=not strict)
