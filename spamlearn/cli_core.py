"""The core commands: learn, forget, score, filter, info, eval."""

from __future__ import annotations

import contextlib
import datetime
import gc
import itertools
import json
import os
import signal
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated

import typer

from .classifier import Label
from .cli import ExitCode, app, exit_code_for, fail, handle_errors, state_of
from .config import MAX_FEATURES
from .defaults import load_scoring_classifier
from .errors import MessageError, SpamlearnError
from .headers import marked_pieces, unmarked_pieces
from .mailsource import MessageInput, count_files, display_name, iter_messages, read_file, read_stdin
from .message import has_header_fields
from .modelstore import Action, ModelStore
from .regularfile import existing_kind
from .reporting import progress

# "-" is one message (a delivery's, its envelope line allowed): an mbox
# piped in was learned as one message of all of them, so the help says so.
PathsArg = Annotated[list[str], typer.Argument(help="Message files, Maildir folders, mbox files, "
                                                    "folders of files, or - for one message on "
                                                    "standard input (an mbox: give its file).")]


def _one_stdin(paths: list[str]) -> None:
    if paths.count("-") > 1:
        raise fail("'-' (standard input) can be given once", ExitCode.USAGE)


def _store(ctx: typer.Context, user: str | None = None) -> ModelStore:
    """The store ``learn``/``forget`` write; says so when --user falls back
    to the shared model, so that an admin who forgot ``own_model`` is not
    left thinking the user's own model was trained."""
    settings = state_of(ctx).settings
    if user and not settings.has_own_model(user):
        typer.echo(f"spamlearn: note: {user} has no own model (own_model in the config file); "
                   f"using the shared model {settings.model_path}", err=True)
    return ModelStore.from_settings(settings, user)


def _when(epoch: float | None) -> str:
    if not epoch:
        return "never"
    return datetime.datetime.fromtimestamp(epoch).isoformat(sep=" ", timespec="seconds")


@app.command()
@handle_errors
def learn(
    ctx: typer.Context,
    paths: PathsArg,
    spam: Annotated[bool, typer.Option("--spam", help="Learn the messages as spam.")] = False,
    ham: Annotated[bool, typer.Option("--ham", help="Learn the messages as ham.")] = False,
    user: Annotated[str | None, typer.Option(help="Train this user's own model, if configured.")] = None,
    source: Annotated[str, typer.Option(help="Where the messages come from, kept in the ledger.")] = "cli",
) -> None:
    """Learn messages as spam or ham.

    A message learned before is not counted again; one learned with the
    other label is relabelled."""
    if spam == ham:
        raise fail("say --spam or --ham (exactly one)", ExitCode.USAGE)
    _one_stdin(paths)
    label = Label.SPAM if spam else Label.HAM
    store = _store(ctx, user)
    counts = {Action.LEARNED: 0, Action.RELABELLED: 0, Action.ALREADY_KNOWN: 0}
    errors = missing = headerless = 0
    with store.session(source=source) as session, \
            progress(f"learning {label}", count_files(paths)) as advance:
        # Said in the summary, because a mistyped model path would otherwise
        # quietly start an empty model (and create its folder) beside the
        # real one.  Looked at under the lock: learners started together
        # each said "new model" when it was only the first's.
        new_model = not store.exists()
        for item in iter_messages(paths):
            if item.starts_file:    # the bar counts files, as count_files does
                advance(1)
            if item.error:
                typer.echo(f"spamlearn: {display_name(item.name)}: {item.error}", err=True)
                missing += 1
                continue
            try:
                outcome = session.learn(item.raw, label)
            except MessageError as exc:
                typer.echo(f"spamlearn: {display_name(item.name)}: {exc}", err=True)
                errors += 1
                continue
            if outcome.action == Action.LEARNED and not has_header_fields(item.raw):
                # Learned all the same (a hand-typed test message has no
                # headers either), but said: a folder of attachments or
                # binaries given by mistake would otherwise go in silently.
                headerless += 1
                if headerless <= _FAILURES_NAMED:
                    typer.echo(f"spamlearn: warning: {display_name(item.name)}: no mail header "
                               f"fields (not a mail message?); learned as text", err=True)
            counts[outcome.action] += 1
            if state_of(ctx).verbose:
                typer.echo(f"{display_name(item.name)}: {outcome.describe()}")
            if session.pending >= 1000:
                session.commit()  # bound what a crash could make us redo
    typer.echo(f"learned {counts[Action.LEARNED]} as {label}, relabelled "
               f"{counts[Action.RELABELLED]}, already known {counts[Action.ALREADY_KNOWN]}, "
               f"errors {errors + missing} ({'new model' if new_model else 'model'} {store.model_path})")
    if headerless > _FAILURES_NAMED:
        typer.echo(f"spamlearn: warning: {headerless} messages in all had no mail header fields", err=True)
    if missing:
        raise typer.Exit(ExitCode.NOINPUT)
    if errors:
        raise typer.Exit(ExitCode.DATAERR)


