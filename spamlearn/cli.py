"""The ``spamlearn`` command: a thin Typer layer over the library.

Exit codes follow sysexits(3); the table is in ``spamlearn.exitcodes``.
"""

from __future__ import annotations

import os

# numpy's OpenBLAS starts a thread per core when numpy is imported, and
# each spins waiting for work before it sleeps: ~0.1 s of CPU at every
# start, for nothing (the model's arithmetic is per message, on vectors
# of at most a few thousand numbers, where OpenBLAS uses one thread).  So
# the command asks for one before anything imports numpy (the package's
# __init__ leaves Classifier to be imported on first use for this); an
# admin's own setting wins, and a program that embeds the library is not
# touched.  measured 2026-11-30, `spamlearn score` of one message, six
# runs each interleaved: 0.31-0.37 -> 0.21-0.26 s CPU (0.27 -> 0.245 s
# wall); `score --jobs 2` of the corpus, six each interleaved, median
# 3.58 -> 3.50 s CPU.  The workers `serve` starts inherit it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import fcntl  # noqa: E402
import functools  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated, Any  # noqa: E402

import typer  # noqa: E402

from . import __version__
from .config import Settings, load_settings
from .errors import SpamlearnError
from .exitcodes import ExitCode, exit_code_for

__all__ = ["app", "main", "ExitCode", "handle_errors", "fail", "error_line", "exit_code_for", "State",
           "state_of"]

log = logging.getLogger("spamlearn")


def fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"spamlearn: error: {message}", err=True)
    return typer.Exit(code)


def error_line(exc: SpamlearnError | OSError) -> tuple[str, int]:
    """The one line and the exit code an error is reported with (``handle_errors``;
    ``backup --all``, which reports each model's and goes on)."""
    if isinstance(exc, SpamlearnError):
        return str(exc), exit_code_for(exc)
    if exc.errno == 28:  # ENOSPC
        return f"disk full: {exc.filename or 'writing the output'}", ExitCode.IOERR
    return f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), ExitCode.IOERR


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn spamlearn's errors into one line on stderr and a documented exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SpamlearnError as exc:
            raise fail(*error_line(exc)) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except BrokenPipeError:
            # `spamlearn score ... | head`: the reader left; say nothing more.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(ExitCode.OK) from None
        except OSError as exc:
            raise fail(*error_line(exc)) from None

    return wrapper


app = typer.Typer(
    name="spamlearn",
    help="A trainable Bayesian spam classifier for self-hosted mail.\n\n"
         "Exit codes follow sysexits(3); `spamlearn exit-codes` prints them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class State:
    """What the global options set: read lazily, once."""

    def __init__(self, config: Path | None, model: Path | None, verbose: int):
        self.config_path = config
        self.model_override = model
        self.verbose = verbose
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path, model_path=self.model_override)
        return self._settings


def state_of(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if obj is None:  # a sub-command invoked without the root callback (tests)
        obj = State(None, None, 0)
        ctx.find_root().obj = obj
    return obj


def _version(value: bool) -> None:
    if value:
        typer.echo(f"spamlearn {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Config file (TOML). "
                      "Default: $SPAMLEARN_CONFIG, ~/.config/spamlearn/spamlearn.toml, "
                      "/etc/spamlearn/spamlearn.toml.", dir_okay=False)] = None,
    model: Annotated[Path | None, typer.Option("--model", "-m", help="Model file; overrides "
                     "$SPAMLEARN_MODEL and the config file.", dir_okay=False)] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, metavar="",
                       help="More log output: -v adds progress details and the traceback "
                       "of internal errors, -vv debug messages.")] = 0,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                       help="Print the version and exit.")] = False,
) -> None:
    """A trainable Bayesian spam classifier for self-hosted mail.

    Exit codes follow sysexits(3); see `spamlearn exit-codes`.
    """
    logging.basicConfig(level=logging.WARNING - 10 * min(verbose, 2),
                        format="spamlearn: %(levelname)s: %(message)s")
    ctx.obj = State(config, model, verbose)


@app.command("exit-codes")
def exit_codes() -> None:
    """Print the table of exit codes."""
    from . import exitcodes

    doc = exitcodes.__doc__ or ""
    typer.echo(doc[doc.index("===="):].rstrip())


from . import cli_core  # noqa: E402,F401  (registers learn, forget, score, filter, info, eval)

# -- commands of other areas register here: one import line each ------------------
# (each module defines its commands on `app` from this module)
from .imap import cli as imap_cli  # noqa: E402,F401  (train, status)
from .sieve import cli as sieve_cli  # noqa: E402,F401  (sieve print|install|uninstall|drain)
from . import cli_serve  # noqa: E402,F401  (serve)
from . import cli_backup  # noqa: E402,F401  (backup, restore, resize)


def _fd_is_writable(fd: int) -> bool:
    """Whether ``fd`` is open for writing.  Not only open: started with
    ``2>&-`` through a shell wrapper (pyenv's shims), descriptor 2 was the
    wrapper's own script, open for reading, and every write failed."""
    try:
        mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    except OSError:
        return False
    return mode in (os.O_WRONLY, os.O_RDWR)


def _mend_closed_stderr() -> None:
    """Started with ``2>&-``: point descriptor 2 at /dev/null.

    Otherwise the first error message fails with EBADF and the error about
    that one too, and the exit code that should tell cron or Postfix what
    went wrong becomes 1; with errors going nowhere, the code still says them.
    """
    if _fd_is_writable(2):
        return
    null = os.open(os.devnull, os.O_WRONLY)
    if null != 2:
        os.dup2(null, 2)
        os.close(null)
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)


#: The root options that take a value (``--config FILE``).
_VALUE_OPTIONS = frozenset({"--config", "-c", "--model", "-m"})


def _command_of(args: list[str]) -> str | None:
    """The subcommand named in ``args``, read past the root options."""
    words = iter(args)
    for word in words:
        if word in _VALUE_OPTIONS:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def main() -> None:
    """Entry point of the ``spamlearn`` console script."""
    _mend_closed_stderr()
    if not _fd_is_writable(1):  # `>&-`: every command's result would be lost
        typer.echo("spamlearn: error: standard output is closed", err=True)
        sys.exit(ExitCode.IOERR)
    filtering = _command_of(sys.argv[1:]) == "filter"
    try:
        app()
    except SystemExit as exc:
        if filtering and exc.code == ExitCode.USAGE and not cli_core.FILTER_STARTED:
            sys.exit(cli_core.pass_through_stdin(exit_zero="--exit-zero" in sys.argv[1:]))
        raise
    except SpamlearnError as exc:  # raised outside a command (e.g. in a callback)
        typer.echo(f"spamlearn: error: {exc}", err=True)
        sys.exit(exit_code_for(exc))
    except OSError as exc:
        # What no command's handle_errors saw: --help, --version or
        # exit-codes into a full disk (> /dev/full) was "internal error (a
        # bug)", exit 70; the table says 74 for an output that cannot be written.
        message, code = error_line(exc)
        typer.echo(f"spamlearn: error: {message}", err=True)
        sys.exit(code)
    except Exception as exc:
        # A bug: one line and EX_SOFTWARE for cron mail and Postfix's
        # pipe(8), the traceback only when asked for (-v).
        if log.isEnabledFor(logging.INFO):
            log.exception("internal error")
        typer.echo(f"spamlearn: internal error (a bug, please report it; -v shows the "
                   f"traceback): {type(exc).__name__}: {exc}", err=True)
        sys.exit(ExitCode.SOFTWARE)


