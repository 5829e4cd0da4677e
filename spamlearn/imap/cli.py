"""``spamlearn train`` and ``spamlearn status``: the IMAP trainer's commands.

``train`` does one pass over the configured accounts and exits (cron,
systemd timers), or with ``--every 15m`` keeps doing passes.  Two runs of
the same config never overlap: the second exits at once with code 75
(EX_TEMPFAIL; cron simply tries again next time) unless ``--wait``.  With
several accounts every account is processed and the exit code is the
highest of theirs (77 wrong password, 69 unreachable or TLS failure, 76
missing folder, 78 bad account config, 65 unparseable messages, 70 a bug in
that account's pass).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..cli import ExitCode, app, error_line, handle_errors, state_of
from ..cli_core import _when
from ..config import Settings
from ..errors import ModelFileError, SpamlearnError, StoreBusyError
from ..exitcodes import exit_code_for
from ..ledger import Ledger
from ..regularfile import create_lock_file, make_folders
from ..reporting import is_interactive
from ..stopping import StopRequest
from .config import load_accounts, parse_duration

if TYPE_CHECKING:
    from .trainer import AccountReport

__all__ = ["train", "status", "run_lock_path", "account_status"]

AccountOption = Annotated[list[str] | None, typer.Option(
    "--account", "-a", help="Only this account (its name in the config); repeatable.")]


def run_lock_path(settings: Settings) -> Path:
    """One lock per config file, beside the shared model (a folder the trainer can write)."""
    ident = str(settings.config_file.resolve()) if settings.config_file else "(no config)"
    digest = hashlib.sha256(ident.encode()).hexdigest()[:12]
    return settings.model_path.parent / f".spamlearn-train-{digest}.lock"


def _last_run_path(settings: Settings) -> Path:
    return run_lock_path(settings).with_suffix(".json")


@contextlib.contextmanager
def _run_lock(path: Path, wait: bool) -> Iterator[None]:
    """flock ``path``; StoreBusyError at once if held (unless ``wait``)."""
    try:
        make_folders(path.parent)
        # Made here, the folder owner's: a run by root by hand must not lock
        # the mail user's cron runs out (a helper's review).
        fd = create_lock_file(path, 0o600, path.parent)
        if fd is None:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ModelFileError(f"cannot create the run lock {path}: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise StoreBusyError(f"another `spamlearn train` with this config is running "
                                 f"(lock {path}); exiting (use --wait to queue)") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def _write_last_run(path: Path, reports: list[AccountReport]) -> None:
    """Keep the last pass's reports for ``status`` (atomic: temp file + rename)."""
    previous = {}
    with contextlib.suppress(OSError, ValueError):
        previous = json.loads(path.read_text())
    for report in reports:
        previous[report.account] = {"finished_at": time.time(), **report.as_dict()}
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(previous, indent=1))
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise
        with contextlib.suppress(OSError):
            tmp.unlink()