@app.command()
@handle_errors
def forget(
    ctx: typer.Context,
    paths: PathsArg,
    user: Annotated[str | None, typer.Option(help="Forget from this user's own model.")] = None,
) -> None:
    """Unlearn messages, whatever they were learned as."""
    _one_stdin(paths)
    store = _store(ctx, user)
    forgotten = unknown = missing = empty = 0
    # No model and no ledger: nothing was learned there, and nothing is made
    # there.  A mistyped --model said only "not known" (as if the messages
    # had never been learned, while the real model kept them) and left a
    # folder, a lock file and an empty ledger at the typo.
    nothing_there = not store.exists() and not store.ledger_path.exists()
    with contextlib.nullcontext() if nothing_there else store.session(source="cli") as session:
        for item in iter_messages(paths):
            if item.error:
                typer.echo(f"spamlearn: {display_name(item.name)}: {item.error}", err=True)
                missing += 1
                continue
            if not item.raw or item.raw.isspace():
                # As learn and score say (65); it was counted "not known".
                typer.echo(f"spamlearn: {display_name(item.name)}: empty message", err=True)
                empty += 1
                continue
            if session is not None and session.forget(item.raw).action == Action.FORGOTTEN:
                forgotten += 1
            else:
                unknown += 1
    typer.echo(f"forgot {forgotten}, not known {unknown}, errors {missing + empty} "
               f"({'no model at' if nothing_there else 'model'} {store.model_path})")
    if missing:
        raise typer.Exit(ExitCode.NOINPUT)
    if empty:
        raise typer.Exit(ExitCode.DATAERR)


# -- scoring ----------------------------------------------------------------------------
_WORKER_CLASSIFIER = None


def _score_files(jobs: list[tuple[str, bytes | None, str | None, bool]]) -> list[list[dict]]:
    """Score a few inputs, each a message or a file (``raw`` and ``error``
    None) that is read here, in the worker, and may hold several (an
    mbox); the results of each input, in order.  Their messages are
    scored together (``Classifier.score_many``), but with ``--explain``,
    a batch at a time of at most ``_BATCH_BYTES``: a file is read only
    once the batch before it is scored, so sixteen 50 MB messages are
    never held at once (one at a time was the bound before batches)."""
    explain = bool(jobs) and jobs[0][3]
    out: list[list[dict]] = []
    pending: list[tuple[list, int, MessageInput]] = []
    pending_bytes = 0

    def score_pending() -> None:
        nonlocal pending_bytes
        verdicts = _WORKER_CLASSIFIER.score_many([item.raw for _, _, item in pending])
        for (results, i, item), verdict in zip(pending, verdicts, strict=True):
            results[i] = ({"path": item.name, "error": str(verdict)} if isinstance(verdict, MessageError)
                          else {"path": item.name, **verdict.as_dict()})
        pending.clear()
        pending_bytes = 0

    for name, raw, error, _ in jobs:
        read_here = raw is None and error is None
        items = read_file(name) if read_here else [MessageInput(name, raw=raw, error=error)]
        results: list = [None] * len(items)
        out.append(results)
        for i, item in enumerate(items):
            if item.error:
                results[i] = {"path": item.name, "error": item.error, "unreadable": True}
            elif explain:
                results[i] = _score_message(item, True)
            else:
                pending.append((results, i, item))
                pending_bytes += len(item.raw)
        del items       # not alive beside the next file's while it is read
        if pending_bytes >= _BATCH_BYTES:
            score_pending()
    if pending:
        score_pending()
    return out


