"""The ``serve`` command: run the HTTP scoring service under uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from .cli import ExitCode, app, fail, handle_errors, state_of
from .errors import SpamlearnError
from .server_settings import load_server_settings

log = logging.getLogger("spamlearn.serve")

#: Seconds uvicorn lets requests in flight finish after SIGTERM, so a learn
#: request that is writing the model completes instead of being cut off.
GRACEFUL_SHUTDOWN_SECONDS = 30
#: Seconds uvicorn's supervisor waits for a worker to answer its health
#: ping before killing and replacing it.  uvicorn's 5 s is less than a
#: spawned worker needs to import numpy, scipy and scikit-learn on a busy
#: 2-core host (3-4 s idle), which made it kill every worker in a loop.
WORKER_HEALTHCHECK_SECONDS = 60


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging setup plus our own logger, applied in every worker process.

    Worker processes are spawned, not forked: they do not inherit the
    parent's logging handlers, so ours must be in the config uvicorn applies.
    """
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["spamlearn"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    config.setdefault("filters", {})["forced_quit"] = {"()": "spamlearn.cli_serve.ForcedQuitFilter"}
    config["handlers"]["default"].setdefault("filters", []).append("forced_quit")
    return config


class ForcedQuitFilter(logging.Filter):
    """A second Ctrl-C ("to force quit", as uvicorn offers) is one line, not a traceback.

    uvicorn then skips the application's shutdown, and the task waiting for
    it is cancelled: Starlette's lifespan reports the ``CancelledError`` as a
    failed shutdown, which uvicorn logged as an ERROR holding the whole
    traceback, for something the user asked for.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        text = record.msg if isinstance(record.msg, str) else ""
        cancelled = isinstance(exc, asyncio.CancelledError) or (
            text.startswith("Traceback") and text.rstrip().endswith("CancelledError"))
        if cancelled:
            record.msg, record.args, record.exc_info, record.exc_text = (
                "forced to quit: requests in flight were dropped, the shutdown skipped", (), None, None)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _check_can_listen(host: str, port: int) -> None:
    """Fail with one clear line (not uvicorn's traceback-ish exit 1) if the address is taken."""
    try:
        _probe_bind(host, port)
    except socket.gaierror as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror}", ExitCode.CONFIG) from None
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror}", ExitCode.UNAVAILABLE) from None