class _StopFlag:
    """SIGTERM/SIGINT set it: the trainer finishes the message in hand, commits, stops;
    a second signal stops it at once."""

    def __init__(self) -> None:
        self.request = StopRequest()
        self._previous: dict[int, object] = {}
        #: Ends the account's exchange with the server in progress (``Trainer(on_pass=...)``).
        self.cut_off: Callable[[], None] | None = None

    @property
    def signal(self) -> int | None:
        """The signal that asked to stop, if one did."""
        return self.request.signal

    def _set(self, sig: int, _frame: object) -> None:
        if self.request:
            # Asked twice: stop now, wherever it is (a read from a server that
            # trickles, the wait for the run lock).  Nothing is lost: every
            # commit survives being cut short, as it survives SIGKILL.
            raise SystemExit(128 + sig)
        self.request.ask(sig)
        if self.cut_off is not None:
            # Nothing is in hand during a wait for the server: a stalled
            # connect or read ends now, not when `timeout` runs out.
            self.cut_off()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, less if asked to stop; whether asked."""
        return self.request.wait(seconds)

    def on_pass(self, cut_off: Callable[[], None] | None) -> None:
        self.cut_off = cut_off

    def __call__(self) -> bool:
        return bool(self.request)

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._set)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self.request.close()


@contextlib.contextmanager
def _bar(enabled: bool) -> Iterator[tuple]:
    """(set_total, advance): a rich bar on a terminal, nothing otherwise."""
    if not enabled:
        yield (lambda n: None), (lambda n=1: None)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task("training", total=None)
        yield (lambda n: bar.update(task, total=n, completed=0)), (lambda n=1: bar.advance(task, n))


def _one_pass(settings: Settings, names: list[str], stop: _StopFlag, as_json: bool,
              verbose: int) -> int:
    from .trainer import Trainer  # imapclient and ssl only when training

    accounts = load_accounts(settings, names)
    reports = []
    for account in accounts:
        if stop():
            break
        with _bar(is_interactive() and not as_json) as (set_total, advance):
            # The waits between reconnects end at a SIGTERM: one signal
            # stopped the trainer only once a wait of up to an hour was
            # over, and systemd killed it first (a helper's review).
            trainer = Trainer(settings, should_stop=stop, sleep=stop.wait, progress=advance,
                              on_total=set_total, on_pass=stop.on_pass)
            report = trainer.train_account(account)
        reports.append(report)
        if not as_json:
            typer.echo(report.summary())
            if verbose:
                for f in report.folders:
                    typer.echo(f"  {f.folder} ({f.label}): learned {f.learned}, relabelled "
                               f"{f.relabelled}, already known {f.already_known}, already right "
                               f"{f.correct}, waiting {f.deferred}, errors {f.errors}"
                               + (f", FAILED: {f.error}" if f.error else ""))
        if report.error or any(f.error for f in report.folders):
            for line in [report.error] + [f.error for f in report.folders]:
                if line:
                    typer.echo(f"spamlearn: error: {line}", err=True)
    _write_last_run(_last_run_path(settings), reports)
    code = max((r.exit_code for r in reports), default=ExitCode.OK)
    crowded = _crowded_models(settings, accounts)
    if as_json:
        typer.echo(json.dumps({"accounts": [r.as_dict() for r in reports], "exit_code": code,
                               "stopped": stop(), "crowded_models": crowded}))
    for path, used in _due_warnings(run_lock_path(settings).with_suffix(".crowded"), crowded):
        # In the cron mail an admin reads, not only in `info`, which nobody
        # runs daily: so on stderr (the shipped crontab sends stdout to
        # syslog; a helper's review), and once a day, not every 15 minutes.
        typer.echo(f"warning: model {path} has {used:.0f}% of its feature buckets in use: "
                   f"collisions blur its scores (spamlearn info; README: A full model)", err=True)
    return code


#: How often a pass repeats the warning that a model is crowded.
CROWDED_WARNING_EVERY = 86400.0


def _due_warnings(state: Path, crowded: dict[str, float]) -> list[tuple[str, float]]:
    """The crowded models not warned of in the last day; remembers them in
    ``state`` (if it cannot, every pass warns: better twice than never)."""
    warned: dict[str, float] = {}
    with contextlib.suppress(OSError, ValueError, AttributeError):
        warned = {str(k): float(v) for k, v in json.loads(state.read_text()).items()}
    now = time.time()
    due = [(path, used) for path, used in crowded.items()
           if not 0 <= now - warned.get(path, -math.inf) < CROWDED_WARNING_EVERY]
    if due:
        warned.update((path, now) for path, _ in due)
        tmp = state.with_name(state.name + f".{os.getpid()}.tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps({p: t for p, t in warned.items() if p in crowded}))
            os.replace(tmp, state)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return due


def _crowded_models(settings: Settings, accounts: list) -> dict[str, float]:
    """The models these accounts train that are past ``ModelStore.CROWDED_PCT``."""
    from .trainer import store_for

    crowded = {}
    for store in {str(s.model_path): s for s in (store_for(settings, a) for a in accounts)}.values():
        with contextlib.suppress(SpamlearnError):     # a broken model is reported by the pass itself
            used = store.crowded_pct()
            if used is not None:
                crowded[str(store.model_path)] = round(used, 1)
    return crowded


@app.command()
@handle_errors
def train(
    ctx: typer.Context,
    account: AccountOption = None,
    every: Annotated[str | None, typer.Option(help="Keep running: a pass every DURATION "
                     "(e.g. 15m, 1h; at most 366d). SIGTERM stops after the message in hand.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="If another run of this config is "
                    "going on, wait for it instead of exiting with code 75.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per pass.")] = False,
) -> None:
    """Learn from the IMAP folders of the accounts in the config file.

    Spam folders teach spam, ham folders ham; a message moved from one to the
    other is relabelled, exactly once.  Prints one summary line per account.
    """
    state = state_of(ctx)
    settings = state.settings
    load_accounts(settings, account or [])  # a bad config fails before anything else
    interval = parse_duration(every) if every is not None else None
    lock = run_lock_path(settings)
    with _StopFlag() as stop:
        if interval is None:
            try:
                with _run_lock(lock, wait):
                    code = _one_pass(settings, account or [], stop, as_json, state.verbose)
            except StoreBusyError as exc:
                if as_json:
                    # A script reading --json must get its object on every
                    # exit it can recover from (a helper's review).
                    typer.echo(json.dumps({"accounts": [], "exit_code": exit_code_for(exc), "stopped": False,
                                           "crowded_models": {}, "error": str(exc)}))
                raise
            if stop.signal is not None:
                # Cut short: what was learned is committed and the next run
                # goes on from there, but cron (and timeout(1)) must see that
                # the pass did not finish, as from an unhandled signal.
                typer.echo(f"spamlearn: train stopped by signal {stop.signal} before the pass "
                           f"finished (what it learned is kept; the next run goes on)", err=True)
                raise typer.Exit(128 + stop.signal)
            raise typer.Exit(code)
        while not stop():
            started = time.monotonic()
            try:
                with _run_lock(lock, wait=True):
                    _one_pass(settings, account or [], stop, as_json, state.verbose)
            except StoreBusyError as exc:  # a model held too long by another learner
                typer.echo(f"spamlearn: error: {exc}", err=True)
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
    raise typer.Exit(ExitCode.OK)


def account_status(settings: Settings, account, last_run: dict) -> dict:
    """What ``status`` shows for one account, read without the model's lock."""
    from .trainer import FolderState, store_for

    store = store_for(settings, account)
    out: dict = {"account": account.name, "user": account.model_user, "model": str(store.model_path),
                 "last_run": last_run.get(account.name), "folders": []}
    info = store.info()
    out["model_counts"] = {"spam": info.get("n_spam", 0), "ham": info.get("n_ham", 0)}
    if not store.ledger_path.exists():
        return out
    prefix = f"imap:{account.name}/"
    learned: dict[str, dict] = {}
    for row in info.get("sources", []):
        if row["source"].startswith(prefix):
            entry = learned.setdefault(row["source"][len(prefix):], {"spam": 0, "ham": 0, "last": 0})
            entry[row["label"]] = row["messages"]
            entry["last"] = max(entry["last"], row["last_learned_at"] or 0)
    with Ledger(store.ledger_path) as ledger:
        states = {key[len(f"imap:{account.name}:"):]: FolderState.from_json(value, key)
                  for key, value in ledger.state_items(f"imap:{account.name}:")}
    for folder in sorted(set(learned) | set(states)):
        st = states.get(folder, FolderState())
        got = learned.get(folder, {"spam": 0, "ham": 0, "last": 0})
        out["folders"].append({
            "folder": folder, "learned_spam": got["spam"], "learned_ham": got["ham"],
            "last_learned_at": got["last"] or None, "checked_at": st.updated_at,
            "uidvalidity": st.uidvalidity, "last_uid": st.last_uid, "waiting": len(st.deferred),
            # Copies met in a spam and a ham folder on one pass: unlearned
            # until one is left, for ever if both stay (docs/imap-trainer.md).
            "undecided": len(st.undecided),
        })
    return out