def _in_groups(items: Iterable, size: int) -> Iterator[list]:
    """``items`` in lists of ``size`` (the last one shorter)."""
    items = iter(items)
    while group := list(itertools.islice(items, size)):
        yield group


def _score_message(item: MessageInput, explain: bool) -> dict:
    if item.error:
        return {"path": item.name, "error": item.error, "unreadable": True}
    try:
        verdict = _WORKER_CLASSIFIER.score(item.raw, explain=explain)
    except MessageError as exc:
        return {"path": item.name, "error": str(exc)}
    return {"path": item.name, **verdict.as_dict()}


def _read_here(items: list[MessageInput]) -> list[MessageInput]:
    """``items`` with their files read, and any mbox split into its messages."""
    return [message for item in items
            for message in (read_file(item.name) if item.raw is None and item.error is None else [item])]


def _print_result(result: dict, as_json: bool, explain: bool) -> None:
    if as_json:
        # sys.stdout.write, not typer.echo: click's echo looks up the stream,
        # strips ANSI codes and flushes on every call (28 us a line against
        # 10 us, 0.11 s over 6,046 messages; 2026-11-28).  json.dumps writes
        # ASCII only, so the stream's encoding cannot fail here.
        fields = {k: v for k, v in result.items() if k != "unreadable"}
        # A file name that is not UTF-8 comes as lone surrogates
        # ("caf\udce9.eml"), which JSON parsers reject or mangle.
        fields["path"] = display_name(fields["path"])
        sys.stdout.write(json.dumps(fields) + "\n")
        return
    path = display_name(result["path"])
    if "error" in result:
        typer.echo(f"spamlearn: {path}: {result['error']}", err=True)
        return
    typer.echo(f"{path}\t{result['verdict']}\t{result['score']:.4f}")
    for clue in result.get("clues", [])[:30] if explain else []:
        typer.echo(f"    {clue['spam_prob']:.3f}  spam={clue['spam_count']:<5d} "
                   f"ham={clue['ham_count']:<5d} {clue['token']}")


#: From this many inputs on, ``score`` uses worker processes (if --jobs
#: allows) and precomputes the model's feature probabilities.
_MANY = 200
#: Inputs (files) scored together, their messages stage by stage
#: (``Classifier.score_many``); the workers are handed 64 at a time.
_FILES_TOGETHER = 16
#: ... unless their bytes reach this first (``_score_files``).
_BATCH_BYTES = 4 << 20


def _scoring_pool(jobs: int):
    """A fork ``multiprocessing.Pool`` of ``jobs`` workers whose worker-handler
    thread sleeps until a worker exits or the pool's state changes.

    The stock pool's handler also waits on the pipe the results come back
    through, and so wakes (and wakes again, as nothing reads the pipe for
    it) whenever results lie there unread, which is most of the time while
    the result thread waits for the GIL: 8,495 rounds of ``_maintain_pool``
    in one ``score --jobs 2`` of the corpus, each holding the GIL from the
    threads that read and print the results.  Its workers, its state and
    its cache each have their own wake-up; the results' pipe adds none
    (the ThreadPool leaves it out the same way).  measured 2026-11-30,
    ``score --json --jobs 2`` of the corpus, four runs each interleaved:
    this process 0.50-0.58 -> 0.40-0.46 s CPU, 3.53-3.65 -> 3.34-3.53 s in
    all, the same output.  A Python whose pool has no such method, or no
    ``_change_notifier``, keeps its own.
    """
    import multiprocessing
    import multiprocessing.pool

    class ScoringPool(multiprocessing.pool.Pool):
        def _get_sentinels(self):
            notifier = getattr(self, "_change_notifier", None)
            if notifier is None or not hasattr(notifier, "_reader"):
                return super()._get_sentinels()
            return [notifier._reader]

    return ScoringPool(jobs, initializer=_worker_signals, context=multiprocessing.get_context("fork"))