def _probe_bind(host: str, port: int, *, reuse_port: bool = False) -> None:
    """Bind ``host``:``port`` and let it go.  ``reuse_port``: as the running
    workers hold a spamd address, which a new worker shares.

    Raises ``OSError`` (``socket.gaierror`` for a name that does not resolve).
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.bind(address)


@contextlib.contextmanager
def _strict_worker_start() -> Iterator[None]:
    """Workers started meanwhile fail to start on a model that does not load."""
    from .api.app import STRICT_START_ENV

    os.environ[STRICT_START_ENV] = "1"   # spawned workers inherit the environment
    try:
        yield
    finally:
        del os.environ[STRICT_START_ENV]


def _new_worker_would_start() -> bool:
    """Check, before a SIGHUP restart, that a new worker would start; if
    not, say why in one line: the workers go on as they are.

    uvicorn would find out by starting one, which fails with the
    lifespan's traceback, and then stop the restart all the same.
    """
    from .api.app import check_new_worker

    try:
        server = check_new_worker()
    except SpamlearnError as exc:
        log.error("SIGHUP: the workers are not restarted, a new one would not start: %s", exc)
        return False
    if server.spamd_address is not None:
        # A spamd address something else took (spamd_listen changed) failed
        # only in the new worker's lifespan: a traceback, then uvicorn's own
        # "aborting the restart".
        try:
            _probe_bind(*server.spamd_address, reuse_port=True)
        except OSError as exc:
            log.error("SIGHUP: the workers are not restarted, a new one would not start: "
                      "cannot listen for spamc on %s: %s", server.spamd_listen, exc.strerror or exc)
            return False
    return True


def _supervise_workers(config: Any) -> bool:
    """Run uvicorn's multi-process supervisor until it stops; True if told to (SIGTERM, SIGINT).

    ``uvicorn.run`` returns alike either way, but uvicorn also stops every
    worker by itself when a replacement for one that died fails to start:
    ``serve`` exited 0 then, and systemd's ``Restart=on-failure`` left the
    service down (a helper's review).
    """
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        told_to_stop = False

        # uvicorn keeps both ends of each worker's health-ping pipe here, so
        # a worker killed between a ping and its answer is never seen to
        # hang up: the supervisor sat out WORKER_HEALTHCHECK_SECONDS (60 s)
        # in poll, neither replacing the worker nor taking SIGTERM (1 test
        # run in 6).  With the worker's end closed here once it is started
        # (the child has its own copy), its death ends the wait at once.
        def init_processes(self) -> None:
            super().init_processes()
            self._close_worker_ends()

        def keep_subprocess_alive(self) -> None:
            super().keep_subprocess_alive()
            self._close_worker_ends()

        def restart_all(self) -> None:
            super().restart_all()
            self._close_worker_ends()

        def _close_worker_ends(self) -> None:
            for process in self.processes:
                process.child_conn.close()

        def handle_int(self) -> None:
            self.told_to_stop = True
            super().handle_int()

        def handle_term(self) -> None:
            self.told_to_stop = True
            super().handle_term()

        def handle_hup(self) -> None:
            if not _new_worker_would_start():
                return
            # uvicorn replaces the workers one by one and, when a
            # replacement does not start (the file went bad since the
            # check), keeps the old worker and stops.
            with _strict_worker_start():
                super().handle_hup()

    supervisor = Supervisor(config, sockets=[config.bind_socket()])
    supervisor.run()
    return supervisor.told_to_stop


def _serve_in_this_process(config: Any) -> None:
    """Serve with one worker, this process, until SIGTERM or SIGINT; SIGHUP
    is logged and ignored.  As with several workers, and exit 0 when told to stop.

    uvicorn stops on SIGTERM and SIGINT, then raises the signal again for
    the handler it found: the default one killed the process (143, where
    the supervisor of several exits 0).  SIGHUP, a restart for the
    supervisor, killed it at once, requests in flight dropped, and systemd
    counts a death by SIGHUP as clean: ``Restart=on-failure`` left it down.
    """
    from uvicorn import Server
    from uvicorn.config import STARTUP_FAILURE

    server = Server(config)

    def stop(signum: int, frame: Any) -> None:
        # uvicorn's own handler is in place while it serves; this one
        # takes the signal it raises again once stopped (or one that
        # arrives before it starts).
        server.should_exit = True

    def hang_up(signum: int, frame: Any) -> None:
        log.warning("SIGHUP ignored: one worker serves, and is not restarted (the model file is "
                    "reloaded when it changes; restart the service to read changed settings)")

    handlers = {signal.SIGTERM: stop, signal.SIGINT: stop, signal.SIGHUP: hang_up}
    previous = {number: signal.signal(number, handler) for number, handler in handlers.items()}
    try:
        server.run()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)   # as uvicorn.run: the log says why


_LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


@app.command()
@handle_errors
def serve(
    ctx: typer.Context,
    # No $SPAMLEARN_SERVER_HOST here: at 80 columns the help column is 17
    # wide, and a word longer than that was cut off (a helper's review).
    host: Annotated[str | None, typer.Option(help="Address to listen on. Default: 127.0.0.1 "
                    "(or server.host in the config file, or its variable in the environment: "
                    "README).")] = None,
    port: Annotated[int | None, typer.Option(min=0, max=65535, help="Port. Default: 8731.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, max=64, help="Worker processes. "
                       "Default: one per core, at most 4.")] = None,
    reload_interval: Annotated[float | None, typer.Option(min=0, help="Seconds between checks "
                               "of the model file for a retrained version. Default: 1.")] = None,
    max_body_size: Annotated[int | None, typer.Option(min=1024, help="Largest message accepted, "
                             "in bytes (larger: 413). Default: 25 MiB.")] = None,
    access_log: Annotated[bool | None, typer.Option("--access-log/--no-access-log",
                          help="Log every request. Default: off.")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn and spamlearn log level: critical, error, "
                         "warning, info, debug or trace.")] = "info",
    spamd_listen: Annotated[str | None, typer.Option(help="Also answer spamc (SpamAssassin's "
                            "spamd protocol) on HOST:PORT, e.g. 127.0.0.1:783; off: not, whatever "
                            "the config file says. Default: off.")] = None,
) -> None:
    """Run the HTTP scoring service: POST /score, /filter, /learn, /forget; GET /healthz, /metrics.

    With --spamd-listen (or \\[server] spamd_listen) the workers also answer
    spamc and what else speaks spamd's protocol (Exim's spam =,
    spamass-milter, Rspamd's spamassassin scanner: README); spamc -L trains
    only with spamd_allow_tell = true.

    Tokens are never taken from the command line (ps would show them): set
    learn_token_file / score_token_file in the config file's server table, or
    SPAMLEARN_SERVER_LEARN_TOKEN.
    Stop it with SIGTERM or Ctrl-C (exit 0): requests in flight are finished
    first.  SIGHUP restarts the workers, if a new one would start (with one
    worker: ignored).
    """
    import uvicorn

    from .api.app import check_first_model, create_app, worker_environment

    log_level = log_level.lower()
    if log_level not in _LOG_LEVELS:
        raise fail(f"unknown --log-level {log_level!r}: use one of {', '.join(_LOG_LEVELS)}", ExitCode.USAGE)
    state = state_of(ctx)
    settings = state.settings
    overrides = {key: value for key, value in {
        "host": host, "port": port, "workers": workers, "reload_interval": reload_interval,
        "max_body_size": max_body_size, "access_log": access_log,
        "spamd_listen": spamd_listen}.items() if value is not None}
    server = load_server_settings(settings, **overrides)
    # Fail now, with exit code 74, rather than in every worker's startup.
    # The whole load, as a worker does it: the header alone passed a model
    # from a newer spamlearn (an unknown tokenizer option), and each worker
    # then failed with a traceback (exit 3 with one worker, 0 with several).
    check_first_model(settings, server, exact_model=state.model_override is not None)
    _check_can_listen(server.host, server.port)
    if server.spamd_address is not None:
        _check_can_listen(*server.spamd_address)

    scoring = "open" if not server.score_token else "bearer token"
    learning = "bearer token" if server.learning_enabled else "disabled over HTTP (no learn token)"
    # An IPv6 address in a URL goes in brackets (RFC 3986): "http://::1:8731" names no port.
    host = f"[{server.host}]" if ":" in server.host else server.host
    model = str(settings.model_path)
    if not settings.model_path.exists():
        # The line named a file that was not there, as if it scored (a
        # walkthrough of the docs); the workers' own lines came later.
        model += (" (not there yet: the packaged default scores until it has learned "
                  f"{settings.min_messages} of each class)")
    address = f"http://{host}:{server.port}"
    if server.port == 0:
        # The port is the kernel's choice, made when uvicorn binds (a walkthrough saw ":0").
        address += " (a free port: uvicorn's line below names it)"
    typer.echo(f"spamlearn: serving on {address} with {server.workers} "
               f"worker(s); scoring: {scoring}; learning: {learning}; model: {model}",
               err=True)
    if not server.is_loopback and not server.score_token:
        typer.echo(f"spamlearn: warning: scoring is open to anyone who can reach {server.host}; "
                   f"set [server] score_token_file or firewall the port", err=True)
    if server.spamd_address is not None:
        telling = "TELL allowed" if server.spamd_allow_tell else "TELL refused"
        typer.echo(f"spamlearn: answering spamc on {server.spamd_listen} ({telling})", err=True)
        if not server.spamd_is_loopback:
            # The protocol has no password: a firewall is the only lock.
            training = " and may train the model" if server.spamd_allow_tell else ""
            typer.echo(f"spamlearn: warning: the spamd listener is open to anyone who can reach "
                       f"{server.spamd_listen}{training}; firewall the port", err=True)
    common: dict[str, Any] = {
        "host": server.host, "port": server.port, "access_log": server.access_log,
        "log_config": _log_config(log_level), "log_level": log_level, "server_header": False,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
    }
    if server.workers == 1:
        _serve_in_this_process(uvicorn.Config(create_app(
            settings, server, freeze_gc=True, exact_model=state.model_override is not None), **common))
        return
    with tempfile.TemporaryDirectory(prefix="spamlearn-metrics-") as metrics_dir:
        os.environ.update(worker_environment(settings.config_file, state.model_override, overrides,
                                             Path(metrics_dir)))
        told_to_stop = _supervise_workers(uvicorn.Config(
            "spamlearn.api.app:app_from_environment", factory=True, workers=server.workers,
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS, **common))
    if not told_to_stop:
        raise fail("a worker failed to start (see the log above) and uvicorn stopped the others",
                   ExitCode.UNAVAILABLE)