@app.command()
@handle_errors
def status(
    ctx: typer.Context,
    account: AccountOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show per account and folder what the IMAP trainer has learned, and when."""
    from .trainer import store_for

    settings = state_of(ctx).settings
    accounts = load_accounts(settings, account or [])
    last_run: dict = {}
    with contextlib.suppress(OSError, ValueError):
        last_run = json.loads(_last_run_path(settings).read_text())
    rows = []
    for a in accounts:
        try:
            rows.append({**account_status(settings, a, last_run), "error": None, "exit_code": ExitCode.OK})
        except (SpamlearnError, OSError) as exc:
            # One account's corrupt or locked model or ledger: said, and the
            # others still shown (the first one stopped the command, the
            # accounts after it unreported and --json printing nothing).
            # OSError: a users' folder this user may not search (0700, the
            # mail user's) raised PermissionError from the model's exists().
            model = None
            with contextlib.suppress(SpamlearnError):
                model = str(store_for(settings, a).model_path)
            line, exc_code = error_line(exc)
            rows.append({"account": a.name, "user": a.model_user, "model": model,
                         "last_run": last_run.get(a.name),
                         "folders": [], "model_counts": None,
                         "error": f"account {a.name}: {line}", "exit_code": exc_code})
    code = max((row["exit_code"] for row in rows), default=ExitCode.OK)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        raise typer.Exit(code)
    for a, row in zip(accounts, rows, strict=True):
        if row["error"]:
            typer.echo(f"spamlearn: error: {row['error']}", err=True)
            continue
        counts = row["model_counts"]
        # Whose model and verdicts these are, when the login does not say
        # it (a master-user login alice*spamlearn): `user` was not shown.
        user = f" (user {row['user']})" if row["user"] != a.username else ""
        typer.echo(f"{row['account']}{user}: model {row['model']} ({counts['spam']} spam, "
                   f"{counts['ham']} ham)")
        run = row["last_run"]
        if run:
            outcome = f"FAILED (exit {run['exit_code']}): {run['error']}" if run["error"] else \
                f"exit {run['exit_code']}"
            typer.echo(f"  last pass {_when(run['finished_at'])}: learned {run['learned_spam']} spam, "
                       f"{run['learned_ham']} ham, relabelled {run['relabelled']}; {outcome}")
        else:
            typer.echo("  last pass: never")
        if row["folders"]:
            typer.echo(f"  {'folder':<24} {'spam':>7} {'ham':>7}  {'last learned':<19}  "
                       f"{'checked':<19}  {'last uid':>8} {'waiting':>7}")
        for f in row["folders"]:
            undecided = f"  undecided {f['undecided']}" if f["undecided"] else ""
            typer.echo(f"  {f['folder']:<24} {f['learned_spam']:>7} {f['learned_ham']:>7}  "
                       f"{_when(f['last_learned_at']):<19}  {_when(f['checked_at']):<19}  "
                       f"{f['last_uid']:>8} {f['waiting']:>7}{undecided}")
    raise typer.Exit(code)