def _worker_signals() -> None:
    """A scoring worker leaves Ctrl-C to ``score`` and dies of SIGTERM.

    Ctrl-C reaches the terminal's whole process group: each worker printed
    "Process ForkPoolWorker-1:" and a KeyboardInterrupt traceback under
    "interrupted".  ``score`` then ends the pool (SIGTERM, which the
    worker inherited ``score``'s handler of)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def _pool_ended_on_sigterm():
    """SIGTERM (``timeout``, ``kill``) ends ``score`` through the unwinding,
    which ends its pool: killed outright, it left the workers writing
    results to its closed pipe, a BrokenPipeError traceback each."""
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.command()
@handle_errors
def score(
    ctx: typer.Context,
    paths: PathsArg,
    explain: Annotated[bool, typer.Option("--explain", help="Show the clues behind each score.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per message.")] = False,
    user: Annotated[str | None, typer.Option(help="Score with this user's model, if ready.")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=0,
                    help="Worker processes for many messages (0: one per core).")] = 0,
) -> None:
    """Score messages: verdict (ham, unsure, spam) and spam probability per message."""
    global _WORKER_CLASSIFIER
    _one_stdin(paths)
    state = state_of(ctx)
    classifier, _ = load_scoring_classifier(state.settings, user, state.model_override)
    _WORKER_CLASSIFIER = classifier
    # Scoring is CPU-bound: more workers than cores only add start-ups
    # (--jobs 1000 for 500 messages took 11 s against 2 s).
    jobs = min(jobs or os.cpu_count() or 1, os.cpu_count() or 1)
    # The inputs are counted (a second walk of every folder: 0.05 s for the
    # SpamAssassin corpus) only for a progress bar; whether there are many
    # is seen by listing the first _MANY files ahead.  Files go to the
    # workers by name, unopened: they read them, so no message is copied
    # through a pipe and this process only lists folders and prints
    # (measured 2026-11-28, the corpus's 6,046 files: listing and reading
    # here 0.45-0.49 s CPU, listing alone 0.09 s).  Fewer files than that
    # are read here, so that one large mbox is still shared out.
    interactive = sys.stderr.isatty()
    total = count_files(paths) if interactive else None
    pending = iter_messages(paths, lazy_files=True)
    first = list(itertools.islice(pending, _MANY))
    if len(first) < _MANY:
        first = _read_here(first)
    many = len(first) >= _MANY
    all_jobs = ((item.name, item.raw, item.error, explain) for item in itertools.chain(first, pending))
    groups = _in_groups(all_jobs, _FILES_TOGETHER)
    if many:
        # One table lookup per feature instead of Robinson's formula per
        # message (~20 ms once, before the workers fork and share it):
        # measured 2026-11-28, scoring the corpus's 6,046 messages with the
        # default model 0.92 -> 0.72 s CPU, the same decisions bit for bit.
        classifier.model.freeze_scoring()
    failures = unreadable = 0
    with progress("scoring", total, enabled=bool(interactive and total and total > 50)) as advance, \
            contextlib.ExitStack() as stack:
        results = map(_score_files, groups)
        if jobs > 1 and many:
            from .html import preload

            # fork: the workers share the loaded model's pages with us, and
            # BeautifulSoup's import (0.2 s CPU that each would pay).
            preload()
            # What the workers inherit (modules, the model) is moved out of
            # the collector's sight: their collections no longer walk it,
            # nor write its pages (copy-on-write) to do so.  measured
            # 2026-11-29, scoring the corpus, best of 3, three rounds
            # interleaved: 3,032-3,147 messages/s against 2,884-3,034.
            gc.freeze()
            stack.enter_context(_pool_ended_on_sigterm())
            pool = stack.enter_context(_scoring_pool(jobs))
            results = pool.imap(_score_files, groups, chunksize=64 // _FILES_TOGETHER)
        for group in results:
            for batch in group:
                advance(1)
                for result in batch:
                    failures += "error" in result
                    unreadable += "unreadable" in result
                    _print_result(result, as_json, explain)
    sys.stdout.flush()
    if unreadable:
        raise typer.Exit(ExitCode.NOINPUT)
    if failures:
        raise typer.Exit(ExitCode.DATAERR)


def _write_filtered(*pieces: bytes | memoryview) -> None:
    """The message out on stdout; if that fails, say so and fail, whatever
    ``--exit-zero`` says: the caller must keep its own copy of the mail."""
    try:
        for piece in pieces:
            # A reader that leaves mid-message makes BufferedWriter.write
            # return the bytes it got out, short and without an error (a
            # helper's review: exit 0 with 64 KB of a 200 KB message passed
            # on); writing the rest raises the broken pipe.
            rest = memoryview(piece)
            while rest:
                rest = rest[sys.stdout.buffer.write(rest):]
        sys.stdout.buffer.flush()
    except OSError as exc:
        typer.echo(f"spamlearn: error: cannot write the message to standard output: "
                   f"{exc.strerror or exc}", err=True)
        raise typer.Exit(ExitCode.IOERR) from None


#: Set once ``filter`` runs: an exit code 2 before that is a usage error
#: (``spamlearn.cli.main`` then passes the message through), after it "unsure".
FILTER_STARTED = False


def pass_through_stdin(exit_zero: bool) -> int:
    """Copy standard input to standard output as it is; the exit code to use.

    For ``filter`` started with a command line it cannot run with: the
    caller (procmail, maildrop, a sieve ``filter``) must not receive an
    empty message, nor read exit code 2 ("unsure") from it.
    """
    if sys.stdin is None or sys.stdin.isatty():
        return ExitCode.USAGE
    try:
        raw = read_stdin()
    except OSError:
        return ExitCode.IOERR
    try:
        _write_filtered(raw)
    except typer.Exit as exc:
        return exc.exit_code
    typer.echo("spamlearn: error: filter did not run (see above); message passed through unchanged",
               err=True)
    return ExitCode.OK if exit_zero else ExitCode.FILTER_ERROR


@app.command("filter")
def filter_(
    ctx: typer.Context,
    exit_zero: Annotated[bool, typer.Option("--exit-zero", help="Always exit 0 (for a Dovecot "
                         "sieve `filter`, which treats other codes as failure).")] = False,
    user: Annotated[str | None, typer.Option(help="Score with this user's model, if ready.")] = None,
) -> None:
    """Read a message on stdin, write it to stdout with X-Spam-* headers.

    Exit code by verdict, as bogofilter: 0 spam, 1 ham, 2 unsure, 3 error.
    On any error the message is passed through (without the X-Spam-* headers
    it came with, which a sender can forge): a filter never loses mail.
    """
    global FILTER_STARTED
    FILTER_STARTED = True
    try:
        raw = read_stdin()
    except OSError as exc:
        # Nothing to pass through: fail whatever --exit-zero says, as when
        # the output cannot be written.
        typer.echo(f"spamlearn: error: cannot read the message from standard input: "
                   f"{exc.strerror or exc}", err=True)
        raise typer.Exit(ExitCode.IOERR) from None
    try:
        state = state_of(ctx)
        classifier, _ = load_scoring_classifier(state.settings, user, state.model_override)
        verdict = classifier.score(raw)
        marked = marked_pieces(raw, verdict, classifier.spam_cutoff)
    except Exception as exc:    # whatever went wrong, the mail goes through
        try:
            # Without the sender's X-Spam-* headers: with --exit-zero the
            # caller cannot tell an error from a verdict, and a forged
            # "X-Spam-Status: No" must not pass for ours.
            passed = unmarked_pieces(raw)
            how = "passed through without its X-Spam-* headers"
        except Exception:
            passed, how = (raw,), "passed through unchanged"
        _write_filtered(*passed)
        problem = str(exc) if isinstance(exc, SpamlearnError) else f"{type(exc).__name__}: {exc}"
        typer.echo(f"spamlearn: error: {problem} (message {how})", err=True)
        raise typer.Exit(0 if exit_zero else ExitCode.FILTER_ERROR) from None
    _write_filtered(*marked)
    if exit_zero:
        raise typer.Exit(0)
    raise typer.Exit({Label.SPAM: 0, Label.HAM: ExitCode.FILTER_HAM,
                      Label.UNSURE: ExitCode.FILTER_UNSURE}[verdict.label])


@app.command()
@handle_errors
def info(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Also verify that the model's counts "
                     "equal the sum of the ledger's messages.")] = False,
    user: Annotated[str | None, typer.Option(help="Show this user's own model.")] = None,
) -> None:
    """Show which model file and ledger are in use, their counts, size, when last trained."""
    state = state_of(ctx)
    settings = state.settings
    store = ModelStore.from_settings(settings, user)
    # A corrupt model (or ledger) showed the error alone: which files, and
    # what the other one holds, are shown too, then the error and its exit
    # code (as `status` goes on past an account's).
    details = store.info(keep_going=True)
    broken = []
    for key in ("model_error", "ledger_error"):
        if key in details:
            broken.append(details[key])
            details[key] = str(details[key])
    details["config_file"] = str(settings.config_file) if settings.config_file else None
    details["restore_interrupted"] = os.path.lexists(store.restore_marker)
    try:
        _, scoring_path = load_scoring_classifier(settings, user, state.model_override)
        details["scoring_model"] = str(scoring_path)
    except SpamlearnError as exc:
        details["scoring_model_error"] = str(exc)
    problems: list[str] = []
    if check and not broken and (store.exists() or store.ledger_path.exists()):
        # A ledger without its model is checked too (it does not belong to the
        # empty model that learning would start); neither: nothing to check.
        try:
            problems = store.check()
        except SpamlearnError as exc:
            # A pair that does not agree (a model without its ledger, a
            # ledger of another revision) or a held lock: shown with the
            # files and counts, as a file that does not read is; it printed
            # the error alone, what the pair holds left out.
            broken.append(exc)
    if check and broken:
        problems = [str(exc) for exc in broken]     # nothing (more) to compare
    if check:
        details["check"] = problems or "ok"
    if as_json:
        typer.echo(json.dumps(details, indent=2, default=str))
    else:
        typer.echo(f"config file:    {details['config_file'] or '(none)'}")
        typer.echo(f"model file:     {details['model']}"
                   + ("" if details["exists"] else "  (not created yet)"))
        old_ledger = "  (bucket numbers: cannot be resized)" if details.get("resizable") is False else ""
        if details.get("revision") and not store.ledger_path.exists():
            # Learners refuse such a model (74); info said nothing of it.
            old_ledger = "  (missing: learning refuses the model; `info --check` says more)"
        typer.echo(f"ledger:         {details['ledger']}{old_ledger}")
        typer.echo(f"scores with:    {details.get('scoring_model', details.get('scoring_model_error'))}")
        if details["exists"] and "model_error" in details and "ledger_counts" in details:
            counts = details["ledger_counts"]
            typer.echo(f"ledger holds:   {counts['spam']} spam, {counts['ham']} ham "
                       f"(the model file does not read)")
        elif details["exists"] and "model_error" not in details:
            typer.echo(f"learned:        {details['n_spam']} spam, {details['n_ham']} ham")
            typer.echo(f"size:           {details['size_bytes'] / 1e6:.2f} MB on disk, "
                       f"{details['used_buckets']} of {details['n_features']} feature buckets used "
                       f"({details['buckets_used_pct']:.1f}%)")
            if details["buckets_used_pct"] >= store.CROWDED_PCT:
                larger = 2 * details["n_features"]
                if larger > MAX_FEATURES:
                    remedy = "it is the largest size spamlearn makes"
                elif details.get("resizable"):
                    remedy = f"`spamlearn resize --features {larger}` counts it into more"
                else:
                    remedy = "learn a larger model afresh"
                typer.echo(f"warning:        over {store.CROWDED_PCT:.0f}% of the buckets are in use: hash "
                           f"collisions blur the scores; {remedy} (README: A full model)")
            typer.echo(f"last trained:   {_when(details['trained_at'])} (revision {details['revision']})")
        for row in details.get("sources", []):
            typer.echo(f"  {row['source'] or '(unnamed)':<40} {row['label']:<5} "
                       f"{row['messages']:>7}  last {_when(row['last_learned_at'])}")
        if details.get("restore_interrupted"):
            typer.echo("warning:        a restore was interrupted; learners refuse the pair until "
                       "`spamlearn restore` is run again")
        if check:
            nothing = not details["exists"] and not store.ledger_path.exists()
            typer.echo("check:          " + ("; ".join(problems) if problems else
                                             "ok (nothing learned yet: no model or ledger there)" if nothing
                                             else "ok"))
    if broken:
        if not as_json:
            for exc in broken:
                typer.echo(f"spamlearn: error: {exc}", err=True)
        raise typer.Exit(max(exit_code_for(exc) for exc in broken))
    if problems:
        raise typer.Exit(ExitCode.IOERR)


@app.command("eval")
@handle_errors
def eval_(
    ctx: typer.Context,
    index: Annotated[Path, typer.Option(help="TREC index file: lines 'spam|ham PATH'.")],
    mode: Annotated[str, typer.Option(help="all: train on every message; error: train on "
                                           "errors and unsure only.")] = "all",
    results: Annotated[Path | None, typer.Option(help="Write 'id gold score verdict' lines here.")] = None,
    trec_results: Annotated[Path | None, typer.Option(help="Write the run as the TREC jig's result "
                            "file (file= judge= class= score=) here, for TREC's tools.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write the ROC curve as a PNG here.")] = None,
    report: Annotated[Path | None, typer.Option(help="Write the figures as PNGs and an index.html "
                                                     "showing them into this folder.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as one JSON object.")] = False,
    limit: Annotated[int, typer.Option(min=0, help="Use only the first N messages (0: all).")] = 0,
    features: Annotated[int | None, typer.Option(
        help="Feature buckets of the model (a power of two).  Default: the configured "
             "`features`, or more for a corpus large enough to crowd it (64 a message, "
             "at most 2**25).")] = None,
) -> None:
    """Run the TREC Spam Track online protocol over a corpus (from an empty model)."""
    from .classifier import Classifier
    from .config import check_features
    from .errors import CorpusIndexError
    from .evaluate import (
        compute_figures,
        features_for,
        read_index,
        run_online,
        write_results,
        write_trec_results,
    )

    settings = state_of(ctx).settings
    for option, path, folder in (("--results", results, False), ("--trec-results", trec_results, False),
                                 ("--plot", plot, False), ("--report", report, True)):
        _check_output_path(option, path, folder, replaced=option == "--plot")
    if features is not None:
        check_features(features, "--features")
    entries = read_index(index)
    if limit:
        entries = entries[:limit]
    if len({entry.gold for entry in entries}) < 2:
        # The figures need both classes, and the index says so before the
        # run: refused after it, a whole corpus was scored and learned for
        # nothing (and --results never written).
        which = f"the first {len(entries)} messages of {index} are" if limit else f"{index} lists"
        raise CorpusIndexError(f"the corpus needs both ham and spam for ROC figures: "
                               f"{which} only {entries[0].gold.value}")
    n_features = features or features_for(len(entries), settings.features, MAX_FEATURES)
    classifier = Classifier(n_features=n_features, ham_cutoff=settings.ham_cutoff,
                            spam_cutoff=settings.spam_cutoff, scan_limit=settings.scan_limit)
    with progress("evaluating", len(entries)) as advance:
        result = run_online(entries, classifier, mode=mode, progress=lambda n: advance(1))
    figures = compute_figures(result)
    f = figures
    # The figures first: a file below that cannot be written (a full disk)
    # must not take a long run's figures with it.
    if as_json:
        typer.echo(json.dumps({**figures.as_dict(), "n_features": n_features}))
    else:
        typer.echo(
            f"{f.messages} messages ({f.n_spam} spam, {f.n_ham} ham), mode {mode}, "
            f"2**{n_features.bit_length() - 1} buckets: "
            f"(1-ROCA)% {f.roca_pct:.4f}, lam% {f.lam_pct:.3f}, "
            f"ham misclassified {f.ham_misclassified_pct:.3f}%, spam misclassified "
            f"{f.spam_misclassified_pct:.3f}%, unsure {f.unsure_pct:.2f}%, "
            f"hm at sm=0.1% {f.hm_at_sm_01_pct:.2f}%, {f.messages_per_second:.0f} messages/s")
    sys.stdout.flush()
    # A relative index ("index", "full/index") names its corpus too.
    title = f"spamlearn on {index.resolve().parent.parent.name or index.name}"
    if results:
        write_results(result, results)
    if trec_results:
        write_trec_results(result, trec_results)
    if plot:
        from .plots import save_roc_plot

        save_roc_plot(result, plot, title=title,
                      ham_cutoff=classifier.ham_cutoff, spam_cutoff=classifier.spam_cutoff)
    if report:
        from .report import write_report

        write_report(result, report, classifier, entries=entries, mode=mode, title=title)
    if f.unreadable:
        # Counted in the figures as unsure at 0.5 (ham to lam: not above
        # 0.5; TREC's tools record a failure as ham at score 0); said here
        # so that a broken index is noticed.
        for message_id, why in result.failures[:_FAILURES_NAMED]:
            typer.echo(f"spamlearn: {display_name(message_id)}: {why}", err=True)
        if f.unreadable > _FAILURES_NAMED:
            typer.echo(f"spamlearn: ... and {f.unreadable - _FAILURES_NAMED} more", err=True)
        typer.echo(f"spamlearn: {f.unreadable} of {f.messages} messages could not be read or "
                   f"parsed (scored 0.5, unsure, in the figures and --results)", err=True)
        raise typer.Exit(ExitCode.NOINPUT if result.missing else ExitCode.DATAERR)


#: eval names this many of the messages it could not read (a broken index
#: can miss thousands; the count says the rest).
_FAILURES_NAMED = 20


def _check_output_path(option: str, path: Path | None, folder: bool, replaced: bool = False) -> None:
    """Refuse an output path that cannot be written before a long run, not after it.

    ``replaced``: the file is written beside and renamed over ``path``
    (``plots.write_atomically``), so only a regular file may be there.
    """
    if path is None:
        return
    if folder:
        if path.exists() and not path.is_dir():
            raise fail(f"{option} {path}: exists and is not a folder", ExitCode.USAGE)
        # The pictures go into the folder itself: one that exists was let
        # through on its parent's say, and the run ended in exit 74 with
        # its figures never printed.
        if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
            raise fail(f"{option} {path}: cannot write in {path}", ExitCode.USAGE)
    elif path.is_dir():
        raise fail(f"{option} {path}: is a folder; give a file name", ExitCode.USAGE)
    elif kind := _existing_kind(option, path):
        # --results /dev/null or a FIFO with its reader are written in
        # place, as asked; a picture would take their place (as root,
        # --plot /dev/null replaced the device), and no file opens a socket.
        if replaced or kind == "a socket":
            raise fail(f"{option} {path}: is {kind}; give a file name", ExitCode.USAGE)
    elif path.exists() and not os.access(path, os.W_OK):
        # --results and --trec-results are opened in place.
        raise fail(f"{option} {path}: cannot write it", ExitCode.USAGE)
    parent = path.absolute().parent
    if not parent.is_dir():
        raise fail(f"{option} {path}: no folder {parent}", ExitCode.USAGE)
    if not os.access(parent, os.W_OK):
        raise fail(f"{option} {path}: cannot write in {parent}", ExitCode.USAGE)


def _existing_kind(option: str, path: Path) -> str | None:
    """``existing_kind``, a loop of links refused now: open() or os.replace
    would fail after the run."""
    try:
        return existing_kind(path)
    except OSError as exc:
        raise fail(f"{option} {path}: {exc.strerror}", ExitCode.USAGE) from None
